//! Runs, attempts, their output and what they used, as JSON.

use archon_core::api::{Page, RunDetail, RunSummary};
use archon_core::model::{Attempt, AttemptState, ExitStatus, OutputTail, ResourceUsage, Run, RunId, RunState};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ids, time, time_opt};

/// One execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    /// Its id (`run-340`).
    pub id: String,
    /// Its job.
    pub job: String,
    /// Where it is in its life.
    pub state: RunState,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// A cron run's fire instant.
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    /// Its attempts, oldest first.
    pub attempts: Vec<String>,
    /// The attempt that may report now.
    pub current_attempt: Option<String>,
    /// Retries used by failures.
    pub retries_used: u32,
    /// While retrying: not placed before this instant.
    #[schema(format = DateTime)]
    pub not_before: Option<String>,
    /// A cancel was asked while an attempt ran.
    pub cancel_requested: bool,
    /// When it ended.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Why it ended as it did.
    pub reason: Option<String>,
}

impl From<&Run> for RunView {
    fn from(r: &Run) -> Self {
        RunView {
            id: r.id.to_string(),
            job: r.job.to_string(),
            state: r.state,
            created_at: time(r.created_at),
            scheduled_for: time_opt(r.scheduled_for),
            attempts: ids(&r.attempts),
            current_attempt: r.current_attempt.map(|a| a.to_string()),
            retries_used: r.retries_used,
            not_before: time_opt(r.not_before),
            cancel_requested: r.cancel_requested,
            finished_at: time_opt(r.finished_at),
            reason: r.reason.clone(),
        }
    }
}

/// One stream's kept output: text when it is UTF-8, base64 otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutputView {
    /// The bytes as text (absent when they are not UTF-8).
    pub text: Option<String>,
    /// The bytes in base64 (only when they are not UTF-8).
    pub base64: Option<String>,
    /// How many bytes are kept.
    pub bytes: u64,
    /// How many earlier bytes were dropped by the output limit.
    pub truncated: u64,
}

impl From<&OutputTail> for OutputView {
    fn from(t: &OutputTail) -> Self {
        let (text, base64) = match std::str::from_utf8(&t.data) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(STANDARD.encode(&t.data))),
        };
        OutputView { text, base64, bytes: t.data.len() as u64, truncated: t.truncated }
    }
}

/// What an attempt used, as its executor measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// CPU time, user plus system, in seconds.
    pub cpu_seconds: f64,
    /// CPU time in user mode, seconds.
    pub cpu_user_seconds: f64,
    /// CPU time in the kernel, seconds.
    pub cpu_system_seconds: f64,
    /// Peak resident memory, bytes.
    pub peak_memory_bytes: u64,
    /// Start to exit, seconds.
    pub wall_seconds: f64,
}

impl From<&ResourceUsage> for UsageView {
    fn from(u: &ResourceUsage) -> Self {
        let secs = |us: u64| us as f64 / 1e6;
        UsageView {
            cpu_seconds: secs(u.cpu_user_us.saturating_add(u.cpu_system_us)),
            cpu_user_seconds: secs(u.cpu_user_us),
            cpu_system_seconds: secs(u.cpu_system_us),
            peak_memory_bytes: u.peak_memory_bytes,
            wall_seconds: secs(u.wall_us),
        }
    }
}

/// One try of a run on one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    /// Its id (`att-7`), also its fencing token.
    pub id: String,
    /// Its run.
    pub run: String,
    /// Where it ran.
    pub worker: String,
    /// Where it is.
    pub state: AttemptState,
    /// When it was assigned.
    #[schema(format = DateTime)]
    pub assigned_at: String,
    /// When the worker started it.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// How it ended.
    pub exit: Option<ExitStatus>,
    /// Its standard output (kept up to the output limit).
    pub stdout: Option<OutputView>,
    /// Its standard error.
    pub stderr: Option<OutputView>,
    /// What it used.
    pub usage: Option<UsageView>,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        let result = a.result.as_ref();
        AttemptView {
            id: a.id.to_string(),
            run: a.run.to_string(),
            worker: a.worker.to_string(),
            state: a.state,
            assigned_at: time(a.assigned_at),
            started_at: time_opt(a.started_at),
            finished_at: time_opt(a.finished_at),
            exit: result.map(|r| r.status.clone()),
            stdout: result.map(|r| OutputView::from(&r.stdout)),
            stderr: result.map(|r| OutputView::from(&r.stderr)),
            usage: result.and_then(|r| r.usage.as_ref()).map(UsageView::from),
        }
    }
}

/// A run with its attempts and their output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunDetailView {
    /// The run.
    pub run: RunView,
    /// Its job's name.
    pub job_name: String,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptView>,
    /// Why a pending run is not placed yet.
    pub pending_reason: Option<String>,
}

impl From<&RunDetail> for RunDetailView {
    fn from(d: &RunDetail) -> Self {
        RunDetailView {
            run: RunView::from(&d.run),
            job_name: d.job_name.clone(),
            attempts: d.attempts.iter().map(AttemptView::from).collect(),
            pending_reason: d.pending_reason.clone(),
        }
    }
}

/// A run in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunSummaryView {
    /// The run.
    pub id: String,
    /// Its job.
    pub job: String,
    /// Its job's name.
    pub job_name: String,
    /// Its state.
    pub state: RunState,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it ended.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// How many attempts it made.
    pub attempts: u32,
    /// Its last attempt's exit.
    pub exit: Option<ExitStatus>,
}

impl From<&RunSummary> for RunSummaryView {
    fn from(r: &RunSummary) -> Self {
        RunSummaryView {
            id: r.id.to_string(),
            job: r.job.to_string(),
            job_name: r.job_name.clone(),
            state: r.state,
            created_at: time(r.created_at),
            finished_at: time_opt(r.finished_at),
            attempts: r.attempts,
            exit: r.exit.clone(),
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    /// The runs.
    pub items: Vec<RunSummaryView>,
    /// Pass as `before` for the next page; none on the last.
    pub next: Option<String>,
}

impl From<&Page<RunSummary, RunId>> for RunPage {
    fn from(p: &Page<RunSummary, RunId>) -> Self {
        RunPage { items: p.items.iter().map(RunSummaryView::from).collect(), next: p.next.map(|n| n.to_string()) }
    }
}
