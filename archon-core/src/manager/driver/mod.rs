//! The manager's driver loop. Each turn it takes every input waiting (up to a
//! batch), adds the placements the scheduler proposes for the state as it stands,
//! proposes the whole batch to the store in one call, and routes the outcomes:
//! replies to callers, assignments and cancels to worker sessions, run endings to
//! waiters and output followers. Callers' proposals other than worker reports
//! go to the store without it ([`Manager::propose`](super::Manager::propose));
//! what their outcomes ask of it reaches it as an input
//! ([`Reactions`]), handled first in its next turn.
//!
//! Turns are pipelined: while a batch is on its way to disk the driver gathers
//! and proposes the next ones (up to [`ManagerConfig::proposals_in_flight`]),
//! so batches proposed together can share an fsync, and outcomes are routed in
//! the order the batches were proposed. A batch may thus be built before the
//! ones ahead of it have applied. The state machine checks every command
//! against the state it applies to, so a command that has gone stale is
//! rejected, never misapplied; what the driver adds of its own — placements,
//! the reaper's findings, retention and cron fires — rides in at most one batch
//! in flight at a time, and is worked out from the state once the batch with
//! the previous lot has applied. Where outcomes go is in [`landing`]; worker
//! sessions — attach, detach, sending — are in [`sessions`].
//!
//! [`ManagerConfig::proposals_in_flight`]: super::ManagerConfig::proposals_in_flight

mod landing;
mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::{BoxStream, FuturesOrdered};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::explain::{EXPLAIN_EVERY, explain_unplaced};
use super::{Liveness, Shared};
use crate::error::Error;
use crate::model::{AttemptId, AttemptResult, RunId, Timestamp, WorkerId, WorkerState};
use crate::scheduler::{ClusterView, pending_runs};
use crate::state::{Command, Outcome};
use crate::store::StoreExt;
use crate::transport::{Hello, ManagerMessage, Welcome, WorkerMessage};
pub(crate) use landing::Reactions;
use landing::{Flight, Landing, Route};
use sessions::{PendingAttach, SessionTx};

type AttachReply = oneshot::Sender<Result<(Welcome, mpsc::UnboundedReceiver<ManagerMessage>), Error>>;

