//! Jobs, their specs, submit answers and schedules, as JSON.

use std::collections::BTreeMap;

use archon_core::api::{JobDetail, JobSummary, Page, ScheduleFire, ScheduleInfo, Submitted};
use archon_core::model::units::{format_bytes, format_cpu};
use archon_core::model::{
    Constraint, ConstraintOp, Job, JobId, OnDisconnect, OverlapPolicy, PlacementPolicy, PullPolicy, Resources,
    RetryPolicy, RunState, Schedule, ScheduleState, Secret, Task,
};
use archon_core::state::FireResult;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{duration, ids, time, time_opt};
use crate::error::Problem;
use crate::views::RunView;

/// What a submit of one job gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmittedView {
    /// The job (`job-12`).
    pub job: String,
    /// Its first run (none for a cron job or one waiting on its dependencies).
    pub run: Option<String>,
    /// True when the idempotency key matched an earlier job: nothing new was made.
    pub duplicate: bool,
}

impl From<&Submitted> for SubmittedView {
    fn from(s: &Submitted) -> Self {
        SubmittedView { job: s.job.to_string(), run: s.run.map(|r| r.to_string()), duplicate: s.duplicate }
    }
}

/// One job of a batch: what it gave, or why it was refused (nothing stored for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SubmitItemView {
    /// Accepted.
    Submitted(SubmittedView),
    /// Refused.
    Refused {
        /// Why, naming the field.
        error: Problem,
    },
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskView {
    /// A command line run by `sh -c`.
    Shell {
        /// The command line.
        command: String,
    },
    /// A script run by an interpreter.
    Script {
        /// The interpreter.
        interpreter: String,
        /// The script's text.
        body: String,
    },
    /// A program and its arguments, no shell.
    Process {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// A container.
    Docker {
        /// The image.
        image: String,
        /// The command (empty: the image's).
        command: Vec<String>,
        /// An entrypoint override.
        entrypoint: Option<Vec<String>>,
        /// The network mode.
        network: String,
        /// The user inside the container.
        user: Option<String>,
        /// Bind mounts.
        mounts: Vec<String>,
        /// When the image is pulled.
        pull: PullPolicy,
    },
    /// A function registered on the workers.
    Function {
        /// Its name.
        name: String,
        /// Its input.
        input: serde_json::Value,
    },
    /// A task of a kind of the embedder's own, run by the executor registered for it.
    Custom {
        /// The executor's name.
        executor: String,
        /// Its input.
        input: serde_json::Value,
    },
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        match t {
            Task::Shell { command } => TaskView::Shell { command: command.clone() },
            Task::Script { interpreter, body } => {
                TaskView::Script { interpreter: interpreter.clone(), body: body.clone() }
            }
            Task::Process { argv } => TaskView::Process { argv: argv.clone() },
            Task::Docker(d) => TaskView::Docker {
                image: d.image.clone(),
                command: d.command.clone(),
                entrypoint: d.entrypoint.clone(),
                network: d.network.clone(),
                user: d.user.clone(),
                mounts: d.mounts.clone(),
                pull: d.pull,
            },
            Task::Function { name, input } => TaskView::Function { name: name.clone(), input: json_or_text(input) },
            Task::Custom { executor, input } => {
                TaskView::Custom { executor: executor.clone(), input: json_or_text(input) }
            }
        }
    }
}

/// `input` as JSON, or as a JSON string when it is not JSON.
fn json_or_text(input: &str) -> serde_json::Value {
    serde_json::from_str(input).unwrap_or_else(|_| serde_json::Value::String(input.to_owned()))
}

/// An amount of resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourcesView {
    /// CPU (`500m`, `2`).
    pub cpu: String,
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory (`256MiB`).
    pub memory: String,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Network bandwidth, Mbit/s.
    pub bandwidth_mbps: u64,
    /// Devices by kind.
    pub devices: BTreeMap<String, u32>,
}

impl From<&Resources> for ResourcesView {
    fn from(r: &Resources) -> Self {
        ResourcesView {
            cpu: format_cpu(r.cpu_millis),
            cpu_millis: r.cpu_millis,
            memory: format_bytes(r.memory_bytes),
            memory_bytes: r.memory_bytes,
            bandwidth_mbps: r.network_mbps,
            devices: r.devices.clone(),
        }
    }
}

/// A constraint on workers' labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConstraintView {
    /// The label.
    pub label: String,
    /// How it compares.
    pub op: ConstraintOp,
    /// The value compared against.
    pub value: String,
}

