//! Job definitions. A [`JobSpec`] is what a user submits; a [`Job`] is the stored
//! definition with its id. [`JobSpec::validate`] checks everything that can be
//! checked without the cluster's state and names the offending field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::{JobId, RunId};
use super::resources::Resources;
use super::schedule::Schedule;
use super::secret::Secret;
use super::task::Task;
use super::time::Timestamp;

/// A job definition as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A human name (need not be unique).
    pub name: String,
    /// What to run.
    pub task: Task,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: passed to the attempt
    /// exactly like `env`, shown everywhere else as `***` (see [`Secret`]).
    /// Stored as written (in the log, snapshots, PostgreSQL); a key may not
    /// also be in `env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, Secret>,
    /// Working directory on the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Resources reserved on the worker while an attempt runs.
    #[serde(default = "Resources::default_request")]
    pub resources: Resources,
    /// Worker label constraints; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Higher runs first when capacity is short.
    #[serde(default)]
    pub priority: i32,
    /// Wall-clock limit of one attempt, enforced on the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// What happens when an attempt fails.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Recurrence; `None` for a one-off job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Box<Schedule>>,
    /// Jobs whose runs must succeed before this job's run starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<JobId>,
    /// A key that makes a retried submit return the first job instead of a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Placement policy for this job; `None` uses the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementPolicy>,
    /// How long its finished runs stay in the history; `None` uses the cluster's
    /// default (`--history-retention`). The shorter of the two applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// Keep at most this many of its finished runs in the history (the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Output kept per stream of each attempt, in bytes; `None` uses the
    /// manager's default (`--output-limit`). The last bytes are kept and the
    /// number dropped before them is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_limit: Option<u64>,
    /// What the worker does with this job's attempt when its lease lapses (it
    /// has heard from no leader for longer than its lease): `kill` (default)
    /// kills it before any manager can declare the worker lost, so a run never
    /// executes in two places at once, at the cost of restarting it after a long
    /// enough network blip or pause; `keep` lets it run on, like Nomad's
    /// `max_client_disconnect`: a blip shorter than the worker timeout costs
    /// nothing, but if the worker is declared lost the run is started again
    /// elsewhere while this attempt may still be running, so the run can execute
    /// twice at once (its result is accepted only from the current attempt:
    /// fencing still keeps completion exactly-once). Not written when `kill`,
    /// so specs without it read as before.
    #[serde(default, skip_serializing_if = "OnDisconnect::is_kill")]
    pub on_disconnect: OnDisconnect,
}

impl JobSpec {
    /// A spec with defaults for everything but the name and the task.
    pub fn new(name: impl Into<String>, task: Task) -> JobSpec {
        JobSpec {
            name: name.into(),
            task,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            working_dir: None,
            resources: Resources::default_request(),
            constraints: Vec::new(),
            priority: 0,
            timeout: None,
            retry: RetryPolicy::default(),
            schedule: None,
            depends_on: Vec::new(),
            idempotency_key: None,
            placement: None,
            retention: None,
            keep_last: None,
            output_limit: None,
            on_disconnect: OnDisconnect::Kill,
        }
    }

