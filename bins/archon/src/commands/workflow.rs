//! `archon run -f` of a workflow file: submit it, and with `--wait` wait for
//! every job and exit 1 if one failed.

use std::process::ExitCode;

use archon_core::api::Api;
use archon_core::model::{RunState, WorkflowSpec};
use archon_http::views::{SubmittedWorkflowView, WorkflowDetailView};

use super::print;
use crate::cli::Format;

/// Submits `spec`; prints the workflow and its jobs. As JSON, the REST API's
/// views: what `POST /api/v1/workflows` answers, or with `--wait` the workflow
/// as `GET /api/v1/workflows/{id}` answers it once every job ended.
pub(super) async fn submit(api: &dyn Api, spec: WorkflowSpec, wait: bool, format: Format) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
    if wait && spec.schedule.is_some() {
        return Err(super::bad("--wait: a cron workflow has no single run to wait for (each fire starts an instance)"));
    }
    let submitted = api.submit_workflow(spec).await?;
    let Some(workflow) = submitted.workflow else {
        let job = submitted.schedule.map_or_else(|| "?".to_owned(), |j| j.to_string());
        return print(format, &SubmittedWorkflowView::from(&submitted), || {
            format!(
                "scheduled {job}: each fire starts an instance of the workflow (archon workflows lists them; \
                 archon schedule pause {job}, archon cancel {job})"
            )
        });
    };
    if format == Format::Table {
        let jobs: Vec<String> = names.iter().zip(&submitted.jobs).map(|(n, j)| format!("{n} {j}")).collect();
        eprintln!("submitted {workflow}: {}", jobs.join(", "));
    }
    if !wait {
        return print(format, &SubmittedWorkflowView::from(&submitted), String::new);
    }
    // Each job's run as it ended (the workflow leaves the live state with its
    // last job, so the runs are read one by one).
    let mut failed = false;
    let mut ended = Vec::with_capacity(submitted.jobs.len());
    for (name, job) in names.iter().zip(&submitted.jobs) {
        let run = api.get_job(*job).await?.runs.last().map(|r| r.id);
        if let Some(run) = run {
            let d = api.wait(run).await?;
            failed |= matches!(d.run.state, RunState::Failed | RunState::TimedOut);
            ended.push((name.clone(), *job, d.run.id, d.run.state));
        }
    }
    let detail = match format {
        Format::Json => Some(WorkflowDetailView::from(&api.get_workflow(workflow).await?)),
        Format::Table => None,
    };
    print(format, &detail, || {
        let mut out = format!("{workflow}\n");
        for (name, job, run, state) in &ended {
            out.push_str(&format!("  {name}  {job}  {run}  {state}\n"));
        }
        out
    })?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
