//! The commands that change cluster state. **Append-only and versioned**: a variant's
//! serialized name and meaning never change once released, because old logs must
//! still apply; new behaviour gets a new variant. Time comes inside the command
//! (`at`, set by the leader when it proposes), never from a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::model::{
    AttemptId, AttemptResult, FireSource, JobId, JobSpec, MissedFires, OutputStream, OverlapPolicy, Resources, RunId,
    RunState, Timestamp, WorkerId, WorkflowId, WorkflowSpec,
};

/// The newest command format: 1 for the commands of Archon 0.2's first cut,
/// 2 for the cron commands ([`Command::ScheduleJob`] and the fire and pause
/// commands) and the workflow commands. A log entry or snapshot is labelled with the newest format among
/// its commands, so a node too old to know one refuses the entry with an error
/// instead of misreading it, while entries without them still read everywhere.
/// 3 adds the token commands ([`Command::CreateToken`], [`Command::RevokeToken`])
/// and `secret_env` in job specs (a submit, cron job or workflow that has one
/// is format 3: an older node would drop the secrets and run the job without them).
/// 4 adds worker queues (`queue` in [`Command::RegisterWorker`]: an older node
/// would refuse the placements into a queue that this one accepts).
pub const COMMAND_FORMAT: u32 = 4;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A state change, as stored in the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// A worker announces itself (first time or on reconnect).
    RegisterWorker {
        /// When.
        at: Timestamp,
        /// Its unique name.
        name: String,
        /// Where it can be reached.
        address: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
        /// What it offers.
        capacity: Resources,
        /// What task kinds it runs.
        capabilities: BTreeSet<String>,
        /// Attempts it is still running.
        running: Vec<AttemptId>,
        /// How many attempts it holds queued beyond what fits it (format 4;
        /// absent: 0).
        #[serde(default, skip_serializing_if = "is_zero")]
        queue: u32,
    },
    /// The reaper found a worker silent past the threshold.
    WorkerLost {
        /// When.
        at: Timestamp,
        /// Which.
        worker: WorkerId,
    },
    /// A worker left cleanly; whatever it still had is requeued.
    WorkerLeft {
        /// When.
        at: Timestamp,
        /// Which.
        worker: WorkerId,
    },
    /// Stop (or resume) placing new attempts on a worker.
    SetDraining {
        /// When.
        at: Timestamp,
        /// Which.
        worker: WorkerId,
        /// Draining or back to ready.
        draining: bool,
    },
    /// A job is submitted.
    SubmitJob {
        /// When.
        at: Timestamp,
        /// Its definition.
        spec: Arc<JobSpec>,
        /// How the jobs it depends on that have left the live state ended, as the
        /// leader read them from the history when it proposed the submit (the
        /// state machine reads no history). A dependency neither live nor here is
        /// refused as [`Rejection::DependencyNotLive`](super::Rejection::DependencyNotLive).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        finished_deps: Vec<(JobId, RunState)>,
    },
    /// Place a run's next attempt on a worker.
    AssignAttempt {
        /// When.
        at: Timestamp,
        /// Which run.
        run: RunId,
        /// Where.
        worker: WorkerId,
    },
    /// A worker started an attempt.
    StartAttempt {
        /// When.
        at: Timestamp,
        /// The run.
        run: RunId,
        /// The attempt (fencing token).
        attempt: AttemptId,
    },
    /// A worker reports an attempt's end.
    FinishAttempt {
        /// When.
        at: Timestamp,
        /// The run.
        run: RunId,
        /// The attempt (fencing token).
        attempt: AttemptId,
        /// How it ended.
        result: AttemptResult,
    },
    /// Part of an attempt's kept output, proposed before its `FinishAttempt` when
    /// the output is too large to travel inside it. Applying the same chunk twice
    /// changes nothing.
    AttemptOutput {
        /// When.
        at: Timestamp,
        /// The run.
        run: RunId,
        /// The attempt (fencing token).
        attempt: AttemptId,
        /// Which stream.
        stream: OutputStream,
        /// Where in the stream's kept output the bytes start.
        offset: u64,
        /// The bytes.
        #[serde(with = "crate::model::output_bytes")]
        data: Bytes,
    },
    /// The leader's housekeeping: remove finished runs and retired jobs from the
    /// history (the retention policy chose them), and forget idempotency keys
    /// given before `keys_before`.
    Prune {
        /// When.
        at: Timestamp,
        /// Finished runs to remove, with the state each ended in.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        runs: Vec<(RunId, RunState)>,
        /// Retired jobs to remove.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        jobs: Vec<JobId>,
        /// Finished workflows to remove.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        workflows: Vec<WorkflowId>,
        /// Forget idempotency keys given before this instant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys_before: Option<Timestamp>,
    },
    /// Cancel one run.
    CancelRun {
        /// When.
        at: Timestamp,
        /// Which.
        run: RunId,
    },
    /// Cancel a job: its unfinished runs, and no new ones.
    CancelJob {
        /// When.
        at: Timestamp,
        /// Which.
        job: JobId,
    },
    /// A job with a cron schedule is submitted: it has no run until its first
    /// fire. (A `SubmitJob` carrying a schedule is refused, as it always was.)
    ScheduleJob {
        /// When.
        at: Timestamp,
        /// Its definition; `schedule` is set (the leader checked the expression).
        spec: Arc<JobSpec>,
    },
    /// A cron job's schedule fires at `instants` (oldest first), each starting
    /// a run under the overlap policy. From the ticker (`source` = cron), only
    /// instants after the schedule's cursor count, so none fires twice, and
    /// `missed` records the fires found older than the catch-up window; from an
    /// operator (trigger, backfill), the cursor is left alone.
    FireSchedule {
        /// When.
        at: Timestamp,
        /// The cron job.
        job: JobId,
        /// The fire instants.
        instants: Vec<Timestamp>,
        /// Who fired.
        #[serde(default)]
        source: FireSource,
        /// An overlap policy for these fires instead of the schedule's (backfill).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlap: Option<OverlapPolicy>,
        /// Fires missed during downtime, past the catch-up window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missed: Option<MissedFires>,
    },
    /// Pause or resume a cron job's schedule. Resuming carries on from `at`:
    /// fires that fell in the pause are neither run nor counted as missed.
    PauseSchedule {
        /// When.
        at: Timestamp,
        /// The cron job.
        job: JobId,
        /// Paused, or resumed.
        paused: bool,
        /// The operator's note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A workflow is submitted: each node becomes a job (ids in the order the
    /// nodes are written), all or none; a node waits for its parents.
    SubmitWorkflow {
        /// When.
        at: Timestamp,
        /// Its definition (the leader checked its limits).
        spec: Arc<WorkflowSpec>,
    },
    /// Cancel a workflow's unfinished jobs.
    CancelWorkflow {
        /// When.
        at: Timestamp,
        /// Which.
        workflow: WorkflowId,
    },
    /// An API token is created (its record: a digest, never the secret).
    CreateToken {
        /// When.
        at: Timestamp,
        /// The token.
        token: crate::auth::TokenRecord,
    },
    /// An API token is revoked: no manager accepts it once this applies.
    RevokeToken {
        /// When.
        at: Timestamp,
        /// Which.
        token: crate::auth::TokenId,
    },
}