    /// Checks what can be checked without cluster state. The error names the field
    /// and the accepted form.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.trim().is_empty() {
            return Err(SpecError::new("name", "must not be empty"));
        }
        if self.name.len() > 256 {
            return Err(SpecError::new("name", "must be at most 256 bytes"));
        }
        match &self.task {
            super::Task::Shell { command } if command.trim().is_empty() => {
                return Err(SpecError::new(
                    "task.command",
                    "must not be empty (give a command line such as \"echo hello\")",
                ));
            }
            super::Task::Script { interpreter, .. } if interpreter.trim().is_empty() => {
                return Err(SpecError::new("task.interpreter", "must not be empty (e.g. bash, python3)"));
            }
            super::Task::Script { body, .. } if body.trim().is_empty() => {
                return Err(SpecError::new("task.body", "must not be empty (the script's text)"));
            }
            super::Task::Process { argv } if argv.first().is_none_or(|p| p.trim().is_empty()) => {
                return Err(SpecError::new("task.argv", "must name a program (e.g. [\"/bin/echo\", \"hi\"])"));
            }
            super::Task::Docker(d) => validate_docker(d)?,
            super::Task::Function { name, .. } if name.trim().is_empty() => {
                return Err(SpecError::new("task.name", "must name a registered function"));
            }
            super::Task::Function { input, .. } if serde_json::from_str::<serde_json::Value>(input).is_err() => {
                return Err(SpecError::new("task.input", "must be JSON text (e.g. {\"n\": 1} or null)"));
            }
            super::Task::Custom { executor, .. }
                if executor.is_empty()
                    || !executor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                return Err(SpecError::new(
                    "task.executor",
                    format!("{executor:?} is not an executor name (letters, digits, - and _, e.g. http)"),
                ));
            }
            super::Task::Custom { input, .. } if serde_json::from_str::<serde_json::Value>(input).is_err() => {
                return Err(SpecError::new("task.input", "must be JSON text (e.g. {\"url\": \"…\"} or null)"));
            }
            _ => {}
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError::new("env", format!("{key:?} is not a variable name (use NAME=value)")));
            }
        }
        if let Some((key, _)) = self.env.iter().find(|(_, v)| v.contains('\0')) {
            return Err(SpecError::new(
                "env",
                format!("the value of {key} contains a NUL byte, which no process can take"),
            ));
        }
        for key in self.secret_env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError::new("secret_env", format!("{key:?} is not a variable name (use NAME=value)")));
            }
            if self.env.contains_key(key) {
                return Err(SpecError::new(
                    "secret_env",
                    format!("{key} is also in env; give each variable in one of env or secret_env"),
                ));
            }
        }
        if let Some((key, _)) = self.secret_env.iter().find(|(_, v)| v.expose().contains('\0')) {
            return Err(SpecError::new(
                "secret_env",
                format!("the value of {key} contains a NUL byte, which no process can take"),
            ));
        }
        if let Some(field) = self.task.nul_field() {
            return Err(SpecError::new(field, "contains a NUL byte, which no process can take"));
        }
        if self.retention.is_some_and(|r| r.is_zero()) {
            return Err(SpecError::new("retention", "must be greater than zero (e.g. 1h, 7d)"));
        }
        if self.keep_last == Some(0) {
            return Err(SpecError::new("keep_last", "must be at least 1 (the newest finished runs kept)"));
        }
        if self.output_limit == Some(0) {
            return Err(SpecError::new("output_limit", "must be greater than zero (e.g. 64KiB, 1MiB)"));
        }
        if let Some(t) = self.timeout
            && t.is_zero()
        {
            return Err(SpecError::new("timeout", "must be greater than zero (e.g. 30s, 5m)"));
        }
        if self.retry.backoff_base.is_zero() && self.retry.max_retries > 0 {
            return Err(SpecError::new("retry.backoff", "must be greater than zero (e.g. 1s)"));
        }
        if self.retry.backoff_max < self.retry.backoff_base {
            return Err(SpecError::new("retry.backoff_max", "must be at least retry.backoff"));
        }
        if self.retry.max_retries > 1000 {
            return Err(SpecError::new("retry.max_retries", "must be at most 1000"));
        }
        for c in &self.constraints {
            if c.label.trim().is_empty() {
                return Err(SpecError::new("constraints", "label must not be empty (use key=value)"));
            }
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 256)
        {
            return Err(SpecError::new("idempotency_key", "must be 1 to 256 bytes"));
        }
        Ok(())
    }

    /// The variables an attempt gets: `env`, then `secret_env` with their values.
    pub fn environment(&self) -> impl Iterator<Item = (&str, &str)> {
        let env = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        env.chain(self.secret_env.iter().map(|(k, v)| (k.as_str(), v.expose())))
    }

    /// Replaces every `secret_env` value by `***` (the keys stay): the form the
    /// API answers with.
    pub fn redact_secrets(&mut self) {
        for value in self.secret_env.values_mut() {
            *value = Secret::redacted();
        }
    }

    /// `spec` with its secret values redacted; copied only if it has any.
    pub fn redacted(spec: &std::sync::Arc<JobSpec>) -> std::sync::Arc<JobSpec> {
        if spec.secret_env.is_empty() {
            return spec.clone();
        }
        let mut copy = JobSpec::clone(spec);
        copy.redact_secrets();
        std::sync::Arc::new(copy)
    }
}

