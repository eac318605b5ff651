//! The simulated client: submits jobs with idempotency keys through the real
//! gRPC client, retrying each until it is acknowledged, waits for every
//! acknowledged run to be terminal, then for the replicas to converge.
//!
//! The one thing to know: the simulation ends when this client returns, so it
//! is also what waits out the healing of every fault; an acknowledged run the
//! cluster no longer knows is recorded as lost rather than waited on forever.

use std::sync::Arc;
use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::api::Api;
use archon_core::model::RunId;
use archon_core::store::Store;
use archon_net::GrpcClient;

use crate::manager::{ManagerNode, sim_dialer};
use crate::trace::{Event, Trace};
use crate::worker::sleep_job;

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
}

/// Runs `workload` to its end, recording into `trace`; `nodes` are the
/// managers, whose replicas it waits to converge.
pub async fn run(workload: Workload, nodes: Vec<Arc<ManagerNode>>, trace: Trace) -> turmoil::Result {
    let api = connect(&workload.managers).await;
    let mut acked = Vec::new();
    for (key, millis, pause) in &workload.jobs {
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        let run = submit(&api, key, *millis, &trace).await;
        acked.push((key.clone(), run));
    }
    for (key, run) in acked {
        wait_terminal(&api, &key, run, &trace).await;
    }
    wait_converged(&nodes, &trace).await;
    Ok(())
}

async fn connect(managers: &[String]) -> GrpcClient {
    loop {
        match GrpcClient::connect_with(managers, sim_dialer()).await {
            Ok(client) => return client,
            Err(e) => {
                tracing::debug!(error = %e, "client cannot connect yet");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Submits until acknowledged; the same key every time, so a retry of a
/// submit that was stored returns the first job.
async fn submit(api: &GrpcClient, key: &str, millis: u64, trace: &Trace) -> RunId {
    loop {
        trace.record(Event::Submitting { key: key.into() });
        match api.submit(vec![sleep_job(key, millis)]).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(submitted)) => {
                    if let Some(run) = submitted.run {
                        trace.record(Event::Acked {
                            key: key.into(),
                            job: submitted.job,
                            run,
                            duplicate: submitted.duplicate,
                        });
                        return run;
                    }
                    tracing::warn!(key, "a one-off job was acknowledged without a run");
                }
                Some(Err(rejection)) => tracing::warn!(key, ?rejection, "submit rejected"),
                None => tracing::warn!(key, "submit answered nothing"),
            },
            Err(e) => tracing::debug!(key, error = %e, "submit failed; retrying with the same key"),
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_terminal(api: &GrpcClient, key: &str, run: RunId, trace: &Trace) {
    loop {
        match api.get_run(run).await {
            Ok(detail) if detail.run.state.is_terminal() => {
                trace.record(Event::Terminal { key: key.into(), run, state: detail.run.state });
                return;
            }
            Ok(_) => {}
            Err(CoreError::NotFound(_)) => {
                trace.record(Event::Lost { key: key.into(), run });
                return;
            }
            Err(e) => tracing::debug!(key, error = %e, "cannot read the run yet"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every manager runs and all applied the same log to the same state.
async fn wait_converged(nodes: &[Arc<ManagerNode>], trace: &Trace) {
    loop {
        if let Some(digest) = common_digest(nodes) {
            trace.record(Event::Converged { digest });
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn common_digest(nodes: &[Arc<ManagerNode>]) -> Option<String> {
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
    seen.map(|(_, digest)| digest)
}