impl Command {
    /// The instant the leader stamped on it.
    pub fn at(&self) -> Timestamp {
        match self {
            Command::RegisterWorker { at, .. }
            | Command::WorkerLost { at, .. }
            | Command::WorkerLeft { at, .. }
            | Command::SetDraining { at, .. }
            | Command::SubmitJob { at, .. }
            | Command::AssignAttempt { at, .. }
            | Command::StartAttempt { at, .. }
            | Command::FinishAttempt { at, .. }
            | Command::AttemptOutput { at, .. }
            | Command::Prune { at, .. }
            | Command::CancelRun { at, .. }
            | Command::CancelJob { at, .. }
            | Command::ScheduleJob { at, .. }
            | Command::FireSchedule { at, .. }
            | Command::PauseSchedule { at, .. }
            | Command::SubmitWorkflow { at, .. }
            | Command::CancelWorkflow { at, .. }
            | Command::CreateToken { at, .. }
            | Command::RevokeToken { at, .. } => *at,
        }
    }

    /// The command format a reader must know to apply this command (see
    /// [`COMMAND_FORMAT`]).
    pub fn format(&self) -> u32 {
        match self {
            Command::SubmitJob { spec, .. } | Command::ScheduleJob { spec, .. } if !spec.secret_env.is_empty() => 3,
            Command::SubmitWorkflow { spec, .. } if spec.has_secrets() => 3,
            Command::ScheduleJob { .. }
            | Command::FireSchedule { .. }
            | Command::PauseSchedule { .. }
            | Command::SubmitWorkflow { .. }
            | Command::CancelWorkflow { .. } => 2,
            Command::Prune { workflows, .. } if !workflows.is_empty() => 2,
            Command::CreateToken { .. } | Command::RevokeToken { .. } => 3,
            Command::RegisterWorker { queue, .. } if *queue > 0 => 4,
            _ => 1,
        }
    }

    /// A submit with nothing resolved by the leader yet.
    pub fn submit(at: Timestamp, spec: Arc<JobSpec>) -> Command {
        Command::SubmitJob { at, spec, finished_deps: Vec::new() }
    }

