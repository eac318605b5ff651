//! [`Api`] served in process by the [`Manager`]: writes are proposed to the
//! store ([`Manager::propose`]; the store gathers concurrent proposals into
//! its entries), reads come straight from the store's applied state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use super::{Manager, queries};
use crate::api::{
    Api, CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, ManagerInfo, OutputFollow, Page, RunDetail,
    RunQuery, RunSummary, ScheduleAction, ScheduleFire, SubmitResult, Submitted, SubmittedWorkflow, WorkerInfo,
    WorkflowDetail, WorkflowQuery, WorkflowSummary,
};
use crate::cron::CronSchedule;
use crate::error::Error;
use crate::model::{
    FireSource, JobId, JobSpec, OutputChunk, OutputStream, RunId, RunState, Schedule, SpecError, Timestamp, WorkerId,
    WorkflowId, WorkflowSpec,
};
use crate::state::{Command, Event, Outcome, Rejection};
use crate::store::StoreExt;

#[async_trait]
impl Api for Manager {
    #[tracing::instrument(name = "submit", skip_all, fields(specs = specs.len()))]
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<SubmitResult>, Error> {
        self.ensure_leader().await?;
        let limits = &self.shared.config.limits;
        limits.check_submit(specs.len())?;
        let at = self.shared.clock.now();
        let mut results: Vec<Option<SubmitResult>> = vec![None; specs.len()];
        let mut todo = Vec::with_capacity(specs.len());
        let entry = self.shared.config.max_batch_bytes;
        for (i, spec) in specs.into_iter().enumerate() {
            let spec = Arc::new(spec);
            let checked = limits.check_spec(&spec).and_then(|()| {
                // The expression and zone are checked here, by the leader, not in
                // `apply`: a newer time-zone database must not make replicas disagree.
                if let Some(schedule) = &spec.schedule {
                    crate::cron::validate(schedule, at)?;
                }
                // What the limits let through must still fit in one log entry.
                let size = Command::submit(at, spec.clone()).size_hint();
                if size > entry {
                    return Err(SpecError::new(
                        "job",
                        format!(
                            "takes about {} in the log, more than one entry holds ({}, max_entry_bytes)",
                            crate::model::units::format_bytes(size as u64),
                            crate::model::units::format_bytes(entry as u64)
                        ),
                    ));
                }
                Ok(())
            });
            match checked {
                Ok(()) => todo.push((i, spec)),
                Err(e) => results[i] = Some(Err(Rejection::InvalidSpec(e))),
            }
        }
        // A dependency that leaves the live state between reading how it ended and
        // the submit's turn is read again, from the history it has reached.
        for round in 0..3 {
            if todo.is_empty() {
                break;
            }
            let stamps = self.finished_dependencies(&todo).await?;
            let mut commands = Vec::with_capacity(todo.len());
            let mut proposed = Vec::with_capacity(todo.len());
            for ((i, spec), stamp) in todo.drain(..).zip(stamps) {
                match stamp {
                    Ok(_) if spec.schedule.is_some() => {
                        commands.push(Command::ScheduleJob { at, spec: spec.clone() });
                        proposed.push((i, spec));
                    }
                    Ok(finished_deps) => {
                        commands.push(Command::SubmitJob { at, spec: spec.clone(), finished_deps });
                        proposed.push((i, spec));
                    }
                    Err(rejection) => results[i] = Some(Err(rejection)),
                }
            }
            let outcomes = self.propose(commands).await?;
            for ((i, spec), outcome) in proposed.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Rejected(Rejection::DependencyNotLive(_)) if round < 2 => todo.push((i, spec)),
                    outcome => {
                        let result = submitted(outcome);
                        log_submitted(&spec, &result);
                        results[i] = Some(result);
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Rejection::InvalidSpec(SpecError::new("job", "was not accepted")))))
            .collect())
    }

    async fn get_job(&self, id: JobId) -> Result<JobDetail, Error> {
        self.ensure_leader().await?;
        queries::job_detail(&self.shared, id).await
    }

    async fn get_run(&self, id: RunId) -> Result<RunDetail, Error> {
        self.ensure_leader().await?;
        let mut detail = queries::run_detail(&self.shared, id).await?;
        if matches!(detail.run.state, crate::model::RunState::Pending | crate::model::RunState::Retrying) {
            detail.pending_reason = self.shared.pending_reasons().get(&id).cloned();
        }
        Ok(detail)
    }

    async fn list_jobs(&self, query: JobQuery) -> Result<Page<JobSummary, JobId>, Error> {
        self.ensure_leader().await?;
        queries::list_jobs(&self.shared, &query).await
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
        self.ensure_leader().await?;
        queries::list_runs(&self.shared, &query).await
    }

    async fn cancel(&self, target: CancelTarget) -> Result<(), Error> {
        self.ensure_leader().await?;
        let at = self.shared.clock.now();
        let (live, issued) = self.shared.store.query(|s| match target {
            CancelTarget::Job(job) => (s.job(job).is_some(), s.issued_job(job)),
            CancelTarget::Run(run) => (s.run(run).is_some(), s.issued_run(run)),
            CancelTarget::Workflow(wf) => (s.workflow(wf).is_some(), s.issued_workflow(wf)),
        });
        if !live {
            return self.cancel_ended(target, issued).await;
        }
        let command = match target {
            CancelTarget::Job(job) => Command::CancelJob { at, job },
            CancelTarget::Run(run) => Command::CancelRun { at, run },
            CancelTarget::Workflow(workflow) => Command::CancelWorkflow { at, workflow },
        };
        match self.propose_one(command).await {
            // It ended and left the live state between the look above and the
            // command's turn: answer as if it had ended before the call.
            Err(Error::Rejected(
                Rejection::UnknownJob(_) | Rejection::UnknownRun(_) | Rejection::UnknownWorkflow(_),
            )) => self.cancel_ended(target, issued).await,
            other => other,
        }
    }

    async fn set_draining(&self, worker: WorkerId, draining: bool) -> Result<(), Error> {
        self.ensure_leader().await?;
        if self.shared.store.query(|s| s.worker(worker).is_none()) {
            return Err(Error::NotFound(worker.to_string()));
        }
        let at = self.shared.clock.now();
        self.propose_one(Command::SetDraining { at, worker, draining }).await
    }

    async fn schedule(&self, job: JobId, action: ScheduleAction) -> Result<Vec<ScheduleFire>, Error> {
        self.ensure_leader().await?;
        let at = self.shared.clock.now();
        let (spec, issued) =
            self.shared.store.query(|s| (s.job(job).and_then(|j| j.spec.schedule.clone()), s.issued_job(job)));
        let Some(schedule) = spec else {
            if !issued {
                return Err(Error::NotFound(job.to_string()));
            }
            return Err(Error::Rejected(Rejection::NotScheduled(job)));
        };
        let command = match action {
            ScheduleAction::Pause { note } => {
                if let Some(note) = note.as_deref().filter(|n| n.len() > MAX_NOTE_BYTES) {
                    return Err(Error::invalid(
                        "note",
                        format!("{} bytes is more than {MAX_NOTE_BYTES}; keep the note short", note.len()),
                    ));
                }
                Command::PauseSchedule { at, job, paused: true, note }
            }
            ScheduleAction::Resume => Command::PauseSchedule { at, job, paused: false, note: None },
            ScheduleAction::Trigger => Command::FireSchedule {
                at,
                job,
                instants: vec![at],
                source: FireSource::Trigger,
                overlap: None,
                missed: None,
            },
            ScheduleAction::Backfill { from, to, overlap } => {
                let instants = backfill_instants(&schedule, from, to, at)?;
                Command::FireSchedule { at, job, instants, source: FireSource::Backfill, overlap, missed: None }
            }
        };
        match self.propose(vec![command]).await?.pop() {
            Some(Outcome::Applied(events)) => Ok(events
                .into_iter()
                .filter_map(|e| match e {
                    Event::ScheduleFired { instant, result, .. } => Some(ScheduleFire { instant, result }),
                    _ => None,
                })
                .collect()),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }

    async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<SubmittedWorkflow, Error> {
        Manager::submit_workflow(self, spec).await
    }

    async fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowDetail, Error> {
        self.workflow_detail(id).await
    }

    async fn list_workflows(&self, query: WorkflowQuery) -> Result<Page<WorkflowSummary, WorkflowId>, Error> {
        self.ensure_leader().await?;
        self.workflow_list(&query).await
    }

    async fn create_token(&self, spec: crate::auth::TokenSpec) -> Result<crate::auth::IssuedToken, Error> {
        self.issue_token(spec).await
    }

    async fn list_tokens(&self) -> Result<Vec<crate::auth::TokenInfo>, Error> {
        self.ensure_leader().await?;
        Ok(self.token_list())
    }

    async fn revoke_token(&self, id: crate::auth::TokenId) -> Result<(), Error> {
        self.revoke(id).await
    }

    async fn wait(&self, id: RunId) -> Result<RunDetail, Error> {
        self.ensure_leader().await?;
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
        self.ensure_leader().await?;
        let store = self.shared.store.clone();
        let mut ended = None;
        let sub = self.shared.hub.subscribe(id, || {
            store.query(|s| match s.run(id) {
                // Finished (its record is in the history), removed, or unknown.
                None => {
                    ended = Some(Ok(()));
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
                // The run has ended: its output is the last attempt's, from the history.
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
        self.ensure_leader().await?;
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
    /// Ok when this node leads; a node just elected is waited for first (see
    /// `Manager::settle`).
    pub(super) async fn ensure_leader(&self) -> Result<(), Error> {
        self.settle().await;
        if self.shared.store.leadership().borrow().is_leader { Ok(()) } else { Err(self.not_leader()) }
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader { leader: self.shared.store.leadership().borrow().leader.clone() }
    }

    /// For each spec, how its dependencies that have left the live state ended,
    /// read from the history (the state machine reads none). A dependency removed
    /// from the history by retention refuses the spec, naming it.
    async fn finished_dependencies(
        &self,
        specs: &[(usize, Arc<JobSpec>)],
    ) -> Result<Vec<Result<Vec<(JobId, RunState)>, Rejection>>, Error> {
        let gone: BTreeSet<JobId> = self.shared.store.query(|s| {
            specs
                .iter()
                .flat_map(|(_, spec)| spec.depends_on.iter())
                .filter(|d| s.job(**d).is_none())
                .copied()
                .collect()
        });
        if gone.is_empty() {
            return Ok(specs.iter().map(|_| Ok(Vec::new())).collect());
        }
        let ids: Vec<JobId> = gone.iter().copied().collect();
        let ended: BTreeMap<JobId, Option<RunState>> =
            self.shared.history.jobs(&ids).await?.into_iter().map(|r| (r.id(), r.last_state)).collect();
        let issued: BTreeSet<JobId> =
            self.shared.store.query(|s| ids.iter().filter(|j| s.issued_job(**j)).copied().collect());
        Ok(specs
            .iter()
            .map(|(_, spec)| {
                let mut stamped = Vec::new();
                for dep in spec.depends_on.iter().filter(|d| gone.contains(d)) {
                    match ended.get(dep) {
                        Some(state) => {
                            stamped.push((*dep, state.unwrap_or(RunState::Failed)));
                        }
                        None if issued.contains(dep) => {
                            return Err(Rejection::InvalidSpec(SpecError::new(
                                "depends_on",
                                format!(
                                    "{dep} finished and was removed from the history by the retention policy; depend \
                                     on jobs that are still kept"
                                ),
                            )));
                        }
                        // Unknown: the state machine refuses it as such.
                        None => {}
                    }
                }
                Ok(stamped)
            })
            .collect())
    }

    /// Proposes one command; a rejection becomes [`Error::Rejected`].
    /// A cancel of what is not in the live state: finished already (nothing to
    /// cancel), removed from the history, or never issued.
    async fn cancel_ended(&self, target: CancelTarget, issued: bool) -> Result<(), Error> {
        match target {
            CancelTarget::Job(job) => match crate::history::job_record(&*self.shared.history, job).await? {
                Some(_) => Ok(()),
                None => Err(queries::gone(&self.shared, job.to_string(), issued)),
            },
            CancelTarget::Run(run) => match crate::history::run_record(&*self.shared.history, run).await? {
                Some(record) => Err(Error::Rejected(Rejection::InvalidTransition {
                    run,
                    state: record.run.state,
                    action: "cancel".into(),
                })),
                None => Err(queries::gone(&self.shared, run.to_string(), issued)),
            },
            // Every job of it has ended: nothing to cancel.
            CancelTarget::Workflow(_) if issued => Ok(()),
            CancelTarget::Workflow(wf) => Err(Error::NotFound(wf.to_string())),
        }
    }

    pub(super) async fn propose_one(&self, command: Command) -> Result<(), Error> {
        match self.propose(vec![command]).await?.pop() {
            Some(Outcome::Applied(_)) => Ok(()),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }
}

/// The longest note a pause may carry.
const MAX_NOTE_BYTES: usize = 1024;

/// The most fires one backfill may make.
pub(crate) const MAX_BACKFILL: usize = 10_000;

/// The fire instants of `schedule` in `[from, to]`, checked: a past range of at
/// most [`MAX_BACKFILL`] fires.
fn backfill_instants(
    schedule: &Schedule,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<Vec<Timestamp>, Error> {
    if to < from {
        return Err(Error::invalid("to", format!("{to} is before from ({from}); give a range oldest first")));
    }
    if to > now {
        return Err(Error::invalid(
            "to",
            format!("{to} is in the future; a backfill runs past fires (use up to {now})"),
        ));
    }
    let cron = CronSchedule::parse(&schedule.cron, &schedule.timezone)
        .map_err(|e| Error::Rejected(Rejection::InvalidSpec(e)))?;
    let instants = cron.fires(Timestamp(from.0.saturating_sub(1)), to, MAX_BACKFILL + 1);
    if instants.len() > MAX_BACKFILL {
        return Err(Error::invalid(
            "from",
            format!("the range has more than {MAX_BACKFILL} fires of {:?}; backfill it in parts", schedule.cron),
        ));
    }
    if instants.is_empty() {
        return Err(Error::invalid("from", format!("{:?} does not fire between {from} and {to}", schedule.cron)));
    }
    Ok(instants)
}

/// The submit's event, at debug (a line per job is not for a busy cluster's
/// log): the ids it created, or why it created none.
fn log_submitted(spec: &JobSpec, result: &SubmitResult) {
    match result {
        Ok(s) => tracing::debug!(
            job = %s.job, run = s.run.map(tracing::field::display), name = %spec.name, duplicate = s.duplicate,
            "job submitted"
        ),
        Err(rejection) => tracing::debug!(name = %spec.name, reason = %rejection, "job refused"),
    }
}

/// What a submit's outcome tells its caller.
fn submitted(outcome: Outcome) -> SubmitResult {
    match outcome {
        Outcome::Applied(events) => events
            .into_iter()
            .find_map(|e| match e {
                Event::JobAccepted { job, run, duplicate } => Some(Submitted { job, run, duplicate }),
                _ => None,
            })
            .ok_or_else(|| Rejection::InvalidSpec(SpecError::new("job", "was not accepted"))),
        Outcome::Rejected(r) => Err(r),
    }
}