impl From<&Constraint> for ConstraintView {
    fn from(c: &Constraint) -> Self {
        ConstraintView { label: c.label.clone(), op: c.op, value: c.value.clone() }
    }
}

/// Retries after a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryView {
    /// How many retries.
    pub max_retries: u32,
    /// The first delay.
    pub backoff: String,
    /// The largest delay.
    pub backoff_max: String,
    /// Whether delays are jittered.
    pub jitter: bool,
}

impl From<&RetryPolicy> for RetryView {
    fn from(r: &RetryPolicy) -> Self {
        RetryView {
            max_retries: r.max_retries,
            backoff: duration(r.backoff_base),
            backoff_max: duration(r.backoff_max),
            jitter: r.jitter,
        }
    }
}

/// A cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// The cron expression.
    pub cron: String,
    /// The IANA zone it is read in.
    pub timezone: String,
    /// What a fire does while an earlier run goes.
    pub overlap: OverlapPolicy,
    /// How far back missed fires run after downtime.
    pub catch_up: String,
    /// How late a fire may start.
    pub jitter: Option<String>,
}

impl From<&Schedule> for ScheduleView {
    fn from(s: &Schedule) -> Self {
        ScheduleView {
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            overlap: s.overlap,
            catch_up: duration(s.catch_up_window()),
            jitter: s.jitter.map(duration),
        }
    }
}

/// A job: its definition as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Its id (`job-12`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it runs.
    pub task: TaskView,
    /// When it was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Cancelled: no new runs.
    pub cancelled: bool,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: their names, each value shown as `***`.
    pub secret_env: BTreeMap<String, String>,
    /// Working directory on the worker.
    pub workdir: Option<String>,
    /// Reserved on the worker while an attempt runs.
    pub resources: ResourcesView,
    /// Worker label constraints.
    pub constraints: Vec<ConstraintView>,
    /// Higher runs first.
    pub priority: i32,
    /// An attempt's time limit.
    pub timeout: Option<String>,
    /// Retries after a failure.
    pub retry: RetryView,
    /// Its cron schedule.
    pub schedule: Option<ScheduleView>,
    /// Jobs whose runs must succeed first.
    pub depends_on: Vec<String>,
    /// The idempotency key it was submitted with.
    pub idempotency_key: Option<String>,
    /// Placement policy (none: the cluster's).
    pub placement: Option<PlacementPolicy>,
    /// How long its finished runs are kept (none: the cluster's).
    pub retention: Option<String>,
    /// At most this many finished runs kept.
    pub keep_last: Option<u32>,
    /// Output kept per stream of an attempt, bytes (none: the manager's).
    pub output_limit: Option<u64>,
    /// What its worker does with a running attempt when its lease lapses:
    /// `kill` (default) or `keep` (the run may then execute twice at once).
    pub on_disconnect: OnDisconnect,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        let s = &j.spec;
        JobView {
            id: j.id.to_string(),
            name: s.name.clone(),
            task: TaskView::from(&s.task),
            created_at: time(j.created_at),
            cancelled: j.cancelled,
            env: s.env.clone(),
            // `***` whatever the Api gave: a view never shows a secret value.
            secret_env: s.secret_env.keys().map(|k| (k.clone(), Secret::REDACTED.to_owned())).collect(),
            workdir: s.working_dir.clone(),
            resources: ResourcesView::from(&s.resources),
            constraints: s.constraints.iter().map(ConstraintView::from).collect(),
            priority: s.priority,
            timeout: s.timeout.map(duration),
            retry: RetryView::from(&s.retry),
            schedule: s.schedule.as_deref().map(ScheduleView::from),
            depends_on: ids(&s.depends_on),
            idempotency_key: s.idempotency_key.clone(),
            placement: s.placement,
            retention: s.retention.map(duration),
            keep_last: s.keep_last,
            output_limit: s.output_limit,
            on_disconnect: s.on_disconnect,
        }
    }
}

/// Where a cron job's schedule stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleStateView {
    /// Fires up to this instant have been decided.
    #[schema(format = DateTime)]
    pub cursor: String,
    /// Paused since this instant (none: firing).
    #[schema(format = DateTime)]
    pub paused_at: Option<String>,
    /// Why it was paused.
    pub pause_note: Option<String>,
    /// Fires waiting for the running one to end.
    pub buffered: Vec<String>,
    /// Runs its fires started that are still going.
    pub active: Vec<String>,
    /// Fires that started a run.
    pub fired: u64,
    /// Fires skipped by the overlap policy.
    pub skipped: u64,
    /// Fires missed (downtime past the catch-up window).
    pub missed: u64,
    /// The latest fires that started a run.
    pub recent_fires: Vec<String>,
}

