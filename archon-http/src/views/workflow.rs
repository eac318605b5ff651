//! Workflows as JSON.

use archon_core::api::{Page, SubmittedWorkflow, WorkflowDetail, WorkflowSummary};
use archon_core::model::{EdgeCondition, WorkflowId, WorkflowState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ids, time, time_opt};
use crate::views::{RunView, ScheduleView};

/// What a workflow submit gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmittedWorkflowView {
    /// The workflow (none for a cron workflow: each fire starts one).
    pub workflow: Option<String>,
    /// The job of each node, in the order of the nodes.
    pub jobs: Vec<String>,
    /// A cron workflow's job, whose fires start instances.
    pub schedule: Option<String>,
}

impl From<&SubmittedWorkflow> for SubmittedWorkflowView {
    fn from(s: &SubmittedWorkflow) -> Self {
        SubmittedWorkflowView {
            workflow: s.workflow.map(|w| w.to_string()),
            jobs: ids(&s.jobs),
            schedule: s.schedule.map(|j| j.to_string()),
        }
    }
}

/// An edge into a node: the parent's name and when it lets the child run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    /// The parent node's name.
    pub job: String,
    /// `success`, `failure` or `completion`.
    pub when: EdgeCondition,
}

/// A node of a workflow with its job and latest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its name in the workflow.
    pub name: String,
    /// Its job (none for a node not made into a job).
    pub job: Option<String>,
    /// Its parents.
    pub depends_on: Vec<EdgeView>,
    /// Its latest run (none before it runs, or once removed by retention).
    pub run: Option<RunView>,
}

/// A workflow, live or finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowDetailView {
    /// Its id (`wf-3`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// How it stands.
    pub state: WorkflowState,
    /// When it was submitted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its last job ended.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Cancelled by a user.
    pub cancelled: bool,
    /// The cron job whose fire started it.
    pub fired_by: Option<String>,
    /// Its schedule (a cron workflow's instance carries its workflow's).
    pub schedule: Option<ScheduleView>,
    /// Its nodes in the order they were given.
    pub nodes: Vec<NodeView>,
}

impl From<&WorkflowDetail> for WorkflowDetailView {
    fn from(d: &WorkflowDetail) -> Self {
        let w = &d.workflow;
        let nodes = w
            .spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| NodeView {
                name: node.name.clone(),
                job: w.jobs.get(i).map(|j| j.to_string()),
                depends_on: node.after.iter().map(|e| EdgeView { job: e.parent.clone(), when: e.when }).collect(),
                run: d.runs.get(i).and_then(Option::as_ref).map(RunView::from),
            })
            .collect();
        WorkflowDetailView {
            id: w.id.to_string(),
            name: w.spec.name.clone(),
            state: d.state,
            created_at: time(w.created_at),
            finished_at: time_opt(d.finished_at),
            cancelled: w.cancelled,
            fired_by: w.fired_by.map(|j| j.to_string()),
            schedule: w.spec.schedule.as_deref().map(ScheduleView::from),
            nodes,
        }
    }
}

/// A workflow in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSummaryView {
    /// The workflow.
    pub id: String,
    /// Its name.
    pub name: String,
    /// How it stands.
    pub state: WorkflowState,
    /// How many jobs it has.
    pub nodes: u32,
    /// When it was submitted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its last job ended.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

impl From<&WorkflowSummary> for WorkflowSummaryView {
    fn from(w: &WorkflowSummary) -> Self {
        WorkflowSummaryView {
            id: w.id.to_string(),
            name: w.name.clone(),
            state: w.state,
            nodes: w.nodes,
            created_at: time(w.created_at),
            finished_at: time_opt(w.finished_at),
        }
    }
}

/// A page of workflows, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowPage {
    /// The workflows.
    pub items: Vec<WorkflowSummaryView>,
    /// Pass as `before` for the next page; none on the last.
    pub next: Option<String>,
}

impl From<&Page<WorkflowSummary, WorkflowId>> for WorkflowPage {
    fn from(p: &Page<WorkflowSummary, WorkflowId>) -> Self {
        WorkflowPage {
            items: p.items.iter().map(WorkflowSummaryView::from).collect(),
            next: p.next.map(|n| n.to_string()),
        }
    }
}
