//! A workflow file: a `[workflow]` table naming it, and its jobs as `[[jobs]]`
//! whose `depends_on` names other jobs of the file, each edge with a condition.
//!
//! ```toml
//! [workflow]
//! name = "release"
//!
//! [[jobs]]
//! name = "build"
//! command = "make"
//!
//! [[jobs]]
//! name = "test"
//! command = "make test"
//! depends_on = ["build"]                              # on success (the default)
//!
//! [[jobs]]
//! name = "rollback"
//! command = "./rollback.sh"
//! depends_on = [{ job = "test", when = "failure" }]   # success, failure or completion
//! ```
//!
//! A `[workflow.schedule]` table (the keys of a job's `[schedule]`) makes it a
//! cron workflow: each fire starts an instance.

use archon_core::model::{Edge, EdgeCondition, WorkflowNode, WorkflowSpec};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{JobDraft, Naming, ScheduleDraft};

/// The `[workflow]` table.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowHead {
    /// The workflow's name.
    pub name: String,
    /// A cron schedule: each fire starts an instance.
    pub schedule: Option<ScheduleDraft>,
}

/// A workflow file as JSON: the body of `POST /api/v1/workflows`. Each job is a
/// job draft with `depends_on` naming other jobs of the workflow, as a name or
/// `{"job": "name", "when": "success|failure|completion"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDraft {
    /// Its name and schedule.
    pub workflow: WorkflowHead,
    /// Its jobs.
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<serde_json::Value>,
}

/// A workflow document in JSON (the shape of a workflow file) as a workflow.
/// `null` values count as absent. Errors name the field as written.
pub fn parse_workflow_json(value: serde_json::Value) -> Result<WorkflowSpec, String> {
    let serde_json::Value::Object(_) = &value else {
        return Err("body: must be an object with \"workflow\" and \"jobs\"".into());
    };
    match toml::Value::try_from(without_nulls(value)) {
        Ok(toml::Value::Table(table)) => parse_workflow(table),
        Ok(_) => Err("body: must be an object with \"workflow\" and \"jobs\"".into()),
        Err(e) => Err(format!("body: {e}")),
    }
}

fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Whether a parsed spec file is a workflow (it has a `[workflow]` table).
pub(super) fn is_workflow(table: &toml::Table) -> bool {
    table.contains_key("workflow")
}

/// A workflow file's table as a workflow. Errors name the field as written
/// (`jobs[1].depends_on[0]`).
pub(super) fn parse_workflow(mut table: toml::Table) -> Result<WorkflowSpec, String> {
    let head = table.remove("workflow").unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    let head: WorkflowHead = head.try_into().map_err(|e: toml::de::Error| format!("workflow: {}", e.message()))?;
    let jobs = match table.remove("jobs") {
        Some(toml::Value::Array(jobs)) => jobs,
        Some(_) => return Err("jobs: must be an array of tables ([[jobs]])".into()),
        None => return Err("jobs: the workflow defines no job ([[jobs]] tables)".into()),
    };
    if let Some(key) = table.keys().next() {
        return Err(format!("{key}: unknown key (a workflow file has [workflow] and [[jobs]])"));
    }
    let mut nodes = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.into_iter().enumerate() {
        let toml::Value::Table(mut job) = job else {
            return Err(format!("jobs[{i}]: must be a table"));
        };
        let after = match job.remove("depends_on") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(k, v)| edge(v).map_err(|e| format!("jobs[{i}].depends_on[{k}]: {e}")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("jobs[{i}].depends_on: must be a list of job names")),
        };
        let draft: JobDraft =
            toml::Value::Table(job).try_into().map_err(|e: toml::de::Error| format!("jobs[{i}]: {}", e.message()))?;
        let name = draft
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| format!("jobs[{i}].name: is required in a workflow (depends_on refers to it)"))?;
        let spec = draft.into_spec(Naming::File).map_err(|e| format!("jobs[{i}].{e}"))?;
        nodes.push(WorkflowNode { name, job: spec, after });
    }
    let schedule = match head.schedule {
        Some(draft) => {
            let now = archon_core::clock::Clock::now(&archon_core::clock::SystemClock);
            let schedule = draft.into_schedule(Naming::File, now).map_err(|e| format!("workflow.{e}"))?;
            Some(Box::new(schedule))
        }
        None => None,
    };
    let spec = WorkflowSpec { name: head.name, nodes, schedule };
    // The shape is checked here too, so a cycle never leaves the machine.
    spec.validate(usize::MAX).map_err(|e| format!("{}: {}", e.field.replace("nodes[", "jobs["), e.message))?;
    Ok(spec)
}

/// One `depends_on` entry: a name, or `{ job = "name", when = "failure" }`.
fn edge(value: toml::Value) -> Result<Edge, String> {
    match value {
        toml::Value::String(parent) => Ok(Edge { parent, when: EdgeCondition::Success }),
        toml::Value::Table(mut t) => {
            let parent = match t.remove("job") {
                Some(toml::Value::String(p)) => p,
                _ => return Err("needs job = \"name\"".into()),
            };
            let when = match t.remove("when") {
                None => EdgeCondition::Success,
                Some(toml::Value::String(w)) => w.parse()?,
                Some(_) => return Err("when: must be success, failure or completion".into()),
            };
            if let Some(key) = t.keys().next() {
                return Err(format!("{key}: unknown key (use job and when)"));
            }
            Ok(Edge { parent, when })
        }
        _ => Err("must be a job name or { job = \"name\", when = \"failure\" }".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WorkflowSpec, String> {
        parse_workflow(text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn the_shipped_release_workflow_parses_with_its_conditions() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/specs/release.toml");
        let spec = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(spec.name, "release");
        let rollback = spec.nodes.iter().find(|n| n.name == "rollback").unwrap();
        assert_eq!(rollback.after, vec![Edge { parent: "test".into(), when: EdgeCondition::Failure }]);
    }

    #[test]
    fn bad_workflows_name_the_field() {
        let cycle = "[workflow]\nname = \"w\"\n[[jobs]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [\"b\"]\n[[jobs]]\nname = \"b\"\ncommand = \"true\"\ndepends_on = [\"a\"]\n";
        let e = parse(cycle).unwrap_err();
        assert!(e.starts_with("depends_on: the jobs form a cycle: "), "{e}");
        let unknown = "[workflow]\nname = \"w\"\n[[jobs]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [\"zz\"]\n";
        assert_eq!(
            parse(unknown).unwrap_err(),
            "jobs[0].depends_on: \"zz\" is not a job of this workflow (its jobs: a)"
        );
        let when = "[workflow]\nname = \"w\"\n[[jobs]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [{ job = \"a\", when = \"later\" }]\n";
        assert!(parse(when).unwrap_err().starts_with("jobs[0].depends_on[0]: \"later\" is not an edge condition"));
        let nameless = "[workflow]\nname = \"w\"\n[[jobs]]\ncommand = \"true\"\n";
        assert!(parse(nameless).unwrap_err().starts_with("jobs[0].name: is required"));
    }
}
