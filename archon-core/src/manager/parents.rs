//! Parent outputs: a workflow node reads how its parents ended and what they
//! printed. The leader attaches them to the node's assignment — never to the
//! log — as one JSON document keyed by parent name:
//!
//! ```json
//! { "build": { "job": 3, "run": 3, "state": "succeeded", "exit_code": 0,
//!              "output": {"artifact": "app-1.2.tar"}, "truncated": false } }
//! ```
//!
//! `output` is the parent's kept stdout (its last attempt's): parsed when it is
//! JSON, else the text. The whole document is capped at [`PARENTS_LIMIT`]
//! bytes: a parent whose output does not fit is listed with `output: null` and
//! `truncated: true` (its output stays readable with `archon logs`); past the
//! cap, further parents are left out and counted under `"…omitted"` (a fan-in
//! of thousands).
//!
//! A function or custom-kind job gets `{"input": <its own input>, "parents": <document>}` as
//! its input; a shell, script, process or Docker job gets the document in the
//! environment variable [`PARENTS_ENV`].

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Shared;
use crate::model::{ExitStatus, JobId, JobRecord, JobSpec, RunId, RunRecord, Task};
use crate::state::ClusterState;
use crate::transport::Assignment;

/// The environment variable holding the parents document.
pub const PARENTS_ENV: &str = "ARCHON_PARENTS_JSON";

/// The most bytes of parent outputs a node gets: below Linux's 128 KiB cap on
/// one environment string, so the document always fits the variable.
pub const PARENTS_LIMIT: usize = 96 << 10;

/// The parents of a node about to run, by name, in the order of its edges.
pub(crate) type Parents = Vec<(String, JobId)>;

/// Reads the parents' results and puts the document into `assignment`'s spec.
/// The records come from the history in two batched reads (jobs, then runs)
/// and one output read per parent that fits. A parent the history no longer
/// holds is listed with `state: null`; parents that do not fit the cap at all
/// are left out and counted in the document's `"…omitted"` entry.
pub(crate) async fn attach(shared: &Shared, assignment: &mut Assignment, parents: &Parents) {
    let doc = document(shared, parents).await;
    let mut spec = JobSpec::clone(&assignment.spec);
    match &mut spec.task {
        Task::Function { input, .. } | Task::Custom { input, .. } => {
            let own: Value = serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.clone()));
            *input = json!({ "input": own, "parents": doc }).to_string();
        }
        _ => {
            spec.env.insert(PARENTS_ENV.to_owned(), doc.to_string());
        }
    }
    assignment.spec = Arc::new(spec);
}

/// The parents document, at most [`PARENTS_LIMIT`] bytes of JSON.
async fn document(shared: &Shared, parents: &Parents) -> Value {
    let history = &*shared.history;
    let ids: Vec<JobId> = parents.iter().map(|(_, j)| *j).collect();
    let jobs: HashMap<JobId, JobRecord> =
        history.jobs(&ids).await.unwrap_or_default().into_iter().map(|r| (r.id(), r)).collect();
    let last_runs: Vec<RunId> = ids.iter().filter_map(|j| jobs.get(j)?.job.runs.last().copied()).collect();
    let runs: HashMap<RunId, RunRecord> =
        history.runs(&last_runs).await.unwrap_or_default().into_iter().map(|r| (r.id(), r)).collect();
    let mut doc = Map::new();
    // Room for the braces and the omitted count.
    let mut budget = PARENTS_LIMIT - 64;
    let mut omitted = 0u64;
    for (name, job) in parents {
        let run = jobs.get(job).and_then(|r| r.job.runs.last()).and_then(|r| runs.get(r));
        let mut entry = match run {
            Some(run) => summary(*job, run),
            None => Map::from_iter([("job".to_owned(), json!(job.get())), ("state".to_owned(), Value::Null)]),
        };
        // The entry without its output, then the output if it fits too.
        let bare = name.len() + Value::Object(entry.clone()).to_string().len() + 32;
        if bare > budget {
            omitted += 1;
            continue;
        }
        budget -= bare;
        if let Some(attempt) = run.and_then(|r| r.attempts.last()) {
            let [stdout, _] = history.output(attempt.id).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&stdout);
            let output = if stdout.is_empty() {
                Value::Null
            } else {
                serde_json::from_str::<Value>(text.trim()).unwrap_or_else(|_| Value::String(text.into_owned()))
            };
            let size = output.to_string().len();
            if size <= budget {
                budget -= size;
                entry.insert("output".into(), output);
            } else {
                entry.insert("truncated".into(), Value::Bool(true));
            }
        }
        doc.insert(name.clone(), Value::Object(entry));
    }
    if omitted > 0 {
        doc.insert("…omitted".into(), json!(omitted));
    }
    Value::Object(doc)
}

/// How a parent's last run ended, without its output (`output: null`).
fn summary(job: JobId, run: &RunRecord) -> Map<String, Value> {
    let attempt = run.attempts.last();
    let exit_code = match attempt.and_then(|a| a.result.as_ref()).map(|r| &r.status) {
        Some(ExitStatus::Exited { code }) => json!(code),
        _ => Value::Null,
    };
    let truncated = attempt.and_then(|a| a.result.as_ref()).is_some_and(|r| r.stdout.truncated > 0);
    Map::from_iter([
        ("job".to_owned(), json!(job.get())),
        ("run".to_owned(), json!(run.id().get())),
        ("state".to_owned(), json!(run.run.state.as_str())),
        ("exit_code".to_owned(), exit_code),
        ("output".to_owned(), Value::Null),
        ("truncated".to_owned(), Value::Bool(truncated)),
    ])
}

/// The parents of `job` by node name, if it is a workflow node that has any.
pub(crate) fn of(s: &ClusterState, job: JobId) -> Option<Parents> {
    let workflow = s.workflow(s.workflow_of(job)?)?;
    let node = &workflow.spec.nodes[workflow.node_of(job)?];
    if node.after.is_empty() {
        return None;
    }
    let jobs: Option<Parents> = node
        .after
        .iter()
        .map(|edge| {
            let index = workflow.spec.nodes.iter().position(|n| n.name == edge.parent)?;
            Some((edge.parent.clone(), *workflow.jobs.get(index)?))
        })
        .collect();
    jobs
}