/// The checks of a container task that need no worker.
fn validate_docker(d: &super::DockerTask) -> Result<(), SpecError> {
    if d.image.trim().is_empty() || d.image.chars().any(char::is_whitespace) {
        return Err(SpecError::new("task.image", "must name an image, without spaces (e.g. busybox:1.36)"));
    }
    let network_ok = !d.network.is_empty()
        && d.network.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'));
    if !network_ok {
        return Err(SpecError::new(
            "task.network",
            format!("{:?} is not a network mode (none, bridge, host, or a network's name)", d.network),
        ));
    }
    for mount in &d.mounts {
        let mut parts = mount.split(':');
        let (host, container, mode) = (parts.next(), parts.next(), parts.next());
        let absolute = |p: Option<&str>| p.is_some_and(|p| p.starts_with('/'));
        if !absolute(host)
            || !absolute(container)
            || !matches!(mode, None | Some("ro" | "rw"))
            || parts.next().is_some()
        {
            return Err(SpecError::new(
                "task.mounts",
                format!("{mount:?} is not a bind mount (use /host/path:/container/path, optionally :ro or :rw)"),
            ));
        }
    }
    if d.user.as_ref().is_some_and(|u| u.trim().is_empty()) {
        return Err(SpecError::new("task.user", "must not be empty (a user name or uid[:gid], e.g. 65534:65534)"));
    }
    Ok(())
}

/// A field of a job spec that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The field, as a path (`task.command`, `timeout`).
    pub field: String,
    /// What is wrong and the accepted form.
    pub message: String,
}

impl SpecError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { field: field.into(), message: message.into() }
    }
}

/// A condition on a worker's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraint {
    /// The label key.
    pub label: String,
    /// How the label is compared.
    #[serde(default)]
    pub op: ConstraintOp,
    /// The value compared against (ignored by `exists`).
    #[serde(default)]
    pub value: String,
}

/// How a [`Constraint`] compares.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintOp {
    /// The label equals the value.
    #[default]
    Equals,
    /// The label is missing or differs.
    NotEquals,
    /// The label is present.
    Exists,
}

impl Constraint {
    /// Whether a worker with these labels satisfies the constraint.
    pub fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self.op {
            ConstraintOp::Equals => labels.get(&self.label) == Some(&self.value),
            ConstraintOp::NotEquals => labels.get(&self.label) != Some(&self.value),
            ConstraintOp::Exists => labels.contains_key(&self.label),
        }
    }
}

impl std::str::FromStr for Constraint {
    type Err = SpecError;

    /// Parses `key=value`, `key!=value` or `key` (exists).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || SpecError::new("constraint", format!("{s:?} is not a constraint (use key=value, key!=value or key)"));
        let (label, op, value) = if let Some((k, v)) = s.split_once("!=") {
            (k, ConstraintOp::NotEquals, v)
        } else if let Some((k, v)) = s.split_once('=') {
            (k, ConstraintOp::Equals, v)
        } else {
            (s, ConstraintOp::Exists, "")
        };
        if label.trim().is_empty() {
            return Err(bad());
        }
        Ok(Constraint { label: label.trim().to_owned(), op, value: value.trim().to_owned() })
    }
}

/// How placement chooses among workers that fit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Fill the fullest worker that fits (fewer, busier workers).
    #[default]
    Binpack,
    /// Prefer the emptiest worker (load spread out).
    Spread,
}

/// What a worker does with a job's running attempt when its lease lapses: it
/// has heard from no leader for longer than its lease (see
/// [`JobSpec::on_disconnect`] for the trade-off).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisconnect {
    /// Kill the attempt before any manager can declare the worker lost: a run
    /// never executes in two places at once.
    #[default]
    Kill,
    /// Let the attempt run on; if the worker is declared lost, the run starts
    /// again elsewhere and may execute twice at once.
    Keep,
}

impl OnDisconnect {
    /// Both choices, the default first.
    pub const ALL: [OnDisconnect; 2] = [OnDisconnect::Kill, OnDisconnect::Keep];

    /// The name used in flags, spec files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDisconnect::Kill => "kill",
            OnDisconnect::Keep => "keep",
        }
    }

    /// Whether it is the default, [`OnDisconnect::Kill`] (which specs leave out).
    pub fn is_kill(&self) -> bool {
        *self == OnDisconnect::Kill
    }
}

impl std::fmt::Display for OnDisconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OnDisconnect {
    type Err = String;

    /// Parses `kill` or `keep` (any case, spaces around ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        OnDisconnect::ALL
            .into_iter()
            .find(|o| o.as_str() == norm)
            .ok_or_else(|| format!("{s:?} is not an on-disconnect choice (use kill or keep)"))
    }
}

