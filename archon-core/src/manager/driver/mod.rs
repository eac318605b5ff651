//! The manager's driver loop. Each turn it takes every input waiting (up to a
//! batch), adds the placements the scheduler proposes for the state as it stands,
//! proposes the whole batch to the store in one call, and routes the outcomes:
//! replies to callers, assignments and cancels to worker sessions, run endings to
//! waiters and output followers. Only this loop proposes, so the state it places
//! against is exactly the state the batch applies to. Worker sessions — attach,
//! detach, sending — are in [`sessions`].

mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::stream::BoxStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::explain::{EXPLAIN_EVERY, explain_unplaced};
use super::parents;
use super::{Liveness, Shared};
use crate::error::Error;
use crate::model::{AttemptId, AttemptResult, RunId, RunState, Timestamp, WorkerId, WorkerState};
use crate::scheduler::{ClusterView, pending_runs};
use crate::state::{Command, Event, Outcome, Rejection};
use crate::store::StoreExt;
use crate::transport::{Assignment, Hello, ManagerMessage, Welcome, WorkerMessage};
use sessions::{PendingAttach, SessionTx};

type AttachReply = oneshot::Sender<Result<(Welcome, mpsc::UnboundedReceiver<ManagerMessage>), Error>>;

/// What reaches the driver.
pub(crate) enum Input {
    Propose {
        commands: Vec<Command>,
        reply: oneshot::Sender<Result<Vec<Outcome>, Error>>,
    },
    Attach {
        hello: Hello,
        incoming: BoxStream<'static, WorkerMessage>,
        reply: AttachReply,
    },
    Started {
        worker: WorkerId,
        run: RunId,
        attempt: AttemptId,
    },
    Finished {
        worker: WorkerId,
        run: RunId,
        attempt: AttemptId,
        result: AttemptResult,
    },
    /// The worker killed the attempt when its lease lapsed.
    Fenced {
        worker: WorkerId,
        run: RunId,
        attempt: AttemptId,
    },
    Draining {
        worker: WorkerId,
    },
    Leaving {
        worker: WorkerId,
    },
    Detached {
        worker: WorkerId,
        session: u64,
    },
}

/// Where the outcome of each proposed command goes.
enum Route {
    None,
    /// Part of a caller's proposal: the caller's slot.
    Caller(usize),
    /// A worker's registration.
    Attach(usize),
    /// A worker's start report: a stale one gets its attempt killed.
    Start(WorkerId),
}

pub(crate) struct Driver {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Input>,
    sessions: BTreeMap<WorkerId, SessionTx>,
    next_session: u64,
    /// Placement may be possible: new runs, freed capacity, new workers.
    dirty: bool,
    /// When the next placement pass records why runs stay pending.
    next_explain: Instant,
    /// A pass left runs pending without explaining them (rate limit).
    unexplained: bool,
    /// Whether the store says this manager leads (and so dispatches and reaps).
    leading: bool,
    /// Worker reports whose proposal failed (the store was unavailable): proposed
    /// again next turn, so a finished attempt is not lost and run a second time.
    carried: Vec<Input>,
    /// Proposals failed in a row; the driver backs off while the store is down.
    failures: u32,
    /// When the next housekeeping pass (retention, idempotency keys) is due.
    next_prune: Instant,
    /// The cron ticker while leading, and when it next looks for due fires.
    ticker: Option<super::cron::Ticker>,
    next_tick: Instant,
}

/// Output up to this size (as JSON) travels inside its `FinishAttempt`; more goes
/// ahead of it in `AttemptOutput` chunks.
const INLINE_OUTPUT: usize = 256 << 10;

