//! The simulated client: through the real gRPC client it submits a cron job
//! (every two seconds), jobs with idempotency keys — each retried until it is
//! acknowledged — and, halfway, a workflow of three jobs; then it waits for
//! the planned faults to be over, for every acknowledged run and the workflow
//! to end, pauses the cron job and waits for its runs to end, then for the
//! replicas to converge.
//!
//! The one thing to know: the simulation ends when this client returns, so it
//! is also what waits out the healing of every fault; an acknowledged run the
//! cluster no longer knows is recorded as lost rather than waited on forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::api::{Api, ScheduleAction, Submitted, SubmittedWorkflow};
use archon_core::model::{
    Edge, EdgeCondition, JobId, RunId, Schedule, WorkflowId, WorkflowNode, WorkflowSpec, WorkflowState,
};
use archon_core::store::Store;
use archon_net::GrpcClient;

use crate::manager::{ManagerNode, sim_dialer};
use crate::trace::{Event, Trace};
use crate::worker::sleep_job;

/// The cron job's schedule: every two seconds.
const CRON: &str = "*/2 * * * * *";

/// Pause between retries and polls.
const POLL: Duration = Duration::from_millis(250);

/// What the client does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Jobs to submit in order, each `(idempotency key, run time in ms, pause
    /// before submitting it in ms)`.
    pub jobs: Vec<(String, u64, u64)>,
    /// The managers' addresses.
    pub managers: Vec<String>,
    /// Set by the harness once every planned fault has struck and healed:
    /// the client submits, then waits for it before it waits for the work to
    /// end, so a run never ends before its faults.
    pub faults_over: Arc<AtomicBool>,
}

/// Runs `workload` to its end, recording into `trace`; `nodes` are the
/// managers, whose replicas it waits to converge.
pub async fn run(workload: Workload, nodes: Vec<Arc<ManagerNode>>, trace: Trace) -> turmoil::Result {
    let api = connect(&workload.managers).await;
    let cron = submit_cron(&api, &trace).await;
    let mut acked = Vec::new();
    let mut workflow = None;
    for (i, (key, millis, pause)) in workload.jobs.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        let run = submit(&api, key, *millis, &trace).await;
        acked.push((key.clone(), run));
        if i == workload.jobs.len() / 2 {
            workflow = Some(submit_workflow(&api, &trace).await);
        }
    }
    until(|| std::future::ready(workload.faults_over.load(Ordering::Relaxed).then_some(()))).await;
    for (key, run) in acked {
        wait_terminal(&api, &key, run, &trace).await;
    }
    if let Some(workflow) = workflow {
        wait_workflow(&api, workflow, &trace).await;
    }
    settle_cron(&api, cron, &trace).await;
    wait_converged(&nodes, &trace).await;
    Ok(())
}

