//! [`Api`] served in process by the [`Manager`]: writes go through the driver
//! (batched), reads come straight from the store's applied state.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use super::{Manager, queries};
use crate::api::{
    Api, CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, ManagerInfo, OutputFollow, Page, RunDetail,
    RunQuery, RunSummary, SubmitResult, Submitted, WorkerInfo,
};
use crate::error::Error;
use crate::model::{JobId, JobSpec, OutputChunk, OutputStream, RunId, WorkerId};
use crate::state::{Command, Event, Outcome};
use crate::store::StoreExt;

#[async_trait]
impl Api for Manager {
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<SubmitResult>, Error> {
        self.ensure_leader()?;
        let at = self.shared.clock.now();
        let commands = specs.into_iter().map(|spec| Command::SubmitJob { at, spec: Arc::new(spec) }).collect();
        let outcomes = self.propose(commands).await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Applied(events) => events
                    .into_iter()
                    .find_map(|e| match e {
                        Event::JobAccepted { job, run, duplicate } => Some(Submitted { job, run, duplicate }),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        crate::state::Rejection::InvalidSpec(crate::model::SpecError::new("job", "was not accepted"))
                    }),
                Outcome::Rejected(r) => Err(r),
            })
            .collect())
    }

    async fn get_job(&self, id: JobId) -> Result<JobDetail, Error> {
        self.ensure_leader()?;
        self.shared.store.query(|s| queries::job_detail(s, id))
    }

    async fn get_run(&self, id: RunId) -> Result<RunDetail, Error> {
        self.ensure_leader()?;
        let mut detail = self.shared.store.query(|s| queries::run_detail(s, id))?;
        if matches!(detail.run.state, crate::model::RunState::Pending | crate::model::RunState::Retrying) {
            detail.pending_reason = self.shared.pending_reasons().get(&id).cloned();
        }
        Ok(detail)
    }

    async fn list_jobs(&self, query: JobQuery) -> Result<Page<JobSummary, JobId>, Error> {
        self.ensure_leader()?;
        Ok(self.shared.store.query(|s| queries::list_jobs(s, &query)))
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
        self.ensure_leader()?;
        self.shared.store.query(|s| queries::list_runs(s, &query))
    }

    async fn cancel(&self, target: CancelTarget) -> Result<(), Error> {
        self.ensure_leader()?;
        let at = self.shared.clock.now();
        let command = match target {
            CancelTarget::Job(job) => Command::CancelJob { at, job },
            CancelTarget::Run(run) => Command::CancelRun { at, run },
        };
        self.propose_one(command).await
    }

    async fn set_draining(&self, worker: WorkerId, draining: bool) -> Result<(), Error> {
        self.ensure_leader()?;
        if self.shared.store.query(|s| s.worker(worker).is_none()) {
            return Err(Error::NotFound(worker.to_string()));
        }
        let at = self.shared.clock.now();
        self.propose_one(Command::SetDraining { at, worker, draining }).await
    }

    async fn wait(&self, id: RunId) -> Result<RunDetail, Error> {
        self.ensure_leader()?;
        let mut finished = self.shared.finished.subscribe();
        let mut leadership = self.shared.store.leadership();
        loop {
            let detail = self.get_run(id).await?;
            if detail.run.state.is_terminal() {
                return Ok(detail);
            }
            loop {
                let received = tokio::select! {
                    r = finished.recv() => r,
                    _ = self.shared.stopped.cancelled() => return Err(Error::ShuttingDown),
                    // Deposed: the new leader is where the run's end will be seen.
                    _ = leadership.wait_for(|l| !l.is_leader) => return Err(self.not_leader()),
                };
                match received {
                    Ok(batch) if batch.contains(&id) => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return Err(Error::ShuttingDown),
                }
            }
        }
    }

    async fn follow(&self, id: RunId) -> Result<OutputFollow, Error> {
        self.ensure_leader()?;
        let store = self.shared.store.clone();
        let mut ended = None;
        let sub = self.shared.hub.subscribe(id, || {
            store.query(|s| match s.run(id) {
                None => {
                    ended = Some(Err(Error::NotFound(id.to_string())));
                    false
                }
                Some(run) if run.state.is_terminal() => {
                    ended = Some(Ok(()));
                    false
                }
                Some(_) => true,
            })
        });
        match (sub, ended) {
            (Some(sub), _) => {
                let buffered = futures::stream::iter(sub.buffered.into_iter().map(Ok));
                // Ends with the run, or with an error if the manager stops or is
                // deposed first (the run's end will be seen by the new leader).
                let ends = Some((self.shared.stopped.clone(), self.shared.store.leadership()));
                let live = futures::stream::unfold((sub.live, ends), |(mut rx, ends)| async move {
                    let (stopped, mut leadership) = ends?;
                    loop {
                        let received = tokio::select! {
                            r = rx.recv() => r,
                            _ = stopped.cancelled() => return Some((Err(Error::ShuttingDown), (rx, None))),
                            deposed = leadership.wait_for(|l| !l.is_leader) => {
                                let leader = deposed.ok().and_then(|l| l.leader.clone());
                                return Some((Err(Error::NotLeader { leader }), (rx, None)));
                            }
                        };
                        match received {
                            Ok(chunk) => return Some((Ok(chunk), (rx, Some((stopped, leadership))))),
                            Err(RecvError::Lagged(n)) => {
                                tracing::warn!(skipped = n, "output follower fell behind; chunks skipped")
                            }
                            Err(RecvError::Closed) => return None,
                        }
                    }
                });
                Ok(buffered.chain(live).boxed())
            }
            (None, Some(Err(e))) => Err(e),
            (None, _) => {
                // The run has ended: its output is the last attempt's kept tail.
                let detail = self.get_run(id).await?;
                let chunks: Vec<Result<OutputChunk, Error>> = detail
                    .attempts
                    .last()
                    .and_then(|a| a.result.as_ref().map(|r| (a.id, r)))
                    .map(|(attempt, r)| {
                        [(OutputStream::Stdout, &r.stdout), (OutputStream::Stderr, &r.stderr)]
                            .into_iter()
                            .filter(|(_, t)| !t.data.is_empty())
                            .map(|(stream, t)| Ok(OutputChunk { run: id, attempt, stream, data: t.data.clone() }))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(futures::stream::iter(chunks).boxed())
            }
        }
    }

    /// Served by any manager: the state as this one has applied it, and every
    /// manager of the group as each reports itself.
    async fn status(&self) -> Result<ClusterStatus, Error> {
        let mut status = self.shared.store.query(queries::status);
        status.managers = self.shared.store.managers().await;
        if status.managers.is_empty() {
            let leadership = self.shared.store.leadership().borrow().clone();
            status.managers.push(ManagerInfo {
                id: self.shared.config.node_id,
                address: self.shared.config.address.clone(),
                role: if leadership.is_leader { "leader".into() } else { "follower".into() },
                term: leadership.term,
                last_applied: self.shared.store.query(|s| s.applied()),
            });
        }
        Ok(status)
    }

    async fn list_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        self.ensure_leader()?;
        let live = self.shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Ok(self.shared.store.query(|s| {
            s.workers()
                .values()
                .map(|w| {
                    let l = live.get(&w.id);
                    WorkerInfo {
                        worker: w.clone(),
                        connected: l.is_some_and(|l| l.connected),
                        last_seen: l.map(|l| l.last_seen),
                    }
                })
                .collect()
        }))
    }
}

impl Manager {
    /// Only the leader serves the API (but `status`): elsewhere the state may lag
    /// and nothing is dispatched, so callers are sent to the leader.
    fn ensure_leader(&self) -> Result<(), Error> {
        if self.shared.store.leadership().borrow().is_leader { Ok(()) } else { Err(self.not_leader()) }
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader { leader: self.shared.store.leadership().borrow().leader.clone() }
    }

    /// Proposes one command; a rejection becomes [`Error::Rejected`].
    async fn propose_one(&self, command: Command) -> Result<(), Error> {
        match self.propose(vec![command]).await?.pop() {
            Some(Outcome::Applied(_)) => Ok(()),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }
}