impl Input {
    /// About how many bytes of log the input becomes.
    fn size_hint(&self) -> usize {
        match self {
            Input::Propose { commands, .. } => commands.iter().map(Command::size_hint).sum(),
            Input::Finished { result, .. } => {
                256 + crate::model::output_json_len(&result.stdout.data)
                    + crate::model::output_json_len(&result.stderr.data)
            }
            Input::Attach { hello, .. } => {
                512 + hello.labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + hello.running.len() * 21
            }
            _ => 160,
        }
    }
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, rx: mpsc::Receiver<Input>) -> Driver {
        Driver {
            shared,
            rx,
            sessions: BTreeMap::new(),
            next_session: 0,
            dirty: true,
            next_explain: Instant::now(),
            unexplained: false,
            leading: false,
            carried: Vec::new(),
            failures: 0,
            next_prune: Instant::now(),
            ticker: None,
            next_tick: Instant::now(),
        }
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut leadership = self.shared.store.leadership();
        let tick = (self.shared.config.worker_timeout / 4).max(std::time::Duration::from_millis(50));
        let mut next_reap = Instant::now() + tick;
        let max_batch = self.shared.config.max_batch.max(1);
        let max_bytes = self.shared.config.max_batch_bytes.max(1);
        let mut inputs: Vec<Input> = Vec::with_capacity(1024);
        loop {
            let leading = leadership.borrow_and_update().is_leader;
            if leading != self.leading {
                self.set_leading(leading);
                next_reap = Instant::now() + tick;
            }
            if !self.leading {
                // A follower dispatches nothing: callers and workers go to the leader.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    changed = leadership.changed() => if changed.is_err() { break },
                    input = self.rx.recv() => match input {
                        Some(input) => self.refuse(input),
                        None => break,
                    },
                }
                continue;
            }
            if !self.dirty {
                let retry_at = self.shared.store.query(|s| s.next_retry_at());
                let sleep = retry_at.map(|t| self.instant_of(t));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    input = self.rx.recv() => match input {
                        Some(input) => inputs.push(input),
                        None => break,
                    },
                    _ = sleep_until_opt(sleep) => self.dirty = true,
                    _ = sleep_until_opt(self.unexplained.then_some(self.next_explain)) => self.dirty = true,
                    _ = tokio::time::sleep_until(next_reap) => {}
                    _ = tokio::time::sleep_until(self.next_prune) => {}
                    _ = tokio::time::sleep_until(self.next_tick) => {}
                    _ = leadership.changed() => continue,
                }
            } else if shutdown.is_cancelled() {
                break;
            }
            // A turn is one proposal: bounded in commands and in bytes, so that
            // no log entry outgrows what replication can carry.
            let mut bytes: usize = inputs.iter().map(Input::size_hint).sum();
            while inputs.len() < max_batch && bytes < max_bytes {
                match self.rx.try_recv() {
                    Ok(input) => {
                        bytes += input.size_hint();
                        inputs.push(input);
                    }
                    Err(_) => break,
                }
            }
            let reap = Instant::now() >= next_reap;
            if reap {
                next_reap = Instant::now() + tick;
            }
            let mut extra: Vec<Command> = self.housekeeping().await.into_iter().collect();
            extra.extend(self.cron_fires());
            self.turn(&mut inputs, reap, extra).await;
        }
        Ok(())
    }

    /// The cron ticker's pass, when due: the fires due now.
    fn cron_fires(&mut self) -> Vec<Command> {
        let now = Instant::now();
        if now < self.next_tick {
            return Vec::new();
        }
        let Some(ticker) = self.ticker.as_mut() else { return Vec::new() };
        let clock = self.shared.clock.now();
        let (fires, next_due) = self.shared.store.query(|s| ticker.due(s, clock));
        let idle = now + super::cron::IDLE_TICK;
        self.next_tick = next_due.map_or(idle, |t| (Instant::now() + t.since(clock)).min(idle));
        fires
    }

    /// The retention pass, when due: what the policy removes now.
    async fn housekeeping(&mut self) -> Option<Command> {
        let now = Instant::now();
        if now < self.next_prune {
            return None;
        }
        self.next_prune = now + self.shared.config.prune_interval();
        match super::prune::due(&self.shared, self.shared.clock.now()).await {
            Ok((command, more)) => {
                if more {
                    // A full batch: go on next turn rather than next interval.
                    self.next_prune = now;
                }
                command
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history for retention; trying again later");
                None
            }
        }
    }

    /// The commands for a finished attempt's report: its output cut to what its
    /// job keeps, in chunks ahead of the `FinishAttempt` when too large to go inside it.
    fn finish_commands(
        &self,
        now: Timestamp,
        run: RunId,
        attempt: AttemptId,
        mut result: AttemptResult,
        keep: u64,
    ) -> Vec<Command> {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        for stream in crate::model::OutputStream::BOTH {
            let tail = result.tail_mut(stream);
            if tail.data.len() > keep {
                let dropped = tail.data.len() - keep;
                tail.data = tail.data.slice(dropped..);
                tail.truncated += dropped as u64;
            }
        }
        let inline =
            crate::model::output_json_len(&result.stdout.data) + crate::model::output_json_len(&result.stderr.data);
        let mut commands = Vec::new();
        if inline > INLINE_OUTPUT {
            let chunk = self.shared.config.limits.max_output_chunk.clamp(1, INLINE_OUTPUT);
            for stream in crate::model::OutputStream::BOTH {
                let data = std::mem::take(&mut result.tail_mut(stream).data);
                let mut offset = 0;
                while offset < data.len() {
                    let end = (offset + chunk).min(data.len());
                    commands.push(Command::AttemptOutput {
                        at: now,
                        run,
                        attempt,
                        stream,
                        offset: offset as u64,
                        data: data.slice(offset..end),
                    });
                    offset = end;
                }
            }
        }
        commands.push(Command::FinishAttempt { at: now, run, attempt, result });
        commands
    }

    /// Starts or stops the leader-only parts: dispatch, placement and the reaper.
    fn set_leading(&mut self, leading: bool) {
        self.leading = leading;
        if leading {
            tracing::info!("leading: dispatching, reaping and firing schedules");
            self.dirty = true;
            self.grant_grace();
            self.ticker = Some(super::cron::Ticker::default());
            self.next_tick = Instant::now();
        } else {
            tracing::info!("not leading: closing worker sessions so workers find the leader");
            self.sessions.clear();
            self.shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
            self.shared.pending_reasons().clear();
            self.dirty = false;
            self.ticker = None;
            // The new leader hears them again from the workers.
            self.carried.clear();
        }
    }

    /// Answers an input that reached a follower.
    fn refuse(&mut self, input: Input) {
        let leader = self.shared.store.leadership().borrow().leader.clone();
        match input {
            Input::Propose { reply, .. } => {
                let _ = reply.send(Err(Error::NotLeader { leader }));
            }
            Input::Attach { reply, .. } => {
                let _ = reply.send(Err(Error::NotLeader { leader }));
            }
            Input::Detached { worker, session } => self.detach(worker, session),
            // From a session of a past leadership: the worker re-reports to the leader.
            Input::Started { .. }
            | Input::Finished { .. }
            | Input::Fenced { .. }
            | Input::Draining { .. }
            | Input::Leaving { .. } => {}
        }
    }

    /// Gives every known worker a fresh grace period (on gaining leadership).
    fn grant_grace(&self) {
        let now = self.shared.clock.now();
        let heard = Instant::now();
        let ids: Vec<WorkerId> = self.shared.store.query(|s| {
            s.workers()
                .values()
                .filter(|w| matches!(w.state, WorkerState::Ready | WorkerState::Draining))
                .map(|w| w.id)
                .collect()
        });
        let mut live = self.shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in ids {
            let l = live.entry(id).or_insert(Liveness { last_seen: now, heard, connected: false });
            l.last_seen = now;
            l.heard = heard;
        }
    }

    fn instant_of(&self, t: Timestamp) -> Instant {
        let now = self.shared.clock.now();
        Instant::now() + t.since(now)
    }

    /// One turn: placements + inputs → one proposal → routed outcomes.
    async fn turn(&mut self, inputs: &mut Vec<Input>, reap: bool, extra: Vec<Command>) {
        let now = self.shared.clock.now();
        let mut commands = Vec::with_capacity(inputs.len() + 16);
        let mut routes = Vec::with_capacity(inputs.len() + 16);
        let mut callers = Vec::new();
        let mut attaches = Vec::new();
        // Copies of the worker reports in this turn, kept if the proposal fails.
        let mut reports = Vec::new();
        if !self.carried.is_empty() {
            let mut carried = std::mem::take(&mut self.carried);
            carried.append(inputs);
            *inputs = carried;
        }
        // Reports a session may not make go no further; starts among them are killed.
        for (worker, run, attempt) in super::reports::screen(&self.shared, inputs) {
            self.send_to(worker, ManagerMessage::Cancel { run, attempt });
        }

        if self.dirty {
            self.dirty = false;
            for p in self.place(now) {
                commands.push(Command::AssignAttempt { at: now, run: p.run, worker: p.worker });
                routes.push(Route::None);
            }
        }
        for command in extra {
            commands.push(command);
            routes.push(Route::None);
        }
        // What each finished attempt's job keeps of its output, in one read.
        let shared = self.shared.clone();
        let limits = &shared.config.limits;
        let keeps: HashMap<RunId, u64> = shared.store.query(|s| {
            inputs
                .iter()
                .filter_map(|i| match i {
                    Input::Finished { run, .. } => Some(*run),
                    _ => None,
                })
                .map(|run| {
                    let spec = s.run(run).and_then(|r| s.job(r.job)).map(|j| j.spec.clone());
                    (run, spec.map_or(limits.output_limit, |spec| limits.output_limit_for(&spec)))
                })
                .collect()
        });
        if reap {
            for worker in self.silent_workers() {
                tracing::warn!(%worker, "worker silent past the threshold; declaring it lost");
                commands.push(Command::WorkerLost { at: now, worker });
                routes.push(Route::None);
            }
        }
        for input in inputs.drain(..) {
            match input {
                Input::Propose { commands: cmds, reply } => {
                    let slot = callers.len();
                    routes.extend(cmds.iter().map(|_| Route::Caller(slot)));
                    callers.push((reply, Vec::with_capacity(cmds.len())));
                    commands.extend(cmds);
                }
                Input::Attach { hello, incoming, reply } => {
                    if let Some(msg) = self.duplicate(&hello) {
                        let _ = reply.send(Err(Error::invalid("worker name", msg)));
                        continue;
                    }
                    if let Err(e) = self.shared.config.limits.check_hello(&hello) {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    if hello.protocol > crate::transport::PROTOCOL {
                        let _ = reply.send(Err(Error::invalid(
                            "protocol",
                            format!(
                                "the worker speaks session protocol {}, this manager {}: upgrade the managers before \
                                 the workers",
                                hello.protocol,
                                crate::transport::PROTOCOL
                            ),
                        )));
                        continue;
                    }
                    routes.push(Route::Attach(attaches.len()));
                    attaches.push(Some(PendingAttach { incoming, reply }));
                    commands.push(Command::RegisterWorker {
                        at: now,
                        name: hello.name,
                        address: hello.address,
                        labels: hello.labels,
                        capacity: hello.capacity,
                        capabilities: hello.capabilities,
                        running: hello.running,
                    });
                }
                Input::Started { worker, run, attempt } => {
                    reports.push(Input::Started { worker, run, attempt });
                    routes.push(Route::Start(worker));
                    commands.push(Command::StartAttempt { at: now, run, attempt });
                }
                Input::Finished { worker, run, attempt, result } => {
                    reports.push(Input::Finished { worker, run, attempt, result: result.clone() });
                    let keep = keeps.get(&run).copied().unwrap_or(limits.output_limit);
                    for command in self.finish_commands(now, run, attempt, result, keep) {
                        routes.push(Route::None);
                        commands.push(command);
                    }
                }
                Input::Fenced { worker, run, attempt } => {
                    tracing::info!(%worker, %run, %attempt, "the worker's lease lapsed and it killed the attempt; requeueing");
                    self.shared.metrics.manager().fenced();
                    reports.push(Input::Fenced { worker, run, attempt });
                    routes.push(Route::None);
                    // As for a lost worker: requeued, no retry spent.
                    let result = AttemptResult::status(crate::model::ExitStatus::Lost);
                    commands.push(Command::FinishAttempt { at: now, run, attempt, result });
                }
                Input::Draining { worker } => {
                    reports.push(Input::Draining { worker });
                    routes.push(Route::None);
                    commands.push(Command::SetDraining { at: now, worker, draining: true });
                }
                Input::Leaving { worker } => {
                    reports.push(Input::Leaving { worker });
                    routes.push(Route::None);
                    commands.push(Command::WorkerLeft { at: now, worker });
                }
                Input::Detached { worker, session } => self.detach(worker, session),
            }
        }
        if commands.is_empty() {
            return;
        }

        let observed = super::observe::Observations::before(&self.shared, &commands);
        let outcomes = match self.shared.store.propose(commands).await {
            Ok(outcomes) => {
                self.failures = 0;
                outcomes
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                if self.failures == 1 || self.failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures = self.failures, "proposal failed; worker reports are kept");
                }
                self.carried = reports;
                for (reply, _) in callers {
                    let _ = reply.send(Err(e.clone()));
                }
                for a in attaches.into_iter().flatten() {
                    let _ = a.reply.send(Err(e.clone()));
                }
                // Placements may have been lost with the batch; try again next turn,
                // after a pause that grows while the store stays down.
                self.dirty = true;
                let pause = std::time::Duration::from_millis(50 << self.failures.min(5));
                tokio::time::sleep(pause).await;
                return;
            }
        };

        observed.after(&self.shared, &outcomes);
        let mut reactions = Reactions::default();
        for (outcome, route) in outcomes.into_iter().zip(routes) {
            super::lifecycle::log(&outcome);
            reactions.observe(&outcome, &mut self.dirty);
            match route {
                Route::None => {}
                Route::Caller(slot) => callers[slot].1.push(outcome),
                Route::Attach(slot) => {
                    if let Some(pending) = attaches[slot].take() {
                        self.finish_attach(pending, outcome, now);
                    }
                }
                Route::Start(worker) => {
                    if let Outcome::Rejected(Rejection::StaleAttempt { run, attempt }) = outcome {
                        self.send_to(worker, ManagerMessage::Cancel { run, attempt });
                    }
                }
            }
        }
        for (reply, outcomes) in callers {
            let _ = reply.send(Ok(outcomes));
        }
        self.react(reactions);
    }

    fn place(&mut self, now: Timestamp) -> Vec<crate::scheduler::Placement> {
        let limit = self.shared.config.max_placements_per_pass;
        let policy = self.shared.config.placement;
        let scheduler = self.shared.scheduler.clone();
        let explain = Instant::now() >= self.next_explain;
        // Only workers with a session here: one that has not (re)connected to this
        // manager yet — say just after a failover — would never get the assignment.
        let connected: std::collections::HashSet<WorkerId> =
            self.sessions.iter().filter(|(_, s)| !s.tx.is_closed()).map(|(id, _)| *id).collect();
        let (placements, reasons, unplaced_candidates) = self.shared.store.query(|state| {
            let pending = pending_runs(state, now, limit);
            if pending.is_empty() {
                return (Vec::new(), Vec::new(), 0);
            }
            let mut view = ClusterView::of(state, policy);
            view.workers.retain(|slot| connected.contains(&slot.worker.id));
            let placements = if view.workers.is_empty() { Vec::new() } else { scheduler.place(&view, &pending) };
            let reasons = if explain { explain_unplaced(state, &view, &pending, &placements) } else { Vec::new() };
            (placements, reasons, pending.len())
        });
        if explain {
            self.next_explain = Instant::now() + EXPLAIN_EVERY;
            self.unexplained = false;
            for (run, reason) in &reasons {
                tracing::debug!(run = %run, reason = %reason, "run stays pending");
            }
            let mut map = self.shared.pending_reasons();
            map.clear();
            map.extend(reasons);
        } else if placements.len() < unplaced_candidates {
            // Runs stay pending unexplained: come back when explaining is due.
            self.unexplained = true;
        }
        for p in &placements {
            tracing::debug!(run = %p.run, worker = %p.worker, "run placed");
        }
        placements
    }

    fn silent_workers(&self) -> Vec<WorkerId> {
        let timeout = self.shared.config.worker_timeout;
        let now = Instant::now();
        let live = self.shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.shared.store.query(|s| {
            s.workers()
                .values()
                .filter(|w| matches!(w.state, WorkerState::Ready | WorkerState::Draining))
                .filter(|w| live.get(&w.id).is_none_or(|l| now.duration_since(l.heard) > timeout))
                .map(|w| w.id)
                .collect()
        })
    }

    fn react(&mut self, r: Reactions) {
        if !r.assigned.is_empty() {
            self.shared.hub.open(r.assigned.iter().map(|(run, attempt, _)| (*run, *attempt)));
            // Ordered maps, so assignments go out in one order run after run (the
            // deterministic simulation replays a seed to the same trace).
            let mut by_worker: BTreeMap<WorkerId, Vec<Assignment>> = BTreeMap::new();
            let mut with_parents: Vec<(WorkerId, Assignment, parents::Parents)> = Vec::new();
            self.shared.store.query(|s| {
                for (run_id, attempt, worker) in &r.assigned {
                    let Some(run) = s.run(*run_id) else { continue };
                    // A later command of the same batch may have ended the attempt
                    // already (its worker re-registered without it): don't send it.
                    if run.current_attempt != Some(*attempt) {
                        continue;
                    }
                    let Some(job) = s.job(run.job) else { continue };
                    let assignment =
                        Assignment { job: job.id, run: *run_id, attempt: *attempt, spec: job.spec.clone() };
                    match parents::of(s, job.id) {
                        Some(parents) => with_parents.push((*worker, assignment, parents)),
                        None => by_worker.entry(*worker).or_default().push(assignment),
                    }
                }
            });
            // Workflow nodes with parents get their results, read from the
            // history off the driver's turn (one task per turn, the nodes'
            // documents read concurrently), then their assignments, batched
            // per worker as the others are.
            if !with_parents.is_empty() {
                let mut sessions: BTreeMap<WorkerId, mpsc::UnboundedSender<ManagerMessage>> = BTreeMap::new();
                for (worker, _, _) in &with_parents {
                    if let Some(s) = self.sessions.get(worker) {
                        sessions.insert(*worker, s.tx.clone());
                    }
                }
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    let attached =
                        futures::future::join_all(with_parents.into_iter().map(|(worker, mut assignment, parents)| {
                            let shared = shared.clone();
                            async move {
                                parents::attach(&shared, &mut assignment, &parents).await;
                                (worker, assignment)
                            }
                        }))
                        .await;
                    let mut batches: BTreeMap<WorkerId, Vec<Assignment>> = BTreeMap::new();
                    for (worker, assignment) in attached {
                        batches.entry(worker).or_default().push(assignment);
                    }
                    for (worker, batch) in batches {
                        if let Some(tx) = sessions.get(&worker) {
                            log_sent(worker, &batch);
                            let _ = tx.send(ManagerMessage::Assign(batch));
                        }
                    }
                });
            }
            for (worker, batch) in by_worker {
                log_sent(worker, &batch);
                self.send_to(worker, ManagerMessage::Assign(batch));
            }
        }
        for (run, attempt, worker) in r.cancels {
            self.send_to(worker, ManagerMessage::Cancel { run, attempt });
        }
        for worker in r.lost {
            if self.close_session(worker) {
                tracing::info!(%worker, "closing the lost worker's session");
            }
        }
        if !r.finished.is_empty() {
            self.shared.hub.close(&r.finished);
            let _ = self.shared.finished.send(r.finished.into());
        }
    }
}

