//! Workflows: several jobs declared together by name, with edges between them
//! (`test` runs after `build`), each edge with a condition on how its parent
//! ended. A workflow is checked as a whole before anything is stored: names
//! unique, every edge to a node of the workflow, no self-edge, no cycle (the
//! cycle is named), at most a configured number of nodes.
//!
//! The state machine creates a workflow's jobs atomically from a checked
//! definition ([`Workflow`] is what it keeps while any of them is live).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::{JobId, WorkflowId};
use super::job::{JobSpec, SpecError};
use super::run::RunState;
use super::schedule::Schedule;
use super::time::Timestamp;

/// The task of a cron workflow's job: it never runs (it has no runs of its
/// own); each of its fires starts an instance of the workflow.
pub const WORKFLOW_TASK: &str = "archon:workflow";

/// A submitted workflow, in the live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// Its id.
    pub id: WorkflowId,
    /// Its definition.
    pub spec: Arc<WorkflowSpec>,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// The job of each node, in the order of `spec.nodes`.
    pub jobs: Vec<JobId>,
    /// Cancelled by a user.
    #[serde(default)]
    pub cancelled: bool,
    /// The cron job whose fire started it (a cron workflow's instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_by: Option<JobId>,
    /// A node's job ended failed or timed out (a node that never ran because a
    /// parent failed does not count: the parent does).
    #[serde(default)]
    pub failed: bool,
}

impl Workflow {
    /// How it stands: running while any of its jobs is live, then how it ended.
    pub fn state(&self, live: bool) -> WorkflowState {
        match (live, self.cancelled, self.failed) {
            (true, _, _) => WorkflowState::Running,
            (false, true, _) => WorkflowState::Cancelled,
            (false, false, true) => WorkflowState::Failed,
            (false, false, false) => WorkflowState::Succeeded,
        }
    }

    /// The node `job` is, by index into `spec.nodes`.
    pub fn node_of(&self, job: JobId) -> Option<usize> {
        self.jobs.iter().position(|j| *j == job)
    }

    /// Replaces its jobs' secret values by `***`, as the API shows it; the
    /// definition is copied only if it has any.
    pub fn redact_secrets(&mut self) {
        if self.spec.has_secrets() {
            Arc::make_mut(&mut self.spec).redact_secrets();
        }
    }

    /// The condition of the edge from `parent` to `child` (both jobs of it).
    pub fn condition(&self, parent: JobId, child: JobId) -> Option<EdgeCondition> {
        let (p, c) = (self.node_of(parent)?, self.node_of(child)?);
        let parent = &self.spec.nodes[p].name;
        self.spec.nodes[c].after.iter().find(|e| e.parent == *parent).map(|e| e.when)
    }
}

/// How a workflow stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Some of its jobs can still run.
    Running,
    /// Every job ended, none failed or timed out (a branch not taken ends
    /// upstream-failed and does not count).
    Succeeded,
    /// Every job ended and at least one failed or timed out.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl WorkflowState {
    /// Every state.
    pub const ALL: [WorkflowState; 4] =
        [WorkflowState::Running, WorkflowState::Succeeded, WorkflowState::Failed, WorkflowState::Cancelled];

    /// Its name in JSON and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Succeeded => "succeeded",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkflowState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        WorkflowState::ALL
            .into_iter()
            .find(|w| w.as_str() == norm)
            .ok_or_else(|| format!("{s:?} is not a workflow state (use running, succeeded, failed or cancelled)"))
    }
}

/// A workflow whose jobs have all ended, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// The workflow as it ended.
    pub workflow: Workflow,
    /// When its last job ended.
    pub finished_at: Timestamp,
}

impl WorkflowRecord {
    /// Its id.
    pub fn id(&self) -> WorkflowId {
        self.workflow.id
    }

    /// How it ended.
    pub fn state(&self) -> WorkflowState {
        self.workflow.state(false)
    }
}

/// A workflow as submitted: its nodes, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    /// Its name.
    pub name: String,
    /// Its jobs, each with a name unique in the workflow.
    pub nodes: Vec<WorkflowNode>,
    /// A cron schedule: each fire starts one instance of the whole workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Box<Schedule>>,
}

/// One job of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowNode {
    /// Its name in the workflow (what edges refer to).
    pub name: String,
    /// What it runs.
    pub job: JobSpec,
    /// The nodes it waits for, each with the condition under which it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Edge>,
}

/// An edge from a parent node to the node that lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Edge {
    /// The parent's name.
    pub parent: String,
    /// When the child may run, given how the parent ended.
    #[serde(default)]
    pub when: EdgeCondition,
}

/// When a child runs, given how a parent ended. A child whose every edge is
/// met runs; one with an edge that can no longer be met ends as upstream-failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeCondition {
    /// The parent succeeded (the default).
    #[default]
    Success,
    /// The parent failed, timed out or never ran because its own parent
    /// failed (a failure branch).
    Failure,
    /// The parent ended, however.
    Completion,
}