/// What reaches the driver.
pub(crate) enum Input {
    Propose {
        commands: Vec<Command>,
        reply: oneshot::Sender<Result<Vec<Outcome>, Error>>,
    },
    /// What a caller's proposal, made straight to the store, asks of the
    /// driver (see [`Manager::propose`](super::Manager::propose)).
    React(Reactions),
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
    /// Whether the next placement pass may look at only about as many runs as
    /// the workers' queues have room for (see [`ClusterView::queue_bound`]).
    narrow: bool,
    /// Whether the store says this manager leads (and so dispatches and reaps).
    leading: bool,
    /// Worker reports whose proposal failed (the store was unavailable): proposed
    /// again next turn, so a finished attempt is not lost and run a second time.
    carried: Vec<Input>,
    /// Proposals failed in a row; the driver backs off while the store is down.
    failures: u32,
    /// When the next housekeeping pass (retention, idempotency keys) is due.
    next_prune: Instant,
    /// A batch with the driver's own commands is on its way (see the module docs).
    exclusive_in_flight: bool,
    /// Attempts whose start reports are on their way, by how many batches.
    starts_in_flight: HashMap<AttemptId, u32>,
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
            narrow: true,
            leading: false,
            carried: Vec::new(),
            failures: 0,
            next_prune: Instant::now(),
            exclusive_in_flight: false,
            starts_in_flight: HashMap::new(),
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
        let depth = self.shared.config.proposals_in_flight.max(1);
        let mut inputs: Vec<Input> = Vec::with_capacity(1024);
        let mut in_flight: FuturesOrdered<Landing> = FuturesOrdered::new();
        loop {
            let leading = leadership.borrow_and_update().is_leader;
            if leading != self.leading {
                self.set_leading(leading);
                next_reap = Instant::now() + tick;
            }
            if !self.leading {
                // A follower dispatches nothing: callers and workers go to the leader.
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    Some((flight, result)) = in_flight.next(), if !in_flight.is_empty() => {
                        self.land(flight, result).await;
                    }
                    changed = leadership.changed() => if changed.is_err() { break },
                    input = self.rx.recv() => match input {
                        Some(input) => self.refuse(input),
                        None => break,
                    },
                }
                continue;
            }
            let room = in_flight.len() < depth;
            // The driver's own commands wait for the batch with the last lot.
            let own = room && !self.exclusive_in_flight;
            let retry_at = if own && !self.dirty { self.shared.store.query(|s| s.next_retry_at()) } else { None };
            let sleep = retry_at.map(|t| self.instant_of(t));
            // Proposals start on their first poll, so the batches on their way
            // are polled before anything else, every time round.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some((flight, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.land(flight, result).await;
                    continue;
                }
                _ = leadership.changed() => continue,
                () = std::future::ready(()), if own && self.dirty => {}
                input = self.rx.recv(), if room => match input {
                    Some(input) => inputs.push(input),
                    None => break,
                },
                _ = sleep_until_opt(sleep), if own => self.dirty = true,
                _ = sleep_until_opt(self.unexplained.then_some(self.next_explain)), if own => self.dirty = true,
                _ = tokio::time::sleep_until(next_reap), if own => {}
                _ = tokio::time::sleep_until(self.next_prune), if own => {}
                _ = tokio::time::sleep_until(self.next_tick), if own => {}
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
            let mut extra = Vec::new();
            let reap = !self.exclusive_in_flight && Instant::now() >= next_reap;
            if !self.exclusive_in_flight {
                if reap {
                    next_reap = Instant::now() + tick;
                }
                extra.extend(self.housekeeping().await);
                extra.extend(self.cron_fires());
            }
            if let Some((flight, commands)) = self.prepare(&mut inputs, reap, extra) {
                let store = self.shared.store.clone();
                in_flight.push_back(Box::pin(async move {
                    let result = store.propose(commands).await;
                    (flight, result)
                }));
            }
        }
        // Answer what is on its way before stopping.
        while let Some((flight, result)) = in_flight.next().await {
            self.land(flight, result).await;
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
            Input::React(reactions) => self.react(reactions),
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

    /// One turn's batch: placements (unless the driver's own commands are on
    /// their way already) + `extra` + the inputs, and what routing its outcomes
    /// needs. `None` when there is nothing to propose.
    fn prepare(&mut self, inputs: &mut Vec<Input>, reap: bool, extra: Vec<Command>) -> Option<(Flight, Vec<Command>)> {
        let now = self.shared.clock.now();
        let mut commands = Vec::with_capacity(inputs.len() + 16);
        let mut routes = Vec::with_capacity(inputs.len() + 16);
        let mut callers = Vec::new();
        let mut attaches = Vec::new();
        // Copies of the worker reports in this turn, kept if the proposal fails.
        let mut reports = Vec::new();
        let mut starts = Vec::new();
        let mut exclusive = reap || !extra.is_empty();
        if !self.carried.is_empty() {
            let mut carried = std::mem::take(&mut self.carried);
            carried.append(inputs);
            *inputs = carried;
        }
        // Callers' proposals that went straight to the store: what they ask
        // first, so the runs they queued are placed in this turn.
        for input in inputs.extract_if(.., |i| matches!(i, Input::React(_))) {
            if let Input::React(reactions) = input {
                self.react(reactions);
            }
        }
        // Reports a session may not make go no further; starts among them are killed.
        for (worker, run, attempt) in super::reports::screen(&self.shared, inputs) {
            self.send_to(worker, ManagerMessage::Cancel { run, attempt });
        }

        if self.dirty && !self.exclusive_in_flight {
            self.dirty = false;
            exclusive = true;
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
                        queue: hello.queue,
                    });
                }
                Input::Started { worker, run, attempt } => {
                    reports.push(Input::Started { worker, run, attempt });
                    starts.push(attempt);
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
                Input::React(reactions) => self.react(reactions),
            }
        }
        if commands.is_empty() {
            return None;
        }
        let in_flight = &self.starts_in_flight;
        let observed = super::observe::Observations::before(&self.shared, &commands, |a| in_flight.contains_key(&a));
        for attempt in &starts {
            *self.starts_in_flight.entry(*attempt).or_default() += 1;
        }
        self.exclusive_in_flight |= exclusive;
        let flight = Flight { now, routes, callers, attaches, reports, observed, exclusive, starts };
        Some((flight, commands))
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
        let narrow = self.narrow && !explain;
        let (placements, reasons, unplaced_candidates, room) = self.shared.store.query(|state| {
            let mut view = ClusterView::of(state, policy);
            view.workers.retain(|slot| connected.contains(&slot.worker.id));
            // Every worker saturated, with attempts queued: only queue room is
            // left, so look at about as many runs as it takes.
            let room = view.queue_bound();
            let limit = match room {
                Some(0) if !explain => return (Vec::new(), Vec::new(), state.queued_len(), room),
                Some(n) if narrow => limit.min(n.saturating_mul(4).max(16)),
                _ => limit,
            };
            let pending = pending_runs(state, now, limit);
            if pending.is_empty() {
                return (Vec::new(), Vec::new(), 0, room);
            }
            let placements = if view.workers.is_empty() { Vec::new() } else { scheduler.place(&view, &pending) };
            let reasons = if explain { explain_unplaced(state, &view, &pending, &placements) } else { Vec::new() };
            (placements, reasons, pending.len(), room)
        });
        // A narrow pass that left queue room unused (what it saw fits none of
        // it) is followed by a full one, so runs further back are not starved.
        self.narrow = room.is_none_or(|n| placements.len() >= n);
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
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