/// Retries after a failed or timed-out attempt. Attempts lost with their worker are
/// requeued and do not count against `max_retries`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// How many times a failed run is tried again (0 = never).
    #[serde(default)]
    pub max_retries: u32,
    /// Delay before the first retry; doubles each retry.
    #[serde(default = "default_backoff")]
    pub backoff_base: Duration,
    /// The delay never exceeds this.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Duration,
    /// Spread retries by a random fraction of the delay (the upper half is kept).
    #[serde(default = "default_true")]
    pub jitter: bool,
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_true() -> bool {
    true
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            backoff_base: default_backoff(),
            backoff_max: default_backoff_max(),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), given a deterministic random
    /// value `entropy`: exponential, capped, with "equal jitter" (half fixed, half random).
    pub fn delay(&self, retry: u32, entropy: u64) -> Duration {
        let base = self.backoff_base.as_millis().min(u128::from(u64::MAX)) as u64;
        let max = self.backoff_max.as_millis().min(u128::from(u64::MAX)) as u64;
        let exp = base.saturating_mul(1u64.checked_shl(retry.min(62)).unwrap_or(u64::MAX)).min(max);
        if !self.jitter || exp < 2 {
            return Duration::from_millis(exp);
        }
        let half = exp / 2;
        Duration::from_millis(half + entropy % (exp - half + 1))
    }
}

/// A stored job definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The definition as submitted.
    pub spec: std::sync::Arc<JobSpec>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// Its runs, oldest first.
    pub runs: Vec<RunId>,
    /// Set once the job is cancelled: no new runs are created.
    #[serde(default)]
    pub cancelled: bool,
}

