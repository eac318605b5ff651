//! Workflows: definitions, the live record and its detail.

use std::sync::Arc;

use archon_core::Error;
use archon_core::api::{Page, SubmittedWorkflow, WorkflowDetail, WorkflowQuery, WorkflowSummary};
use archon_core::model::{
    Edge, EdgeCondition, JobId, Run, Workflow, WorkflowId, WorkflowNode, WorkflowSpec, WorkflowState,
};

use super::{
    ProtoEnum, each, enum_optional, enum_or_default, enum_required, instant, message, optional, proto_enum, timestamp,
};
use crate::proto;

proto_enum!(EdgeCondition => EdgeCondition { Success, Failure, Completion });
proto_enum!(WorkflowState => WorkflowState { Running, Succeeded, Failed, Cancelled });

impl From<WorkflowSpec> for proto::WorkflowSpec {
    fn from(s: WorkflowSpec) -> Self {
        proto::WorkflowSpec {
            name: s.name,
            nodes: s
                .nodes
                .into_iter()
                .map(|n| proto::WorkflowNode {
                    name: n.name,
                    job: Some(n.job.into()),
                    after: n
                        .after
                        .into_iter()
                        .map(|e| proto::WorkflowEdge { parent: e.parent, when: e.when.to_wire() })
                        .collect(),
                })
                .collect(),
            schedule: s.schedule.map(|b| (*b).into()),
        }
    }
}

impl TryFrom<proto::WorkflowNode> for WorkflowNode {
    type Error = Error;

    fn try_from(n: proto::WorkflowNode) -> Result<Self, Error> {
        let after = n
            .after
            .into_iter()
            .map(|e| Ok(Edge { parent: e.parent, when: enum_or_default(e.when, "after.when")? }))
            .collect::<Result<_, Error>>()?;
        Ok(WorkflowNode { name: n.name, job: message(n.job, "job")?, after })
    }
}

impl TryFrom<proto::WorkflowSpec> for WorkflowSpec {
    type Error = Error;

    fn try_from(s: proto::WorkflowSpec) -> Result<Self, Error> {
        Ok(WorkflowSpec {
            name: s.name,
            nodes: each(s.nodes, "nodes")?,
            schedule: optional(s.schedule, "schedule")?.map(Box::new),
        })
    }
}

impl From<Workflow> for proto::Workflow {
    fn from(w: Workflow) -> Self {
        proto::Workflow {
            id: w.id.get(),
            spec: Some((*w.spec).clone().into()),
            created_at_ms: instant(w.created_at),
            jobs: w.jobs.into_iter().map(JobId::get).collect(),
            cancelled: w.cancelled,
            failed: w.failed,
            fired_by: w.fired_by.map(JobId::get),
        }
    }
}

impl TryFrom<proto::Workflow> for Workflow {
    type Error = Error;

    fn try_from(w: proto::Workflow) -> Result<Self, Error> {
        Ok(Workflow {
            id: WorkflowId(w.id),
            spec: Arc::new(message(w.spec, "spec")?),
            created_at: timestamp(w.created_at_ms),
            jobs: w.jobs.into_iter().map(JobId).collect(),
            cancelled: w.cancelled,
            fired_by: w.fired_by.map(JobId),
            failed: w.failed,
        })
    }
}

impl From<WorkflowDetail> for proto::WorkflowDetail {
    fn from(d: WorkflowDetail) -> Self {
        proto::WorkflowDetail {
            workflow: Some(d.workflow.into()),
            runs: d.runs.into_iter().map(|r| proto::NodeRun { run: r.map(Into::into) }).collect(),
            state: d.state.to_wire(),
            finished_at_ms: d.finished_at.map(instant),
        }
    }
}

impl TryFrom<proto::WorkflowDetail> for WorkflowDetail {
    type Error = Error;

    fn try_from(d: proto::WorkflowDetail) -> Result<Self, Error> {
        let runs =
            d.runs.into_iter().map(|r| optional::<_, Run>(r.run, "runs.run")).collect::<Result<Vec<_>, Error>>()?;
        Ok(WorkflowDetail {
            workflow: message(d.workflow, "workflow")?,
            state: enum_required(d.state, "state")?,
            finished_at: d.finished_at_ms.map(timestamp),
            runs,
        })
    }
}

impl From<WorkflowQuery> for proto::ListWorkflowsRequest {
    fn from(q: WorkflowQuery) -> Self {
        proto::ListWorkflowsRequest {
            name: q.name,
            state: q.state.map_or(0, ProtoEnum::to_wire),
            before: q.before.map(WorkflowId::get),
            limit: q.limit,
        }
    }
}

impl TryFrom<proto::ListWorkflowsRequest> for WorkflowQuery {
    type Error = Error;

    fn try_from(q: proto::ListWorkflowsRequest) -> Result<Self, Error> {
        Ok(WorkflowQuery {
            name: q.name,
            state: enum_optional(q.state, "state")?,
            before: q.before.map(WorkflowId),
            limit: q.limit,
        })
    }
}

impl From<WorkflowSummary> for proto::WorkflowSummary {
    fn from(w: WorkflowSummary) -> Self {
        proto::WorkflowSummary {
            id: w.id.get(),
            name: w.name,
            state: w.state.to_wire(),
            nodes: w.nodes,
            created_at_ms: instant(w.created_at),
            finished_at_ms: w.finished_at.map(instant),
        }
    }
}

impl TryFrom<proto::WorkflowSummary> for WorkflowSummary {
    type Error = Error;

    fn try_from(w: proto::WorkflowSummary) -> Result<Self, Error> {
        Ok(WorkflowSummary {
            id: WorkflowId(w.id),
            name: w.name,
            state: enum_required(w.state, "state")?,
            nodes: w.nodes,
            created_at: timestamp(w.created_at_ms),
            finished_at: w.finished_at_ms.map(timestamp),
        })
    }
}

impl From<Page<WorkflowSummary, WorkflowId>> for proto::ListWorkflowsResponse {
    fn from(p: Page<WorkflowSummary, WorkflowId>) -> Self {
        proto::ListWorkflowsResponse {
            items: p.items.into_iter().map(Into::into).collect(),
            next: p.next.map(WorkflowId::get),
        }
    }
}

impl TryFrom<proto::ListWorkflowsResponse> for Page<WorkflowSummary, WorkflowId> {
    type Error = Error;

    fn try_from(p: proto::ListWorkflowsResponse) -> Result<Self, Error> {
        Ok(Page { items: each(p.items, "items")?, next: p.next.map(WorkflowId) })
    }
}

impl From<SubmittedWorkflow> for proto::SubmitWorkflowResponse {
    fn from(s: SubmittedWorkflow) -> Self {
        proto::SubmitWorkflowResponse {
            workflow: s.workflow.map(WorkflowId::get),
            jobs: s.jobs.into_iter().map(JobId::get).collect(),
            schedule: s.schedule.map(JobId::get),
        }
    }
}

impl From<proto::SubmitWorkflowResponse> for SubmittedWorkflow {
    fn from(s: proto::SubmitWorkflowResponse) -> Self {
        SubmittedWorkflow {
            workflow: s.workflow.map(WorkflowId),
            jobs: s.jobs.into_iter().map(JobId).collect(),
            schedule: s.schedule.map(JobId),
        }
    }
}
