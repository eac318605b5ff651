//! Runs and attempts. A run is one execution of a job; an attempt is one try of a
//! run on one worker. The attempt id is the fencing token: only the run's current
//! attempt may change it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ids::{AttemptId, JobId, RunId, WorkerId};
use super::time::Timestamp;
use super::usage::ResourceUsage;

/// The life of a run.
///
/// ```text
/// Waiting ─▶ Pending ─▶ Scheduled ─▶ Running ─▶ Succeeded | Failed | TimedOut | Cancelled
///               ▲            │           │
///               └─ Retrying ◀┴───────────┘   (lost attempts go straight back to Pending)
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for the jobs it depends on.
    Waiting,
    /// Ready to be placed on a worker.
    Pending,
    /// Assigned to a worker, not yet started.
    Scheduled,
    /// Running on a worker.
    Running,
    /// Failed; will be tried again after `not_before`.
    Retrying,
    /// Ended with exit code 0.
    Succeeded,
    /// Ended in failure and no retries are left.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// The last attempt exceeded the job's timeout and no retries are left.
    TimedOut,
    /// Never ran: a workflow parent ended in a way its edge does not admit
    /// (say it failed, and the edge runs on success).
    UpstreamFailed,
}

impl RunState {
    /// Whether the run has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::Failed
                | RunState::Cancelled
                | RunState::TimedOut
                | RunState::UpstreamFailed
        )
    }

    /// Whether an attempt of the run is on a worker.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Scheduled | RunState::Running)
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Waiting => "waiting",
            RunState::Pending => "pending",
            RunState::Scheduled => "scheduled",
            RunState::Running => "running",
            RunState::Retrying => "retrying",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
            RunState::UpstreamFailed => "upstream_failed",
        }
    }

    /// Every state, in life order (then states added since, so a position
    /// stored in an index keeps its meaning).
    pub const ALL: [RunState; 10] = [
        RunState::Waiting,
        RunState::Pending,
        RunState::Scheduled,
        RunState::Running,
        RunState::Retrying,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::TimedOut,
        RunState::UpstreamFailed,
    ];
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s.trim().to_ascii_lowercase().replace('-', "_")).ok_or_else(
            || {
                let names: Vec<_> = RunState::ALL.iter().map(|s| s.as_str()).collect();
                format!("{s:?} is not a run state (one of {})", names.join(", "))
            },
        )
    }
}

/// One execution of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// The job it executes.
    pub job: JobId,
    /// Where it is in its life.
    pub state: RunState,
    /// When it was created.
    pub created_at: Timestamp,
    /// For cron runs, the fire time it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptId>,
    /// The attempt that may report; any other is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_attempt: Option<AttemptId>,
    /// Retries consumed by failures (lost attempts do not count).
    #[serde(default)]
    pub retries_used: u32,
    /// While retrying: not placed before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// A cancel was asked while an attempt was on a worker.
    #[serde(default)]
    pub cancel_requested: bool,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Why it ended the way it did, when exit codes do not say it all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Run {
    /// A new run of `job`, waiting (the state machine moves it on and counts it).
    pub fn waiting(id: RunId, job: JobId, created_at: Timestamp) -> Run {
        Run {
            id,
            job,
            state: RunState::Waiting,
            created_at,
            scheduled_for: None,
            attempts: Vec::new(),
            current_attempt: None,
            retries_used: 0,
            not_before: None,
            cancel_requested: false,
            finished_at: None,
            reason: None,
        }
    }
}

/// Where an attempt is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Sent to the worker.
    Assigned,
    /// The worker started it.
    Running,
    /// The worker reported its end.
    Finished,
    /// Its worker was lost; the run went on without it.
    Lost,
}

impl AttemptState {
    /// Whether the attempt still holds resources on its worker.
    pub fn is_live(self) -> bool {
        matches!(self, AttemptState::Assigned | AttemptState::Running)
    }
}