impl EdgeCondition {
    /// Every condition, as spec files name them.
    pub const ALL: [EdgeCondition; 3] = [EdgeCondition::Success, EdgeCondition::Failure, EdgeCondition::Completion];

    /// The name used in spec files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeCondition::Success => "success",
            EdgeCondition::Failure => "failure",
            EdgeCondition::Completion => "completion",
        }
    }

    /// Whether a parent that ended in `state` lets the child run. A cancelled
    /// parent meets only `completion`.
    pub fn admits(self, state: RunState) -> bool {
        match self {
            EdgeCondition::Success => state == RunState::Succeeded,
            EdgeCondition::Failure => {
                matches!(state, RunState::Failed | RunState::TimedOut | RunState::UpstreamFailed)
            }
            EdgeCondition::Completion => state.is_terminal(),
        }
    }
}

impl std::str::FromStr for EdgeCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        EdgeCondition::ALL
            .into_iter()
            .find(|c| c.as_str() == norm)
            .ok_or_else(|| format!("{s:?} is not an edge condition (use success, failure or completion)"))
    }
}

impl WorkflowSpec {
    /// Checks the workflow as a whole and returns its nodes in an order where
    /// every parent comes before its children (indexes into `nodes`). Errors
    /// name the field (`nodes[2].depends_on`) and, for a cycle, the cycle.
    pub fn validate(&self, max_nodes: usize) -> Result<Vec<usize>, SpecError> {
        if self.name.trim().is_empty() {
            return Err(SpecError::new("name", "must not be empty"));
        }
        if self.nodes.is_empty() {
            return Err(SpecError::new("nodes", "a workflow needs at least one job"));
        }
        if self.nodes.len() > max_nodes {
            return Err(SpecError::new(
                "nodes",
                format!("{} jobs is more than max_workflow_nodes ({max_nodes}); split the workflow", self.nodes.len()),
            ));
        }
        let mut index = std::collections::HashMap::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.trim().is_empty() {
                return Err(SpecError::new(format!("nodes[{i}].name"), "must not be empty (edges refer to it)"));
            }
            if let Some(first) = index.insert(node.name.as_str(), i) {
                return Err(SpecError::new(
                    format!("nodes[{i}].name"),
                    format!("{:?} is also the name of nodes[{first}]; names must be unique", node.name),
                ));
            }
            if node.job.schedule.is_some() || !node.job.depends_on.is_empty() {
                return Err(SpecError::new(
                    format!("nodes[{i}]"),
                    "a workflow's job takes its schedule from the workflow and its dependencies from depends_on by \
                     name",
                ));
            }
            node.job.validate().map_err(|e| SpecError::new(format!("nodes[{i}].{}", e.field), e.message))?;
        }
        let mut parents: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let mut mine = Vec::with_capacity(node.after.len());
            for edge in &node.after {
                let Some(&p) = index.get(edge.parent.as_str()) else {
                    return Err(SpecError::new(
                        format!("nodes[{i}].depends_on"),
                        format!("{:?} is not a job of this workflow (its jobs: {})", edge.parent, self.names()),
                    ));
                };
                if p == i {
                    return Err(SpecError::new(
                        format!("nodes[{i}].depends_on"),
                        format!("{:?} depends on itself", node.name),
                    ));
                }
                if mine.contains(&p) {
                    return Err(SpecError::new(
                        format!("nodes[{i}].depends_on"),
                        format!("{:?} is listed twice", edge.parent),
                    ));
                }
                mine.push(p);
            }
            parents.push(mine);
        }
        self.order(&parents)
    }

    /// Whether any of its jobs has `secret_env`.
    pub fn has_secrets(&self) -> bool {
        self.nodes.iter().any(|n| !n.job.secret_env.is_empty())
    }

    /// Replaces every job's secret values by `***` (see [`JobSpec::redact_secrets`]).
    pub fn redact_secrets(&mut self) {
        for node in &mut self.nodes {
            node.job.redact_secrets();
        }
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.nodes.iter().take(20).map(|n| n.name.as_str()).collect();
        let more = if self.nodes.len() > 20 { ", …" } else { "" };
        format!("{}{more}", names.join(", "))
    }

    /// A topological order (Kahn's algorithm, ties in written order), or the
    /// first cycle found, named.
    fn order(&self, parents: &[Vec<usize>]) -> Result<Vec<usize>, SpecError> {
        let n = parents.len();
        let mut children = vec![Vec::new(); n];
        let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
        for (child, ps) in parents.iter().enumerate() {
            for &p in ps {
                children[p].push(child);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &c in &children[i] {
                waiting[c] -= 1;
                if waiting[c] == 0 {
                    ready.insert(c);
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        // Every node left waits on another node left: follow parents until one repeats.
        let left: Vec<bool> = waiting.iter().map(|w| *w > 0).collect();
        let start = (0..n).find(|i| left[*i]).unwrap_or(0);
        let mut path = vec![start];
        let mut at = start;
        while let Some(&p) = parents[at].iter().find(|p| left[**p]) {
            if let Some(pos) = path.iter().position(|x| *x == p) {
                // path[k + 1] is a parent of path[k], and p (= path[pos]) of the
                // last: written parent first, p → last → … → path[pos].
                let cycle: Vec<&str> = std::iter::once(p)
                    .chain(path[pos..].iter().rev().copied())
                    .map(|i| self.nodes[i].name.as_str())
                    .collect();
                return Err(SpecError::new("depends_on", format!("the jobs form a cycle: {}", cycle.join(" → "))));
            }
            path.push(p);
            at = p;
        }
        Err(SpecError::new("depends_on", "the jobs form a cycle"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;

    fn node(name: &str, after: &[&str]) -> WorkflowNode {
        WorkflowNode {
            name: name.into(),
            job: JobSpec::new(name, Task::Shell { command: "true".into() }),
            after: after.iter().map(|p| Edge { parent: (*p).into(), when: EdgeCondition::Success }).collect(),
        }
    }

    fn workflow(nodes: Vec<WorkflowNode>) -> WorkflowSpec {
        WorkflowSpec { name: "release".into(), nodes, schedule: None }
    }

    fn error(w: &WorkflowSpec) -> String {
        w.validate(1000).unwrap_err().to_string()
    }

    #[test]
    fn a_dag_orders_parents_before_children() {
        let w = workflow(vec![node("deploy", &["test", "build"]), node("test", &["build"]), node("build", &[])]);
        assert_eq!(w.validate(1000).unwrap(), [2, 1, 0]);
        let fan = workflow((0..10).map(|i| node(&format!("n{i}"), if i == 0 { &[] } else { &["n0"] })).collect());
        assert_eq!(fan.validate(1000).unwrap(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn cycles_are_refused_with_the_cycle_named() {
        let w = workflow(vec![node("build", &["deploy"]), node("test", &["build"]), node("deploy", &["test"])]);
        let e = error(&w);
        assert!(e.starts_with("depends_on: the jobs form a cycle: "), "{e}");
        for name in ["build", "test", "deploy"] {
            assert!(e.contains(name), "{e}");
        }
        // Each step of the named cycle is an edge of the workflow.
        let named: Vec<&str> = e.rsplit(": ").next().unwrap().split(" → ").collect();
        assert_eq!(named.first(), named.last());
        for pair in named.windows(2) {
            let child = w.nodes.iter().find(|n| n.name == pair[1]).unwrap();
            assert!(child.after.iter().any(|a| a.parent == pair[0]), "{pair:?} is not an edge: {e}");
        }
    }

    #[test]
    fn unknown_names_self_edges_duplicates_and_size_are_refused_naming_the_field() {
        let e = error(&workflow(vec![node("build", &[]), node("test", &["biuld"])]));
        assert_eq!(e, "nodes[1].depends_on: \"biuld\" is not a job of this workflow (its jobs: build, test)");
        let e = error(&workflow(vec![node("build", &["build"])]));
        assert_eq!(e, "nodes[0].depends_on: \"build\" depends on itself");
        let e = error(&workflow(vec![node("build", &[]), node("build", &[])]));
        assert_eq!(e, "nodes[1].name: \"build\" is also the name of nodes[0]; names must be unique");
        let e = error(&workflow(vec![node("build", &[]), node("test", &["build", "build"])]));
        assert_eq!(e, "nodes[1].depends_on: \"build\" is listed twice");
        let big = workflow((0..1001).map(|i| node(&format!("n{i}"), &[])).collect());
        assert_eq!(error(&big), "nodes: 1001 jobs is more than max_workflow_nodes (1000); split the workflow");
        assert_eq!(error(&workflow(vec![])), "nodes: a workflow needs at least one job");
    }

    #[test]
    fn conditions_admit_the_parent_outcomes_they_name() {
        use RunState::*;
        assert!(EdgeCondition::Success.admits(Succeeded) && !EdgeCondition::Success.admits(Failed));
        assert!(EdgeCondition::Failure.admits(Failed) && EdgeCondition::Failure.admits(TimedOut));
        assert!(!EdgeCondition::Failure.admits(Succeeded) && !EdgeCondition::Failure.admits(Cancelled));
        assert!([Succeeded, Failed, Cancelled, TimedOut].into_iter().all(|s| EdgeCondition::Completion.admits(s)));
        assert_eq!("FAILURE".parse::<EdgeCondition>(), Ok(EdgeCondition::Failure));
        assert!("sometimes".parse::<EdgeCondition>().unwrap_err().contains("success, failure or completion"));
    }
}