/// Calls `attempt` every [`POLL`] (of virtual time) until it gives a value.
async fn until<T, Fut: Future<Output = Option<T>>>(mut attempt: impl FnMut() -> Fut) -> T {
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Submits the cron job until acknowledged (by its key, so once).
async fn submit_cron(api: &GrpcClient, trace: &Trace) -> JobId {
    let key = "cron";
    let mut spec = sleep_job(key, 300);
    spec.schedule = Some(Box::new(Schedule::new(CRON)));
    let spec = &spec;
    until(|| async move {
        trace.record(Event::Submitting { key: key.into() });
        match api.submit(vec![spec.clone()]).await.map(|mut r| r.pop()) {
            Ok(Some(Ok(submitted))) => {
                trace.record(Event::CronAcked { job: submitted.job });
                return Some(submitted.job);
            }
            Ok(other) => tracing::warn!(?other, "cron submit not accepted"),
            Err(e) => tracing::debug!(error = %e, "cron submit failed; retrying with the same key"),
        }
        None
    })
    .await
}

/// Submits a workflow: `extract`, then `load` and `report` after it. Retried
/// until acknowledged; a workflow takes no idempotency key, so a retry of a
/// submit that was stored makes a second one, which must end as well.
async fn submit_workflow(api: &GrpcClient, trace: &Trace) -> WorkflowId {
    let node = |name: &str, millis, after: &[&str]| WorkflowNode {
        name: name.into(),
        job: {
            let mut job = sleep_job(name, millis);
            job.idempotency_key = None;
            job
        },
        after: after.iter().map(|p| Edge { parent: (*p).into(), when: EdgeCondition::Success }).collect(),
    };
    let spec = WorkflowSpec {
        name: "flow".into(),
        nodes: vec![node("extract", 700, &[]), node("load", 400, &["extract"]), node("report", 300, &["extract"])],
        schedule: None,
    };
    let spec = &spec;
    until(|| async move {
        trace.record(Event::Submitting { key: "flow".into() });
        match api.submit_workflow(spec.clone()).await {
            Ok(SubmittedWorkflow { workflow: Some(workflow), .. }) => {
                trace.record(Event::WorkflowAcked { workflow });
                return Some(workflow);
            }
            Ok(_) => tracing::warn!("a one-off workflow was acknowledged without an id"),
            Err(e) => tracing::debug!(error = %e, "workflow submit failed; retrying"),
        }
        None
    })
    .await
}

async fn wait_workflow(api: &GrpcClient, workflow: WorkflowId, trace: &Trace) {
    until(|| async move {
        match api.get_workflow(workflow).await {
            Ok(detail) if detail.state != WorkflowState::Running => {
                trace.record(Event::WorkflowEnded { workflow, state: detail.state.as_str().into() });
                Some(())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the workflow yet");
                None
            }
        }
    })
    .await
}

/// Pauses the cron job, then waits until each of its runs has ended.
async fn settle_cron(api: &GrpcClient, job: JobId, trace: &Trace) {
    until(|| async move {
        let pause = ScheduleAction::Pause { note: Some("the simulation ends".into()) };
        api.schedule(job, pause).await.map_err(|e| tracing::debug!(error = %e, "cannot pause the cron job yet")).ok()
    })
    .await;
    until(|| async move {
        match api.get_job(job).await {
            Ok(detail) if detail.runs.iter().all(|r| r.state.is_terminal()) => {
                trace.record(Event::CronSettled { job, runs: detail.runs.len() as u64 });
                Some(())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the cron job yet");
                None
            }
        }
    })
    .await
}

async fn connect(managers: &[String]) -> GrpcClient {
    until(|| async move {
        GrpcClient::connect_with(managers, sim_dialer())
            .await
            .map_err(|e| tracing::debug!(error = %e, "client cannot connect yet"))
            .ok()
    })
    .await
}

/// Submits until acknowledged; the same key every time, so a retry of a
/// submit that was stored returns the first job.
async fn submit(api: &GrpcClient, key: &str, millis: u64, trace: &Trace) -> RunId {
    until(|| async move {
        trace.record(Event::Submitting { key: key.into() });
        match api.submit(vec![sleep_job(key, millis)]).await.map(|r| r.into_iter().next()) {
            Ok(Some(Ok(Submitted { job, run: Some(run), duplicate }))) => {
                trace.record(Event::Acked { key: key.into(), job, run, duplicate });
                return Some(run);
            }
            Ok(Some(Ok(_))) => tracing::warn!(key, "a one-off job was acknowledged without a run"),
            Ok(Some(Err(rejection))) => tracing::warn!(key, ?rejection, "submit rejected"),
            Ok(None) => tracing::warn!(key, "submit answered nothing"),
            Err(e) => tracing::debug!(key, error = %e, "submit failed; retrying with the same key"),
        }
        None
    })
    .await
}

async fn wait_terminal(api: &GrpcClient, key: &str, run: RunId, trace: &Trace) {
    until(|| async move {
        match api.get_run(run).await {
            Ok(detail) if detail.run.state.is_terminal() => {
                trace.record(Event::Terminal { key: key.into(), run, state: detail.run.state });
                Some(())
            }
            Ok(_) => None,
            Err(CoreError::NotFound(_)) => {
                trace.record(Event::Lost { key: key.into(), run });
                Some(())
            }
            Err(e) => {
                tracing::debug!(key, error = %e, "cannot read the run yet");
                None
            }
        }
    })
    .await
}

/// Waits until every manager runs and all applied the same log to the same state.
async fn wait_converged(nodes: &[Arc<ManagerNode>], trace: &Trace) {
    let (index, digest) = until(|| std::future::ready(common_digest(nodes))).await;
    trace.record(Event::Converged { index, digest });
}

/// The last index every replica applied and their common state digest, once
/// all run and agree.
fn common_digest(nodes: &[Arc<ManagerNode>]) -> Option<(Option<u64>, String)> {
    let mut seen: Option<(Option<u64>, String)> = None;
    for node in nodes {
        let store = node.store()?;
        let applied = store.raft().metrics().borrow().last_applied.map(|l| l.index);
        let mut digest = None;
        store.read(&mut |state| digest = archon_raft::storage::state_digest(state).ok());
        let this = (applied, digest?);
        match &seen {
            None => seen = Some(this),
            Some(first) if *first == this => {}
            Some(_) => return None,
        }
    }
    seen
}