impl Job {
    /// Replaces its secret values by `***`, as the API shows it (see
    /// [`JobSpec::redact_secrets`]).
    pub fn redact_secrets(&mut self) {
        self.spec = JobSpec::redacted(&self.spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;

    #[test]
    fn empty_command_is_rejected_naming_the_field() {
        let spec = JobSpec::new("x", Task::Shell { command: "  ".into() });
        let err = spec.validate().unwrap_err();
        assert_eq!(err.field, "task.command");
    }

    #[test]
    fn container_tasks_are_checked_naming_the_field() {
        let docker = |edit: &dyn Fn(&mut crate::model::DockerTask)| {
            let mut d: crate::model::DockerTask = serde_json::from_str(r#"{"image": "busybox:1"}"#).unwrap();
            edit(&mut d);
            JobSpec::new("x", Task::Docker(Box::new(d))).validate().map_err(|e| e.field)
        };
        assert_eq!(docker(&|_| {}), Ok(()));
        assert_eq!(docker(&|d| d.image = " ".into()), Err("task.image".into()));
        assert_eq!(docker(&|d| d.network = "bad net".into()), Err("task.network".into()));
        assert_eq!(docker(&|d| d.network = "my-net_1".into()), Ok(()));
        assert_eq!(docker(&|d| d.mounts = vec!["/srv:/data:ro".into(), "/a:/b".into()]), Ok(()));
        for bad in ["srv:/data", "/srv", "/srv:data", "/srv:/data:rx", "/a:/b:ro:x"] {
            assert_eq!(docker(&|d| d.mounts = vec![bad.into()]), Err("task.mounts".into()), "{bad}");
        }
        assert_eq!(docker(&|d| d.user = Some("".into())), Err("task.user".into()));
    }

    #[test]
    fn a_custom_task_needs_an_executor_name_and_json_input_and_needs_its_executor() {
        let custom = |executor: &str, input: &str| {
            JobSpec::new("x", Task::Custom { executor: executor.into(), input: input.into() })
                .validate()
                .map_err(|e| e.field)
        };
        assert_eq!(custom("http", r#"{"url": "http://example.test/"}"#), Ok(()));
        assert_eq!(custom("my_kind-2", "null"), Ok(()));
        for bad in ["", "http request", "custom:http", "ß"] {
            assert_eq!(custom(bad, "null"), Err("task.executor".into()), "{bad:?}");
        }
        assert_eq!(custom("http", "{not json"), Err("task.input".into()));
        let task = Task::Custom { executor: "http".into(), input: "null".into() };
        assert_eq!((task.kind(), task.capability()), (crate::model::TaskKind::Custom, "custom:http".to_owned()));
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json, serde_json::json!({ "kind": "custom", "executor": "http", "input": "null" }));
    }

    #[test]
    fn a_variable_in_both_env_and_secret_env_is_refused_naming_the_field() {
        let mut spec = JobSpec::new("x", Task::Shell { command: "true".into() });
        spec.env.insert("TOKEN".into(), "plain".into());
        spec.secret_env.insert("PASSWORD".into(), Secret::new("s3cret"));
        assert_eq!(spec.validate(), Ok(()));
        spec.secret_env.insert("TOKEN".into(), Secret::new("s3cret"));
        let err = spec.validate().unwrap_err();
        assert_eq!(err.field, "secret_env");
        assert!(err.message.contains("TOKEN is also in env"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        spec.env.clear();
        spec.secret_env.insert("BAD=NAME".into(), Secret::new("v"));
        assert_eq!(spec.validate().unwrap_err().field, "secret_env");
        spec.secret_env.remove("BAD=NAME");
        spec.secret_env.insert("NUL".into(), Secret::new("a\0b"));
        let err = spec.validate().unwrap_err();
        assert_eq!(err.field, "secret_env");
        assert!(err.message.contains("value of NUL"), "{err}");
    }

    #[test]
    fn secret_env_keeps_its_values_through_serde_and_hides_them_in_debug_and_redaction() {
        let mut spec = JobSpec::new("x", Task::Shell { command: "echo $TOKEN".into() });
        spec.env.insert("PLAIN".into(), "visible".into());
        spec.secret_env.insert("TOKEN".into(), Secret::new("hunter2-value"));
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""secret_env":{"TOKEN":"hunter2-value"}"#), "{json}");
        let back: JobSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert_eq!(back.secret_env["TOKEN"].expose(), "hunter2-value");
        let debug = format!("{spec:?}");
        assert!(!debug.contains("hunter2-value") && debug.contains(r#""TOKEN": ***"#), "{debug}");
        let env: Vec<(&str, &str)> = spec.environment().collect();
        assert_eq!(env, [("PLAIN", "visible"), ("TOKEN", "hunter2-value")]);
        let shown = JobSpec::redacted(&std::sync::Arc::new(spec.clone()));
        assert_eq!(shown.secret_env["TOKEN"].expose(), "***");
        assert_eq!(shown.env["PLAIN"], "visible");
        assert!(!serde_json::to_string(&*shown).unwrap().contains("hunter2-value"));
    }

    #[test]
    fn specs_written_before_secret_env_still_read() {
        let old = r#"{"name":"x","task":{"kind":"shell","command":"true"},"env":{"A":"1"}}"#;
        let spec: JobSpec = serde_json::from_str(old).unwrap();
        assert!(spec.secret_env.is_empty());
        assert!(!serde_json::to_string(&spec).unwrap().contains("secret_env"), "an empty map is not written");
    }

    #[test]
    fn on_disconnect_defaults_to_kill_which_is_not_written() {
        let old = r#"{"name":"x","task":{"kind":"shell","command":"true"}}"#;
        let mut spec: JobSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.on_disconnect, OnDisconnect::Kill);
        assert!(!serde_json::to_string(&spec).unwrap().contains("on_disconnect"), "kill is not written");
        spec.on_disconnect = OnDisconnect::Keep;
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""on_disconnect":"keep""#), "{json}");
        assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
        let bad = r#"{"name":"x","task":{"kind":"shell","command":"true"},"on_disconnect":"linger"}"#;
        assert!(serde_json::from_str::<JobSpec>(bad).is_err());
    }

    #[test]
    fn on_disconnect_parses_kill_or_keep_and_names_both_when_refused() {
        for o in OnDisconnect::ALL {
            assert_eq!(o.to_string().parse::<OnDisconnect>(), Ok(o));
        }
        assert_eq!(" KEEP ".parse::<OnDisconnect>(), Ok(OnDisconnect::Keep));
        let err = "linger".parse::<OnDisconnect>().unwrap_err();
        assert_eq!(err, "\"linger\" is not an on-disconnect choice (use kill or keep)");
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            jitter: false,
        };
        assert_eq!(p.delay(0, 0), Duration::from_secs(1));
        assert_eq!(p.delay(1, 0), Duration::from_secs(2));
        assert_eq!(p.delay(5, 0), Duration::from_secs(5));
        let j = RetryPolicy { jitter: true, ..p };
        for e in 0..100 {
            let d = j.delay(1, e * 7919);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
        }
    }

    #[test]
    fn constraints_parse() {
        let c: Constraint = "zone=a".parse().unwrap();
        assert_eq!((c.label.as_str(), c.op, c.value.as_str()), ("zone", ConstraintOp::Equals, "a"));
        let c: Constraint = "zone!=b".parse().unwrap();
        assert_eq!(c.op, ConstraintOp::NotEquals);
        assert_eq!("gpu".parse::<Constraint>().unwrap().op, ConstraintOp::Exists);
        assert!("=x".parse::<Constraint>().is_err());
    }
}
