//! The domain model: jobs, runs, attempts, workers and resources. Plain data with
//! serde; every change to it goes through [`crate::state::Command`].

mod fit;
mod history;
mod ids;
mod job;
mod resources;
mod run;
mod schedule;
mod secret;
mod task;
mod time;
pub mod units;
mod usage;
mod worker;
mod workflow;

pub use fit::Misfit;
pub use history::{JobRecord, RunRecord};
pub use ids::{AttemptId, JobId, ParseIdError, RunId, WorkerId, WorkflowId};
pub use job::{Constraint, ConstraintOp, Job, JobSpec, OnDisconnect, PlacementPolicy, RetryPolicy, SpecError};
pub use resources::Resources;
pub(crate) use run::text_or_bytes as output_bytes;
pub(crate) use run::text_or_bytes::json_len as output_json_len;
pub use run::{Attempt, AttemptResult, AttemptState, ExitStatus, OutputChunk, OutputStream, OutputTail, Run, RunState};
pub use schedule::{
    DEFAULT_CATCH_UP, FireLog, FireSource, MAX_BUFFERED, MissedFires, OverlapPolicy, Paused, RECENT_FIRES, Schedule,
    ScheduleState,
};
pub use secret::Secret;
pub use task::{DockerTask, PullPolicy, Task, TaskKind, custom_capability, function_capability};
pub use time::Timestamp;
pub use usage::ResourceUsage;
pub use worker::{Worker, WorkerState};
pub use workflow::{
    Edge, EdgeCondition, WORKFLOW_TASK, Workflow, WorkflowNode, WorkflowRecord, WorkflowSpec, WorkflowState,
};
