//! The leader's cron ticker: which schedules are due, proposed as
//! `FireSchedule` commands in the driver's next turn. Where each schedule
//! stands (its cursor) is replicated state, so a new leader carries on exactly
//! where the last one stopped; what the ticker keeps of its own (parsed
//! expressions, the next instant of each schedule) is a cache rebuilt from it.
//!
//! After downtime, the instants a schedule missed are split at the catch-up
//! window: the older ones are counted as missed (with their latest instants),
//! the newer ones fire in order under the overlap policy — never an unbounded
//! flood: each pass handles at most [`MAX_FIRES`] fires and [`MAX_MISSED`]
//! missed instants per schedule and the next pass goes on from there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cron::CronSchedule;
use crate::model::{FireSource, JobId, MissedFires, RECENT_FIRES, Schedule, Timestamp};
use crate::state::{ClusterState, Command};

/// A fire less late than this is on time whatever the catch-up window (a
/// failover or a busy turn is not downtime).
pub(crate) const GRACE: Duration = Duration::from_secs(60);

/// The most fires one pass proposes for one schedule.
pub(crate) const MAX_FIRES: usize = 1_000;

/// The most missed instants one pass counts for one schedule.
pub(crate) const MAX_MISSED: usize = 100_000;

/// The longest the ticker sleeps, so new and resumed schedules are seen soon.
pub(crate) const IDLE_TICK: Duration = Duration::from_secs(1);

/// What the ticker knows of one schedule.
struct Entry {
    /// The expression it was parsed from, to notice a change.
    spec: Arc<Schedule>,
    cron: Option<CronSchedule>,
    /// The cursor `next` was computed from.
    cursor: Timestamp,
    /// The first instant after the cursor, and when it is due (with jitter).
    next: Option<(Timestamp, Timestamp)>,
}

/// The leader-local cron ticker. Start a fresh one on each leadership.
#[derive(Default)]
pub(crate) struct Ticker {
    entries: HashMap<JobId, Entry>,
}

impl Ticker {
    /// The fires due at `now` as commands, and when the next one is due.
    pub(crate) fn due(&mut self, state: &ClusterState, now: Timestamp) -> (Vec<Command>, Option<Timestamp>) {
        let mut commands = Vec::new();
        let mut next_due: Option<Timestamp> = None;
        self.entries.retain(|job, _| state.schedule(*job).is_some());
        for (job_id, schedule) in state.schedules() {
            let Some(spec) = state.job(*job_id).filter(|j| !j.cancelled).and_then(|j| j.spec.schedule.as_deref())
            else {
                continue;
            };
            if schedule.paused.is_some() {
                continue;
            }
            let entry = self.entries.entry(*job_id).or_insert_with(|| Entry {
                spec: Arc::new(spec.clone()),
                cron: None,
                cursor: Timestamp(i64::MIN),
                next: None,
            });
            if *entry.spec != *spec || entry.cron.is_none() {
                entry.spec = Arc::new(spec.clone());
                entry.cron = CronSchedule::parse(&spec.cron, &spec.timezone).ok();
                entry.cursor = Timestamp(i64::MIN);
            }
            let Some(cron) = &entry.cron else { continue };
            if entry.cursor != schedule.cursor {
                entry.cursor = schedule.cursor;
                entry.next = cron.next_after(schedule.cursor).map(|t| (t, t.plus(spec.jitter_for(job_id.0, t))));
            }
            let Some((_, due)) = entry.next else { continue };
            if due > now {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            if let Some(command) = fires_due(*job_id, spec, cron, schedule.cursor, now) {
                commands.push(command);
            }
        }
        (commands, next_due)
    }
}

/// The `FireSchedule` for one schedule whose next fire is due at `now`: the
/// instants since `cursor` within the catch-up window (each due with its
/// jitter), and those before it as missed.
fn fires_due(job: JobId, spec: &Schedule, cron: &CronSchedule, cursor: Timestamp, now: Timestamp) -> Option<Command> {
    let window = spec.catch_up_window().max(GRACE);
    let cutoff = Timestamp(now.0.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX)));
    let mut missed = MissedFires { count: 0, instants: Vec::new(), through: cursor };
    let mut from = cursor;
    if cutoff > cursor {
        let old = cron.fires(cursor, Timestamp(cutoff.0 - 1), MAX_MISSED);
        if let Some(last) = old.last() {
            missed.count = old.len() as u64;
            missed.through = *last;
            missed.instants = old[old.len().saturating_sub(RECENT_FIRES)..].to_vec();
            from = *last;
        }
        if old.len() == MAX_MISSED {
            // More than one pass counts: go on from here next time.
            return Some(fire_command(now, job, Vec::new(), Some(missed)));
        }
    }
    let instants: Vec<Timestamp> = cron
        .fires(from, now, MAX_FIRES)
        .into_iter()
        .take_while(|t| t.plus(spec.jitter_for(job.0, *t)) <= now)
        .collect();
    let missed = (missed.count > 0).then_some(missed);
    if instants.is_empty() && missed.is_none() {
        return None;
    }
    Some(fire_command(now, job, instants, missed))
}