/// One try of a run on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its id (the fencing token).
    pub id: AttemptId,
    /// The run it tries.
    pub run: RunId,
    /// Where it runs.
    pub worker: WorkerId,
    /// Where it is.
    pub state: AttemptState,
    /// When it was assigned.
    pub assigned_at: Timestamp,
    /// When the worker started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<AttemptResult>,
}

/// How an attempt ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    /// The process exited with a code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The process was killed by a signal it did not expect.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The job's timeout expired; the process tree was killed.
    TimedOut,
    /// Cancelled by a user; the process tree was killed.
    Cancelled,
    /// It could not run (no such program, unknown function, executor error).
    Failed {
        /// Why.
        reason: String,
    },
    /// The container exceeded its memory limit.
    OutOfMemory,
    /// The worker was lost while running it.
    Lost,
}

impl ExitStatus {
    /// Whether this counts as success.
    pub fn is_success(&self) -> bool {
        matches!(self, ExitStatus::Exited { code: 0 })
    }

    /// The process exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited { code } => Some(*code),
            _ => None,
        }
    }

    /// The exit code a CLI waiting on this should exit with: the code itself, 128+N
    /// for a signal, 124 for a timeout (like `timeout(1)`), 130 for a cancel, 137 for
    /// out of memory, 1 otherwise.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Exited { code } => *code,
            ExitStatus::Signaled { signal } => 128 + signal,
            ExitStatus::TimedOut => 124,
            ExitStatus::Cancelled => 130,
            ExitStatus::OutOfMemory => 137,
            ExitStatus::Failed { .. } | ExitStatus::Lost => 1,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited { code } => write!(f, "exit code {code}"),
            ExitStatus::Signaled { signal } => write!(f, "killed by signal {signal}"),
            ExitStatus::TimedOut => f.write_str("timed out"),
            ExitStatus::Cancelled => f.write_str("cancelled"),
            ExitStatus::Failed { reason } => write!(f, "failed to run: {reason}"),
            ExitStatus::OutOfMemory => f.write_str("out of memory"),
            ExitStatus::Lost => f.write_str("worker lost"),
        }
    }
}

/// The kept end of one output stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct OutputTail {
    /// The last bytes written (at most the executor's tail limit). Serializes as a
    /// string when it is UTF-8, as an array of bytes otherwise.
    #[serde(with = "text_or_bytes")]
    pub data: Bytes,
    /// How many earlier bytes were dropped to keep memory bounded.
    #[serde(default)]
    pub truncated: u64,
}

impl OutputTail {
    /// The tail as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Which output stream a chunk belongs to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl OutputStream {
    /// Both streams, stdout first.
    pub const BOTH: [OutputStream; 2] = [OutputStream::Stdout, OutputStream::Stderr];

    /// 0 for stdout, 1 for stderr (the order of [`OutputStream::BOTH`]).
    pub fn index(self) -> usize {
        match self {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// An attempt's result as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptResult {
    /// How it ended.
    pub status: ExitStatus,
    /// The end of its standard output.
    #[serde(default)]
    pub stdout: OutputTail,
    /// The end of its standard error.
    #[serde(default)]
    pub stderr: OutputTail,
    /// What it used, when its executor measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceUsage>,
}

impl AttemptResult {
    /// A result with a status and no output.
    pub fn status(status: ExitStatus) -> AttemptResult {
        AttemptResult { status, stdout: OutputTail::default(), stderr: OutputTail::default(), usage: None }
    }

    /// One stream's tail.
    pub fn tail(&self, stream: OutputStream) -> &OutputTail {
        match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        }
    }

    /// One stream's tail, to change.
    pub fn tail_mut(&mut self, stream: OutputStream) -> &mut OutputTail {
        match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        }
    }

