//! Recurring schedules: a cron expression read in a time zone, what a fire does
//! while the previous run still goes ([`OverlapPolicy`]), how far back fires missed
//! during downtime are caught up, and an optional jitter. The expression is
//! evaluated by [`crate::cron`]; what a schedule has done so far lives in the
//! state ([`ScheduleState`]).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::RunId;
use super::time::Timestamp;

/// How far back fires missed while the cluster was down are run, unless the
/// schedule says otherwise.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(3600);

/// A recurring schedule (cron).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week),
    /// 6 with seconds first, or an alias such as `@hourly`.
    pub cron: String,
    /// IANA time zone the expression is read in (default UTC).
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// What happens when a fire comes while the previous run is still going.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// How far back fires missed during downtime are run when the cluster is
    /// back; older ones are recorded as missed. `None`: [`DEFAULT_CATCH_UP`];
    /// zero: none are caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<Duration>,
    /// Each fire starts up to this much after its instant, by an amount fixed
    /// per fire (the same on every manager), to spread load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
}

fn default_tz() -> String {
    "UTC".to_owned()
}

impl Schedule {
    /// A schedule of `cron` in UTC with the defaults.
    pub fn new(cron: impl Into<String>) -> Schedule {
        Schedule {
            cron: cron.into(),
            timezone: default_tz(),
            overlap: OverlapPolicy::Skip,
            catch_up: None,
            jitter: None,
        }
    }

    /// The catch-up window in effect.
    pub fn catch_up_window(&self) -> Duration {
        self.catch_up.unwrap_or(DEFAULT_CATCH_UP)
    }

    /// How late after its instant the fire at `instant` of job `owner` starts:
    /// a fixed fraction of the jitter, from a hash of the two (so every manager,
    /// and a retried proposal, picks the same).
    pub fn jitter_for(&self, owner: u64, instant: Timestamp) -> Duration {
        let Some(jitter) = self.jitter.filter(|j| !j.is_zero()) else { return Duration::ZERO };
        let z = crate::state::mix(owner.rotate_left(32) ^ (instant.0 as u64));
        let millis = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(z % millis.max(1))
    }
}

/// What a cron fire does when the previous run of its schedule has not finished
/// (Temporal's overlap policies, Kubernetes' `concurrencyPolicy`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Skip this fire (recorded as skipped).
    #[default]
    Skip,
    /// Keep one fire waiting and run it when the previous run ends; further
    /// fires meanwhile are skipped.
    BufferOne,
    /// Run every fire, overlapping.
    AllowAll,
    /// Cancel the running one and start this fire.
    CancelOther,
    /// Keep every fire waiting (up to [`MAX_BUFFERED`]) and run them one after
    /// another.
    BufferAll,
}

impl OverlapPolicy {
    /// Every policy, in the order the CLI lists them.
    pub const ALL: [OverlapPolicy; 5] = [
        OverlapPolicy::Skip,
        OverlapPolicy::BufferOne,
        OverlapPolicy::BufferAll,
        OverlapPolicy::CancelOther,
        OverlapPolicy::AllowAll,
    ];

    /// The name used in flags, spec files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::BufferOne => "buffer_one",
            OverlapPolicy::AllowAll => "allow_all",
            OverlapPolicy::CancelOther => "cancel_other",
            OverlapPolicy::BufferAll => "buffer_all",
        }
    }
}

impl std::fmt::Display for OverlapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OverlapPolicy {
    type Err = String;

    /// Parses a policy name; `-` and `_` are the same (`buffer-one`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        OverlapPolicy::ALL.into_iter().find(|p| p.as_str() == norm).ok_or_else(|| {
            let names: Vec<&str> = OverlapPolicy::ALL.iter().map(|p| p.as_str()).collect();
            format!("{s:?} is not an overlap policy (use one of {})", names.join(", "))
        })
    }
}

/// The most fires a `buffer_all` schedule keeps waiting; more are skipped.
pub const MAX_BUFFERED: usize = 1000;