fn fire_command(at: Timestamp, job: JobId, instants: Vec<Timestamp>, missed: Option<MissedFires>) -> Command {
    Command::FireSchedule { at, job, instants, source: FireSource::Cron, overlap: None, missed }
}

/// How late each of a cron job's fires proposed at `at` is: the time since it
/// was due (its instant plus its jitter). Empty when the job has no schedule.
pub(crate) fn lateness(state: &ClusterState, job: JobId, instants: &[Timestamp], at: Timestamp) -> Vec<Duration> {
    let Some(spec) = state.job(job).and_then(|j| j.spec.schedule.as_deref()) else { return Vec::new() };
    instants.iter().map(|t| at.since(t.plus(spec.jitter_for(job.0, *t)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(n: i64) -> Timestamp {
        Timestamp(n * 60_000)
    }

    fn instants(command: &Command) -> (Vec<i64>, Option<(u64, i64)>) {
        match command {
            Command::FireSchedule { instants, missed, .. } => (
                instants.iter().map(|t| t.0 / 60_000).collect(),
                missed.as_ref().map(|m| (m.count, m.through.0 / 60_000)),
            ),
            other => panic!("not a fire: {other:?}"),
        }
    }

    #[test]
    fn after_downtime_fires_inside_the_window_run_and_older_ones_are_missed() {
        // Every 10 minutes, a one-hour window, three hours down.
        let mut spec = Schedule::new("*/10 * * * *");
        spec.catch_up = Some(Duration::from_secs(3600));
        let cron = CronSchedule::parse(&spec.cron, &spec.timezone).unwrap();
        let command = fires_due(JobId(1), &spec, &cron, minutes(0), minutes(180)).unwrap();
        let (fired, missed) = instants(&command);
        assert_eq!(fired, [120, 130, 140, 150, 160, 170, 180]);
        assert_eq!(missed, Some((11, 110)));
    }

    #[test]
    fn a_zero_window_still_runs_a_fire_that_is_only_a_little_late() {
        let mut spec = Schedule::new("*/10 * * * *");
        spec.catch_up = Some(Duration::ZERO);
        let cron = CronSchedule::parse(&spec.cron, &spec.timezone).unwrap();
        let late = fires_due(JobId(1), &spec, &cron, minutes(0), Timestamp(minutes(10).0 + 5_000)).unwrap();
        assert_eq!(instants(&late), (vec![10], None));
        let down = fires_due(JobId(1), &spec, &cron, minutes(0), minutes(60)).unwrap();
        assert_eq!(instants(&down), (vec![60], Some((5, 50))));
    }

    #[test]
    fn a_fire_waits_for_its_jitter() {
        let mut spec = Schedule::new("*/10 * * * *");
        spec.jitter = Some(Duration::from_secs(300));
        let cron = CronSchedule::parse(&spec.cron, &spec.timezone).unwrap();
        let delay = spec.jitter_for(1, minutes(10));
        assert!(
            fires_due(JobId(1), &spec, &cron, minutes(0), minutes(10).plus(delay / 2)).is_none() || delay.is_zero()
        );
        let on_time = fires_due(JobId(1), &spec, &cron, minutes(0), minutes(10).plus(delay)).unwrap();
        assert_eq!(instants(&on_time).0, [10]);
    }

    #[test]
    fn a_fire_is_late_by_the_time_since_its_instant_plus_its_jitter() {
        use crate::model::{JobSpec, Task};
        let mut state = ClusterState::new();
        let mut spec = JobSpec::new("j", Task::Shell { command: "true".into() });
        let mut schedule = Schedule::new("*/10 * * * *");
        schedule.jitter = Some(Duration::from_secs(120));
        spec.schedule = Some(Box::new(schedule.clone()));
        let out = state.apply(&Command::ScheduleJob { at: minutes(0), spec: Arc::new(spec) });
        assert!(out.rejection().is_none(), "{out:?}");
        let job = state.jobs().keys().next().copied().unwrap();
        let at = minutes(21);
        let late = lateness(&state, job, &[minutes(10), minutes(20)], at);
        let due = |t: Timestamp| t.plus(schedule.jitter_for(job.0, t));
        assert_eq!(late, [at.since(due(minutes(10))), at.since(due(minutes(20)))]);
        assert!(late[0] > late[1] && late[1] <= Duration::from_secs(60));
        assert!(lateness(&state, JobId(99), &[minutes(10)], at).is_empty());
    }

    /// Drives a ticker on a manual clock, one minute at a time from `from` to
    /// `to`, applying its fires to a state machine as the driver would; the fire
    /// instants of the runs it started.
    fn drive(expr: &str, tz: &str, from: &str, to: &str) -> Vec<Timestamp> {
        use crate::model::{JobSpec, OverlapPolicy, Task};
        use crate::state::{Event, FireResult};
        let at = |s: &str| Timestamp(chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis());
        let (from, to) = (at(from), at(to));
        let mut state = ClusterState::new();
        let mut spec = JobSpec::new("j", Task::Shell { command: "true".into() });
        spec.schedule =
            Some(Box::new(Schedule { timezone: tz.into(), overlap: OverlapPolicy::AllowAll, ..Schedule::new(expr) }));
        let submitted = state.apply(&Command::ScheduleJob { at: from, spec: Arc::new(spec) });
        assert!(submitted.rejection().is_none(), "{submitted:?}");
        let mut ticker = Ticker::default();
        let mut fired = Vec::new();
        let mut now = from;
        while now <= to {
            let (commands, _) = ticker.due(&state, now);
            for command in commands {
                let out = state.apply(&command);
                assert!(out.rejection().is_none(), "{out:?}");
                fired.extend(out.events().iter().filter_map(|e| match e {
                    Event::ScheduleFired { instant, result: FireResult::Started(_), .. } => Some(*instant),
                    _ => None,
                }));
            }
            now = now.plus(Duration::from_secs(60));
        }
        fired
    }

    fn utc(s: &str) -> Timestamp {
        Timestamp(chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis())
    }

    #[test]
    fn on_a_manual_clock_a_daily_0230_job_runs_once_on_each_dst_day() {
        // Berlin: clocks go 02:00 → 03:00 CEST on 29 March 2026, 03:00 → 02:00
        // CET on 25 October. 02:30 does not exist on the first day: it runs at
        // the first valid instant, 03:00 CEST; on the second it runs once, at
        // its first occurrence (CEST).
        let spring = drive("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z");
        assert_eq!(spring, [utc("2026-03-29T01:00:00Z"), utc("2026-03-30T00:30:00Z")]);
        let fall = drive("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z");
        assert_eq!(fall, [utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]);
        // New York: 8 March 2026 (02:00 EST → 03:00 EDT), 1 November (02:00 EDT → 01:00 EST).
        let spring = drive("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z");
        assert_eq!(spring, [utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")]);
        let fall = drive("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z");
        assert_eq!(fall, [utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]);
    }

    #[test]
    fn on_a_manual_clock_an_hourly_job_keeps_its_rhythm_across_both_changes() {
        for (tz, days) in [
            (
                "Europe/Berlin",
                [("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"), ("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")],
            ),
            (
                "America/New_York",
                [("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"), ("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z")],
            ),
        ] {
            for (from, to) in days {
                let fired = drive("0 * * * *", tz, from, to);
                let hours = (utc(to).0 - utc(from).0) / 3_600_000;
                assert_eq!(
                    fired.len() as i64,
                    hours,
                    "{tz} {from}: one fire per real hour of the local day (23 or 25)"
                );
                assert!(fired.windows(2).all(|w| w[1].0 - w[0].0 == 3_600_000), "{tz} {from}: {fired:?}");
            }
        }
    }
}