/// What the outcomes of a turn ask the driver to do.
#[derive(Default)]
struct Reactions {
    assigned: Vec<(RunId, AttemptId, WorkerId)>,
    cancels: Vec<(RunId, AttemptId, WorkerId)>,
    finished: Vec<RunId>,
    /// Workers just declared lost: their sessions close, so a worker that is in
    /// fact alive (it was cut off or frozen) registers again.
    lost: Vec<WorkerId>,
}

impl Reactions {
    fn observe(&mut self, outcome: &Outcome, dirty: &mut bool) {
        for event in outcome.events() {
            match event {
                Event::AttemptAssigned { run, attempt, worker } => self.assigned.push((*run, *attempt, *worker)),
                Event::CancelRequested { run, attempt, worker } => self.cancels.push((*run, *attempt, *worker)),
                Event::RunFinished { run, .. } => self.finished.push(*run),
                Event::WorkerStateChanged { worker, state: WorkerState::Lost } => {
                    self.lost.push(*worker);
                    *dirty = true;
                }
                Event::RunCreated { state: RunState::Pending, .. }
                | Event::RunQueued { .. }
                | Event::AttemptEnded { .. }
                | Event::WorkerRegistered { .. }
                | Event::WorkerStateChanged { .. } => *dirty = true,
                _ => {}
            }
        }
    }
}

/// One debug event per assignment handed to a worker's session.
fn log_sent(worker: WorkerId, batch: &[Assignment]) {
    for a in batch {
        tracing::debug!(
            run = %a.run, job = %a.job, attempt = %a.attempt, worker = %worker, "assignment sent to the worker"
        );
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
