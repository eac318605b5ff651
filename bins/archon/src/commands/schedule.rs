//! `archon schedule …`: pause, resume, trigger and backfill a cron job's
//! schedule through the API; preview an expression locally.

use std::process::ExitCode;

use archon_core::api::{ScheduleAction, ScheduleFire};
use archon_core::clock::{Clock, SystemClock};
use archon_core::cron::CronSchedule;
use archon_core::model::{JobId, OverlapPolicy};
use archon_core::state::FireResult;
use archon_http::views::{ScheduleFireView, time};
use serde::Serialize;

use super::{bad, connect, parse_id, parse_instant, print};
use crate::cli::{Format, ScheduleCommand};

/// Runs one `archon schedule` subcommand.
pub(super) async fn dispatch(server: &str, format: Format, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let (job, action) = match command {
        ScheduleCommand::Preview { expr, tz, count } => return preview(format, &expr, &tz, count),
        ScheduleCommand::Pause { job, note } => (job, ScheduleAction::Pause { note }),
        ScheduleCommand::Resume { job } => (job, ScheduleAction::Resume),
        ScheduleCommand::Trigger { job } => (job, ScheduleAction::Trigger),
        ScheduleCommand::Backfill { job, from, to, overlap } => {
            let from = parse_instant("--from", &from)?;
            let to = match to {
                Some(to) => parse_instant("--to", &to)?,
                None => SystemClock.now(),
            };
            let overlap =
                overlap.map(|o| o.parse::<OverlapPolicy>().map_err(|e| bad(format!("--overlap: {e}")))).transpose()?;
            (job, ScheduleAction::Backfill { from, to, overlap })
        }
    };
    let job = parse_id::<JobId>("JOB", &job)?;
    let api = connect(server).await?;
    let done = match &action {
        ScheduleAction::Pause { .. } => Some("paused"),
        ScheduleAction::Resume => Some("resumed"),
        _ => None,
    };
    let fires = api.schedule(job, action).await?;
    let view = ActionView { job: job.to_string(), fires: fires.iter().map(ScheduleFireView::from).collect() };
    print(format, &view, || match done {
        Some(done) => format!("{job}: {done}"),
        None => fires_table(job, &fires),
    })
}

/// What an action printed as JSON: the REST API's answer to
/// `POST /api/v1/schedules/{job}/…` (the fires, as its views) with the job.
#[derive(Serialize)]
struct ActionView {
    /// The cron job (`job-12`).
    job: String,
    /// Each fire the action made and what it did (none for pause and resume).
    fires: Vec<ScheduleFireView>,
}

fn fires_table(job: JobId, fires: &[ScheduleFire]) -> String {
    let mut out = String::new();
    for f in fires {
        let what = match f.result {
            FireResult::Started(run) => format!("started {run}"),
            FireResult::Buffered => "buffered (runs when the running one ends)".to_owned(),
            FireResult::Skipped => "skipped (a run is still going; overlap policy)".to_owned(),
        };
        out.push_str(&format!("{job} fire {}: {what}\n", f.instant));
    }
    out
}

/// A preview as JSON (computed here, no REST counterpart), instants written
/// as the REST API's views write them.
#[derive(Serialize)]
struct Preview {
    expr: String,
    timezone: String,
    /// Instants, RFC 3339 in UTC.
    next: Vec<String>,
    /// The same, as wall-clock times in the zone.
    local: Vec<String>,
}

/// The next `count` fires of `expr` in `tz`, computed here.
fn preview(format: Format, expr: &str, tz: &str, count: usize) -> anyhow::Result<ExitCode> {
    if count == 0 || count > 1000 {
        return Err(bad("-n: give a count from 1 to 1000"));
    }
    let cron = CronSchedule::parse(expr, tz).map_err(|e| {
        let field = match e.field.as_str() {
            "schedule.timezone" => "--tz",
            _ => "EXPR",
        };
        bad(format!("{field}: {}", e.message))
    })?;
    let next = cron.upcoming(SystemClock.now(), count);
    if next.is_empty() {
        return Err(bad(format!("EXPR: {expr:?} never fires (no date matches it)")));
    }
    let local = next.iter().map(|t| cron.local(*t)).collect();
    let instants = next.iter().copied().map(time).collect();
    let preview = Preview { expr: expr.to_owned(), timezone: tz.to_owned(), next: instants, local };
    print(format, &preview, || {
        next.iter().zip(&preview.local).map(|(t, l)| format!("{l}   ({t})\n")).collect::<String>()
    })
}
