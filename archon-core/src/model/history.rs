//! Finished runs and jobs as the history keeps them, once they have left the
//! live state. A record holds everything `archon get` shows but the output bytes,
//! which the history keeps apart, by attempt and stream.

use serde::{Deserialize, Serialize};

use super::ids::{JobId, RunId};
use super::job::Job;
use super::run::{Attempt, Run, RunState};
use super::time::Timestamp;

/// A run that reached a terminal state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run as it ended.
    pub run: Run,
    /// Its job's name.
    pub job_name: String,
    /// Its attempts, oldest first. Their results carry the exit status and how
    /// many output bytes were dropped, not the output itself.
    pub attempts: Vec<Attempt>,
    /// When its job's own `retention` removes it (`None`: the cluster default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl RunRecord {
    /// The run's id.
    pub fn id(&self) -> RunId {
        self.run.id
    }

    /// When it ended (its creation time if, impossibly, it has none).
    pub fn finished_at(&self) -> Timestamp {
        self.run.finished_at.unwrap_or(self.run.created_at)
    }
}

/// A job that can produce no more runs (a one-off job whose run ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job as it ended (its `runs` lists every run it had).
    pub job: Job,
    /// Its last run's terminal state.
    pub last_state: Option<RunState>,
}

impl JobRecord {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.job.id
    }
}
