//! What the REST API (and the CLI's `--output json`) answers: the client API's
//! types as JSON a person can read and a program can round-trip. The one thing
//! to know: these are not the storage encoding. Ids print as the CLI takes them
//! (`job-12`, `run-340`), instants as RFC 3339 (`2026-12-02T10:00:00.000Z`),
//! durations as `30s` / `1h 30m`, CPU as `500m`; the stored model keeps numbers.

mod job;
mod run;
mod status;
mod timeline;
mod token;
mod workflow;

pub use job::{
    ConstraintView, JobDetailView, JobPage, JobSummaryView, JobView, ResourcesView, RetryView, ScheduleFireView,
    ScheduleInfoView, ScheduleStateView, ScheduleView, SubmitItemView, SubmittedView, TaskView,
};
pub use run::{AttemptView, OutputView, RunDetailView, RunPage, RunSummaryView, RunView, UsageView};
pub use status::{WorkerView, WorkersView};
pub use timeline::{SampleView, TimelineView, WorkerSeriesView};
pub use token::{IssuedTokenView, TokenView, TokensView};
pub use workflow::{EdgeView, NodeView, SubmittedWorkflowView, WorkflowDetailView, WorkflowPage, WorkflowSummaryView};

use std::time::Duration;

use archon_core::model::Timestamp;
use archon_core::model::units::format_duration;

/// An instant as RFC 3339 with milliseconds, in UTC.
pub fn time(t: Timestamp) -> String {
    let ms = u64::try_from(t.0).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// An optional instant.
pub fn time_opt(t: Option<Timestamp>) -> Option<String> {
    t.map(time)
}

/// A duration as the spec format writes it (`30s`, `1h 30m`).
pub fn duration(d: Duration) -> String {
    format_duration(d)
}

/// Ids as their printed strings.
pub fn ids<T: std::fmt::Display>(ids: &[T]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}
