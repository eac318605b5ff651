//! The clients of a scenario: a few submitters, each submitting one job at a time
//! over [`GrpcClient`] with an idempotency key, retrying a key until a manager
//! acknowledges it, and recording every acknowledgement.

use std::time::Duration;

use archon_core::api::Api;
use archon_core::model::{JobId, JobSpec, Task};
use archon_net::GrpcClient;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::WORK;
use crate::rng::Rng;

/// How long one submit call may take before the client tries another manager.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a key is retried before it is left in doubt.
const KEY_DEADLINE: Duration = Duration::from_secs(40);

/// A submit a manager acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    /// The idempotency key.
    pub(crate) key: String,
    /// The job the manager said it stored.
    pub(crate) job: JobId,
}

/// What the submitters saw.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Acknowledged submits, in order.
    pub(crate) acked: Vec<Acked>,
    /// Keys never acknowledged: the job may or may not exist.
    pub(crate) in_doubt: Vec<String>,
    /// Submits a manager refused (a valid spec must never be refused).
    pub(crate) refused: Vec<String>,
    /// Calls that failed or timed out and were retried.
    pub(crate) retries: u64,
}

/// Submitter tasks running against the cluster.
pub(crate) struct Submitters {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Report>>,
}

impl Submitters {
    /// Starts `count` submitters against the managers at `addresses`.
    pub(crate) fn start(seed: u64, addresses: &[String], count: usize, rng: &mut Rng) -> Submitters {
        let stop = CancellationToken::new();
        let tasks = (0..count)
            .map(|i| {
                let submitter = Submitter {
                    prefix: format!("seed{seed}-client{i}"),
                    addresses: addresses.to_vec(),
                    rng: rng.fork(),
                    client: None,
                    next_address: i,
                };
                tokio::spawn(submitter.run(stop.clone()))
            })
            .collect();
        Submitters { stop, tasks }
    }

    /// Stops submitting new keys, lets each submitter settle the key it is on
    /// (bounded), and returns everything they saw.
    pub(crate) async fn stop(self, seed: u64) -> Report {
        self.stop.cancel();
        let mut report = Report::default();
        for task in self.tasks {
            let part = tokio::time::timeout(KEY_DEADLINE + Duration::from_secs(10), task)
                .await
                .unwrap_or_else(|_| panic!("seed {seed}: a submitter did not stop"))
                .unwrap();
            report.acked.extend(part.acked);
            report.in_doubt.extend(part.in_doubt);
            report.refused.extend(part.refused);
            report.retries += part.retries;
        }
        report
    }
}

struct Submitter {
    prefix: String,
    addresses: Vec<String>,
    rng: Rng,
    client: Option<GrpcClient>,
    /// Where the next connect starts, moved on after every failure.
    next_address: usize,
}

impl Submitter {
    async fn run(mut self, stop: CancellationToken) -> Report {
        let mut report = Report::default();
        let mut n = 0;
        while !stop.is_cancelled() {
            n += 1;
            let key = format!("{}-{n}", self.prefix);
            let mut spec = JobSpec::new(
                key.clone(),
                Task::Function { name: WORK.into(), input: self.rng.between(5, 60).to_string() },
            );
            spec.idempotency_key = Some(key.clone());
            self.settle(spec, &mut report).await;
            let pause = self.rng.millis(20, 80);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        report
    }

    /// Submits `spec` until a manager acknowledges or refuses it, or its deadline passes.
    async fn settle(&mut self, spec: JobSpec, report: &mut Report) {
        let key = spec.idempotency_key.clone().unwrap_or_default();
        let deadline = Instant::now() + KEY_DEADLINE;
        while Instant::now() < deadline {
            let Some(client) = self.connect().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Ok(Ok(results)) = tokio::time::timeout(CALL_TIMEOUT, client.submit(vec![spec.clone()])).await {
                match results.into_iter().next() {
                    Some(Ok(submitted)) => report.acked.push(Acked { key, job: submitted.job }),
                    Some(Err(rejection)) => report.refused.push(format!("{key}: {rejection}")),
                    None => report.refused.push(format!("{key}: no result for the spec")),
                }
                return;
            }
            // Failed, or no answer in time (e.g. a leader cut off from its quorum):
            // the job may exist, and the same key finds it again elsewhere.
            report.retries += 1;
            self.client = None;
            self.next_address += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report.in_doubt.push(key);
    }

    /// The client, connected to the managers starting at `next_address`.
    async fn connect(&mut self) -> Option<GrpcClient> {
        if self.client.is_none() {
            let n = self.addresses.len();
            let rotated: Vec<String> = (0..n).map(|i| self.addresses[(self.next_address + i) % n].clone()).collect();
            match tokio::time::timeout(CALL_TIMEOUT, GrpcClient::connect_any(&rotated)).await {
                Ok(Ok(client)) => self.client = Some(client),
                _ => self.next_address += 1,
            }
        }
        self.client.clone()
    }
}