    /// About how many bytes the command takes in the log (its JSON), without
    /// encoding it: a close upper bound (within a few percent), so that log
    /// entries stay under their cap without the cost of encoding twice.
    pub fn size_hint(&self) -> usize {
        // The name, `at` and up to three ids of any command, quoted and keyed.
        const SMALL: usize = 120;
        let text = |s: &str| json_str_len(s.as_bytes());
        match self {
            Command::ScheduleJob { spec, .. } => Command::submit(Timestamp(0), spec.clone()).size_hint() + 400,
            Command::FireSchedule { instants, missed, .. } => {
                SMALL + 80 + instants.len() * 16 + missed.as_ref().map_or(0, |m| 80 + m.instants.len() * 16)
            }
            Command::PauseSchedule { note, .. } => SMALL + 40 + note.as_deref().map_or(0, text),
            Command::SubmitWorkflow { spec, .. } => {
                let nodes: usize = spec
                    .nodes
                    .iter()
                    .map(|n| {
                        let edges: usize = n.after.iter().map(|e| text(&e.parent) + 40).sum();
                        Command::submit(Timestamp(0), Arc::new(n.job.clone())).size_hint() + text(&n.name) + edges + 40
                    })
                    .sum();
                SMALL + text(&spec.name) + nodes
            }
            Command::CancelWorkflow { .. } | Command::RevokeToken { .. } => SMALL,
            Command::CreateToken { token, .. } => SMALL + 400 + text(&token.name),
            Command::SubmitJob { spec, finished_deps, .. } => {
                // `env` and `secret_env` (its key and braces are in the 480).
                let env: usize = spec.environment().map(|(k, v)| text(k) + text(v) + 2).sum();
                let constraints: usize = spec.constraints.iter().map(|c| text(&c.label) + text(&c.value) + 40).sum();
                let task = match &spec.task {
                    crate::model::Task::Shell { command } => text(command),
                    crate::model::Task::Script { interpreter, body } => text(interpreter) + text(body),
                    crate::model::Task::Process { argv } => argv.iter().map(|a| text(a) + 1).sum(),
                    crate::model::Task::Function { name, input } => text(name) + text(input),
                    crate::model::Task::Custom { executor, input } => text(executor) + text(input),
                    // Rare and bounded by max_task_bytes: counted at the worst escaping.
                    crate::model::Task::Docker(_) => 6 * spec.task.size() + 200,
                };
                480 + text(&spec.name)
                    + task
                    + spec.working_dir.as_deref().map_or(0, text)
                    + spec.idempotency_key.as_deref().map_or(0, text)
                    + env
                    + constraints
                    + spec.depends_on.len() * 21
                    + finished_deps.len() * 40
            }
            Command::FinishAttempt { result, .. } => {
                SMALL
                    + 140
                    + crate::model::output_json_len(&result.stdout.data)
                    + crate::model::output_json_len(&result.stderr.data)
                    + match &result.status {
                        crate::model::ExitStatus::Failed { reason } => text(reason),
                        _ => 0,
                    }
                    // Four keyed u64s at their longest.
                    + result.usage.map_or(0, |_| 160)
            }
            Command::AttemptOutput { data, .. } => SMALL + 60 + crate::model::output_json_len(data),
            Command::RegisterWorker { name, address, labels, capabilities, running, .. } => {
                SMALL
                    + 160
                    + text(name)
                    + text(address)
                    + labels.iter().map(|(k, v)| text(k) + text(v) + 2).sum::<usize>()
                    + capabilities.iter().map(|c| text(c) + 1).sum::<usize>()
                    + running.len() * 21
                    + 20
            }
            Command::Prune { runs, jobs, workflows, .. } => {
                SMALL + 80 + runs.len() * 40 + jobs.len() * 21 + workflows.len() * 21
            }
            _ => SMALL,
        }
    }
}