/// How many instants of skipped and missed fires a schedule remembers (the
/// counts cover all of them).
pub const RECENT_FIRES: usize = 10;

/// Why a schedule fired: its cron ticker, or an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireSource {
    /// The leader's ticker, at a cron instant.
    #[default]
    Cron,
    /// `archon schedule trigger`: one fire now.
    Trigger,
    /// `archon schedule backfill`: the instants of a past range.
    Backfill,
}

/// Fires counted with their latest instants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireLog {
    /// How many.
    pub count: u64,
    /// The latest ones, oldest first, at most [`RECENT_FIRES`].
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent: VecDeque<Timestamp>,
}

impl FireLog {
    /// Counts `n` more, the latest of them at `instants` (oldest first).
    pub fn record(&mut self, n: u64, instants: impl IntoIterator<Item = Timestamp>) {
        self.count += n;
        for t in instants {
            if self.recent.len() == RECENT_FIRES {
                self.recent.pop_front();
            }
            self.recent.push_back(t);
        }
    }
}

/// Fires the leader found older than the catch-up window: counted and recorded
/// rather than run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedFires {
    /// How many.
    pub count: u64,
    /// The latest of them, oldest first, at most [`RECENT_FIRES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instants: Vec<Timestamp>,
    /// The last missed instant: the schedule carries on after it.
    pub through: Timestamp,
}

/// Where a schedule stands, in the live state: kept by the state machine as it
/// applies fires, so every manager agrees and a new leader carries on exactly
/// where the last one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The latest cron instant handled (fired, skipped, buffered or missed): the
    /// ticker proposes only instants after it, and the state machine refuses any
    /// other, so no instant fires twice.
    pub cursor: Timestamp,
    /// Set while paused, with when and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// Fires waiting for the running one to end (buffer policies), oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub buffered: VecDeque<Timestamp>,
    /// Its runs that have not ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<RunId>,
    /// Fires that started a run.
    #[serde(default)]
    pub fired: FireLog,
    /// Fires skipped by the overlap policy.
    #[serde(default)]
    pub skipped: FireLog,
    /// Fires missed while the cluster was down, past the catch-up window.
    #[serde(default)]
    pub missed: FireLog,
}

/// A pause, as `archon schedule pause` set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// When.
    pub at: Timestamp,
    /// The operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_name_with_dashes_or_underscores() {
        for p in OverlapPolicy::ALL {
            assert_eq!(p.as_str().parse::<OverlapPolicy>(), Ok(p));
            assert_eq!(p.as_str().replace('_', "-").parse::<OverlapPolicy>(), Ok(p));
        }
        let err = "sometimes".parse::<OverlapPolicy>().unwrap_err();
        assert!(err.contains("skip, buffer_one, buffer_all, cancel_other, allow_all"), "{err}");
    }

    #[test]
    fn jitter_is_fixed_per_fire_and_within_bounds() {
        let mut s = Schedule::new("* * * * *");
        assert_eq!(s.jitter_for(1, Timestamp(60_000)), Duration::ZERO);
        s.jitter = Some(Duration::from_secs(30));
        let a = s.jitter_for(7, Timestamp(60_000));
        assert_eq!(a, s.jitter_for(7, Timestamp(60_000)));
        let spread: std::collections::BTreeSet<Duration> =
            (0..100).map(|i| s.jitter_for(7, Timestamp(i * 60_000))).collect();
        assert!(spread.len() > 50, "jitter should vary per fire: {spread:?}");
        assert!(spread.iter().all(|d| *d < Duration::from_secs(30)));
    }

    #[test]
    fn a_fire_log_keeps_the_latest_instants_and_counts_all() {
        let mut log = FireLog::default();
        log.record(25, (0..25).map(Timestamp));
        assert_eq!(log.count, 25);
        assert_eq!(log.recent.iter().map(|t| t.0).collect::<Vec<_>>(), (15..25).collect::<Vec<_>>());
    }
}