    /// The same result with the output bytes taken out (the counts of dropped
    /// bytes and the usage stay): what the live state and the history's records keep.
    pub fn without_output(&self) -> AttemptResult {
        let strip = |t: &OutputTail| OutputTail { data: bytes::Bytes::new(), truncated: t.truncated };
        AttemptResult {
            status: self.status.clone(),
            stdout: strip(&self.stdout),
            stderr: strip(&self.stderr),
            usage: self.usage,
        }
    }
}

/// A piece of live output from a running attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// The run.
    pub run: RunId,
    /// The attempt that wrote it.
    pub attempt: AttemptId,
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes.
    pub data: Bytes,
}

/// Serde for output bytes: a JSON string when they are UTF-8 without NUL bytes
/// (readable, and what PostgreSQL's jsonb accepts), `{"base64": "…"}` otherwise —
/// never an array of numbers. Reads all three forms (Archon 0.1 wrote arrays).
pub(crate) mod text_or_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(data) {
            Ok(text) if !text.contains('\0') => s.serialize_str(text),
            _ => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("base64", &STANDARD.encode(data))?;
                map.end()
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Encoded {
        Text(String),
        Base64 { base64: String },
        Bytes(Vec<u8>),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Ok(match Encoded::deserialize(d)? {
            Encoded::Text(t) => Bytes::from(t),
            Encoded::Base64 { base64 } => {
                Bytes::from(STANDARD.decode(base64).map_err(|e| serde::de::Error::custom(format!("base64: {e}")))?)
            }
            Encoded::Bytes(b) => Bytes::from(b),
        })
    }

    /// The length of `data` once serialized by [`serialize`] into JSON, without
    /// building it (an upper bound for text: escapes counted at their longest).
    pub(crate) fn json_len(data: &[u8]) -> usize {
        match std::str::from_utf8(data) {
            Ok(text) if !text.contains('\0') => {
                2 + data.len() + data.iter().filter(|b| **b < 0x20 || **b == b'"' || **b == b'\\').count() * 5
            }
            _ => 14 + data.len().div_ceil(3) * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tails_serialize_as_text_when_they_can_and_round_trip_either_way() {
        let text = OutputTail { data: Bytes::from_static(b"hello\n"), truncated: 3 };
        let json = serde_json::to_string(&text).unwrap();
        assert_eq!(json, r#"{"data":"hello\n","truncated":3}"#);
        assert_eq!(serde_json::from_str::<OutputTail>(&json).unwrap(), text);
        let binary = OutputTail { data: Bytes::from_static(&[0xff, 0x00, 0x41]), truncated: 0 };
        let json = serde_json::to_string(&binary).unwrap();
        assert_eq!(json, r#"{"data":{"base64":"/wBB"},"truncated":0}"#);
        assert_eq!(serde_json::from_str::<OutputTail>(&json).unwrap(), binary);
        // Text with a NUL byte is binary too (PostgreSQL's jsonb refuses \u0000).
        let nul = OutputTail { data: Bytes::from_static(b"a\0b"), truncated: 0 };
        assert!(serde_json::to_string(&nul).unwrap().contains("base64"));
        // Archon 0.1 wrote binary output as an array of numbers: still read.
        let old: OutputTail = serde_json::from_str(r#"{"data":[255,0,65],"truncated":2}"#).unwrap();
        assert_eq!((old.data, old.truncated), (Bytes::from_static(&[0xff, 0x00, 0x41]), 2));
    }

    #[test]
    fn the_json_length_estimate_bounds_the_real_length() {
        for data in [&b"hello\n"[..], b"tab\tquote\"back\\", &[0xff, 0, 1, 2, 3], b"", &[0u8; 1000]] {
            let real = serde_json::to_string(&OutputTail { data: Bytes::copy_from_slice(data), truncated: 0 }).unwrap();
            let inner = real.len() - r#"{"data":,"truncated":0}"#.len();
            let estimate = text_or_bytes::json_len(data);
            assert!(estimate >= inner, "{data:?}: {estimate} < {inner}");
        }
    }
}