/// The length of `s` as a JSON string (quotes and escapes included), without
/// building it: a control character takes six bytes (`\u0001`), `"` and `\` two.
fn json_str_len(s: &[u8]) -> usize {
    2 + s.len() + s.iter().map(|b| if *b < 0x20 { 5 } else { usize::from(*b == b'"' || *b == b'\\') }).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::model::{AttemptResult, ExitStatus, OutputTail, ResourceUsage, Task};

    #[test]
    fn size_hints_bound_the_json_closely() {
        let mut shell = JobSpec::new("a \"quoted\" name", Task::Shell { command: "echo \"$X\"\t\\\n".into() });
        shell.env = BTreeMap::from([("X".into(), "1\u{1}".into())]);
        shell.idempotency_key = Some("cli-1234567890abcdef-0".into());
        shell.depends_on = vec![JobId(u64::MAX)];
        shell.constraints = vec!["zone=a".parse().unwrap()];
        let mut secret = shell.clone();
        secret.env.clear();
        secret.secret_env = BTreeMap::from([("TOKEN".into(), "\"s3cr\u{2}t\"".into()), ("K".into(), "".into())]);
        let at = Timestamp(i64::MIN);
        let big = RunId(u64::MAX);
        let commands = vec![
            Command::submit(
                at,
                Arc::new(JobSpec::new("noop", Task::Function { name: "noop".into(), input: "null".into() })),
            ),
            Command::SubmitJob {
                at,
                spec: Arc::new(shell),
                finished_deps: vec![(JobId(u64::MAX), RunState::TimedOut)],
            },
            Command::ScheduleJob { at, spec: Arc::new(secret) },
            Command::AssignAttempt { at, run: big, worker: WorkerId(u64::MAX) },
            Command::StartAttempt { at, run: big, attempt: AttemptId(u64::MAX) },
            Command::FinishAttempt {
                at,
                run: big,
                attempt: AttemptId(u64::MAX),
                result: AttemptResult {
                    status: ExitStatus::Failed { reason: "no such \"function\"".into() },
                    stdout: OutputTail { data: Bytes::from_static(b"text\n\"quoted\""), truncated: u64::MAX },
                    stderr: OutputTail { data: Bytes::from_static(&[0xff, 0, 1]), truncated: u64::MAX },
                    usage: Some(ResourceUsage {
                        cpu_user_us: u64::MAX,
                        cpu_system_us: 0,
                        peak_memory_bytes: u64::MAX,
                        wall_us: 1,
                    }),
                },
            },
            Command::AttemptOutput {
                at,
                run: big,
                attempt: AttemptId(u64::MAX),
                stream: OutputStream::Stderr,
                offset: u64::MAX,
                data: Bytes::from_static(&[0xfe; 100]),
            },
            Command::RegisterWorker {
                at,
                name: "worker \"one\"".into(),
                address: "10.0.0.1:7000".into(),
                labels: BTreeMap::from([("zone".into(), "a".into())]),
                capacity: Resources {
                    cpu_millis: u64::MAX,
                    memory_bytes: u64::MAX,
                    network_mbps: u64::MAX,
                    devices: BTreeMap::from([("gpu".into(), u32::MAX)]),
                },
                capabilities: BTreeSet::from(["shell".into(), "function:echo".into()]),
                running: vec![AttemptId(u64::MAX); 3],
                queue: u32::MAX,
            },
            Command::Prune {
                at,
                runs: vec![(big, RunState::Cancelled); 5],
                jobs: vec![JobId(u64::MAX); 5],
                workflows: vec![WorkflowId(u64::MAX); 5],
                keys_before: Some(at),
            },
            Command::CancelJob { at, job: JobId(u64::MAX) },
            Command::SetDraining { at, worker: WorkerId(u64::MAX), draining: false },
        ];
        for command in commands {
            let real = serde_json::to_string(&command).unwrap().len();
            let hint = command.size_hint();
            assert!(hint >= real, "{hint} < {real}: {command:?}");
            assert!(hint <= real * 2 + 300, "{hint} is far above {real}: {command:?}");
        }
    }

    #[test]
    fn a_spec_with_secret_env_is_written_as_format_3() {
        let plain = JobSpec::new("j", Task::Shell { command: "true".into() });
        let mut secret = plain.clone();
        secret.secret_env.insert("TOKEN".into(), "v".into());
        let at = Timestamp(0);
        assert_eq!(Command::submit(at, Arc::new(plain.clone())).format(), 1);
        let register = |queue| Command::RegisterWorker {
            at,
            name: "w".into(),
            address: String::new(),
            labels: BTreeMap::new(),
            capacity: Resources::default(),
            capabilities: BTreeSet::new(),
            running: Vec::new(),
            queue,
        };
        assert_eq!(register(0).format(), 1);
        assert_eq!(register(2).format(), 4);
        assert_eq!(Command::submit(at, Arc::new(secret.clone())).format(), 3);
        assert_eq!(Command::ScheduleJob { at, spec: Arc::new(plain.clone()) }.format(), 2);
        assert_eq!(Command::ScheduleJob { at, spec: Arc::new(secret.clone()) }.format(), 3);
        let node = |job: JobSpec| crate::model::WorkflowNode { name: "n".into(), job, after: Vec::new() };
        let workflow =
            |job: JobSpec| crate::model::WorkflowSpec { name: "w".into(), nodes: vec![node(job)], schedule: None };
        assert_eq!(Command::SubmitWorkflow { at, spec: Arc::new(workflow(plain)) }.format(), 2);
        assert_eq!(Command::SubmitWorkflow { at, spec: Arc::new(workflow(secret)) }.format(), 3);
    }
}
