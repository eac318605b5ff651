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
//! JSON, else the text. The document is capped at [`PARENTS_LIMIT`] bytes: a
//! parent whose output does not fit is listed with `output: null` and
//! `truncated: true` (its output stays readable with `archon logs`).
//!
//! A function job gets `{"input": <its own input>, "parents": <document>}` as
//! its input; a shell, script, process or Docker job gets the document in the
//! environment variable [`PARENTS_ENV`].

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Shared;
use crate::history::{job_record, run_record};
use crate::model::{ExitStatus, JobId, JobSpec, Task};
use crate::transport::Assignment;

/// The environment variable holding the parents document.
pub const PARENTS_ENV: &str = "ARCHON_PARENTS_JSON";

/// The most bytes of parent outputs a node gets: below Linux's 128 KiB cap on
/// one environment string, so the document always fits the variable.
pub const PARENTS_LIMIT: usize = 96 << 10;

/// The parents of a node about to run, by name, in the order of its edges.
pub(crate) type Parents = Vec<(String, JobId)>;

/// Reads the parents' results and puts the document into `assignment`'s spec.
/// A parent the history no longer holds is listed with `state: null`.
pub(crate) async fn attach(shared: &Shared, assignment: &mut Assignment, parents: &Parents) {
    let mut doc = Map::new();
    let mut budget = PARENTS_LIMIT;
    for (name, job) in parents {
        let entry = match result_of(shared, *job).await {
            Some(mut entry) => {
                let size = entry.get("output").map_or(0, |o| o.to_string().len());
                if size > budget {
                    entry.insert("output".into(), Value::Null);
                    entry.insert("truncated".into(), Value::Bool(true));
                } else {
                    budget -= size;
                }
                entry
            }
            None => Map::from_iter([("job".to_owned(), json!(job.get())), ("state".to_owned(), Value::Null)]),
        };
        doc.insert(name.clone(), Value::Object(entry));
    }
    let doc = Value::Object(doc);
    let mut spec = JobSpec::clone(&assignment.spec);
    match &mut spec.task {
        Task::Function { input, .. } => {
            let own: Value = serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.clone()));
            *input = json!({ "input": own, "parents": doc }).to_string();
        }
        _ => {
            spec.env.insert(PARENTS_ENV.to_owned(), doc.to_string());
        }
    }
    assignment.spec = Arc::new(spec);
}

/// How `job`'s last run ended and what it printed, from the history.
async fn result_of(shared: &Shared, job: JobId) -> Option<Map<String, Value>> {
    let history = &*shared.history;
    let record = job_record(history, job).await.ok()??;
    let run = run_record(history, *record.job.runs.last()?).await.ok()??;
    let attempt = run.attempts.last();
    let exit_code = match attempt.and_then(|a| a.result.as_ref()).map(|r| &r.status) {
        Some(ExitStatus::Exited { code }) => json!(code),
        _ => Value::Null,
    };
    let (output, truncated) = match attempt {
        Some(a) => {
            let [stdout, _] = history.output(a.id).await.ok()?;
            let truncated = a.result.as_ref().is_some_and(|r| r.stdout.truncated > 0);
            let text = String::from_utf8_lossy(&stdout);
            let output =
                serde_json::from_str::<Value>(text.trim()).unwrap_or_else(|_| Value::String(text.into_owned()));
            (if stdout.is_empty() { Value::Null } else { output }, truncated)
        }
        None => (Value::Null, false),
    };
    Some(Map::from_iter([
        ("job".to_owned(), json!(job.get())),
        ("run".to_owned(), json!(run.id().get())),
        ("state".to_owned(), json!(run.run.state.as_str())),
        ("exit_code".to_owned(), exit_code),
        ("output".to_owned(), output),
        ("truncated".to_owned(), Value::Bool(truncated)),
    ]))
}