impl From<&ScheduleState> for ScheduleStateView {
    fn from(s: &ScheduleState) -> Self {
        ScheduleStateView {
            cursor: time(s.cursor),
            paused_at: s.paused.as_ref().map(|p| time(p.at)),
            pause_note: s.paused.as_ref().and_then(|p| p.note.clone()),
            buffered: s.buffered.iter().copied().map(time).collect(),
            active: ids(&s.active),
            fired: s.fired.count,
            skipped: s.skipped.count,
            missed: s.missed.count,
            recent_fires: s.fired.recent.iter().copied().map(time).collect(),
        }
    }
}

/// A cron job's schedule with its state and next fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleInfoView {
    /// The job.
    pub job: String,
    /// The schedule as written.
    pub schedule: Option<ScheduleView>,
    /// Where it stands.
    pub state: ScheduleStateView,
    /// Its next fires (none while paused or once cancelled).
    pub next: Vec<String>,
}

impl ScheduleInfoView {
    /// The view of `job`'s schedule `info`.
    pub fn new(job: &Job, info: &ScheduleInfo) -> Self {
        ScheduleInfoView {
            job: job.id.to_string(),
            schedule: job.spec.schedule.as_deref().map(ScheduleView::from),
            state: ScheduleStateView::from(&info.state),
            next: info.next.iter().copied().map(time).collect(),
        }
    }
}

/// A job with its runs (a cron job's newest 100) and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobDetailView {
    /// The job.
    pub job: JobView,
    /// Its runs, oldest first.
    pub runs: Vec<RunView>,
    /// A cron job's schedule.
    pub schedule: Option<ScheduleInfoView>,
}

impl From<&JobDetail> for JobDetailView {
    fn from(d: &JobDetail) -> Self {
        JobDetailView {
            job: JobView::from(&d.job),
            runs: d.runs.iter().map(RunView::from).collect(),
            schedule: d.schedule.as_ref().map(|s| ScheduleInfoView::new(&d.job, s)),
        }
    }
}

/// A job in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSummaryView {
    /// The job.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its task kind (`shell`, `docker`, … `workflow` for a cron workflow).
    pub kind: String,
    /// What it runs, in one line.
    pub task: String,
    /// When it was submitted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// How many runs it has.
    pub runs: u32,
    /// Its latest run's state.
    pub last_state: Option<RunState>,
    /// A cron job's next fire.
    #[schema(format = DateTime)]
    pub next_fire: Option<String>,
    /// A cron job whose schedule is paused.
    pub paused: bool,
}

impl From<&JobSummary> for JobSummaryView {
    fn from(j: &JobSummary) -> Self {
        JobSummaryView {
            id: j.id.to_string(),
            name: j.name.clone(),
            kind: j.kind.clone(),
            task: j.task.clone(),
            created_at: time(j.created_at),
            runs: j.runs,
            last_state: j.last_state,
            next_fire: time_opt(j.next_fire),
            paused: j.paused,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub items: Vec<JobSummaryView>,
    /// Pass as `before` for the next page; none on the last.
    pub next: Option<String>,
}

impl From<&Page<JobSummary, JobId>> for JobPage {
    fn from(p: &Page<JobSummary, JobId>) -> Self {
        JobPage { items: p.items.iter().map(JobSummaryView::from).collect(), next: p.next.map(|n| n.to_string()) }
    }
}

/// One fire an operator's action made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleFireView {
    /// The fire's instant.
    #[schema(format = DateTime)]
    pub instant: String,
    /// `started`, `buffered` or `skipped`.
    pub result: String,
    /// The run it started.
    pub run: Option<String>,
}

impl From<&ScheduleFire> for ScheduleFireView {
    fn from(f: &ScheduleFire) -> Self {
        let (result, run) = match f.result {
            FireResult::Started(run) => ("started", Some(run.to_string())),
            FireResult::Buffered => ("buffered", None),
            FireResult::Skipped => ("skipped", None),
        };
        ScheduleFireView { instant: time(f.instant), result: result.to_owned(), run }
    }
}
