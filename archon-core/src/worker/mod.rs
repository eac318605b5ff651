//! The worker runtime. A [`WorkerRuntime`] connects to a manager through a
//! [`Transport`], runs assigned attempts through its [`ExecutorRegistry`], and
//! reports their start, output and end. When the session drops it reconnects with
//! exponential backoff and full jitter, announcing the attempts it still runs;
//! reports made while disconnected wait in a bounded outbox. On shutdown it kills
//! what it runs (whole process trees) and tells the manager it is leaving, so the
//! runs are requeued rather than orphaned.
//!
//! It holds a short queue of assigned attempts beyond what runs
//! ([`WorkerConfig::queue`], announced in its hello; the manager places that many
//! beyond its free resources and accounts for them): they start first in first
//! out, each the moment the attempts ahead of it free the resources it asks for,
//! so a slot is refilled as a job exits rather than after a round trip to the
//! manager. Nothing starts over the worker's capacity. Queued attempts are not
//! announced on reconnect, so the manager requeues them, once, as it does for
//! a worker that is lost or leaves.
//!
//! It acts only while it holds a lease (the `lease` module): when no confirmed leader has
//! answered its heartbeats for a lease, it kills its attempts (except those of
//! jobs that say `on_disconnect = keep`), reports them fenced, and holds new
//! assignments until the lease is renewed — all before any manager can declare
//! it lost. [`WorkerRuntime::lease`] lets an outside keeper enforce the same
//! while the worker itself is frozen.

mod attempt;
mod backoff;
mod lease;
mod queue;
mod resend;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use backoff::Backoff;
pub use lease::LeaseView;

use crate::error::Error;
use crate::executor::{DEFAULT_TAIL_LIMIT, ExecutorRegistry, OutputSink};
use crate::metrics::Metrics;
use crate::model::{AttemptId, AttemptResult, Resources, RunId};
use crate::transport::{Assignment, Hello, ManagerMessage, Session, Transport, WorkerMessage};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique name in the cluster.
    pub name: String,
    /// Where it can be reached, for display.
    pub address: String,
    /// Labels for placement constraints.
    pub labels: BTreeMap<String, String>,
    /// What it offers.
    pub capacity: Resources,
    /// Output tail kept per stream per attempt.
    pub output_tail: usize,
    /// First reconnect delay ceiling.
    pub reconnect_base: Duration,
    /// Largest reconnect delay.
    pub reconnect_cap: Duration,
    /// Seeds the reconnect delays' jitter; `None` (the default) seeds it from
    /// the process id and the time, so workers started together spread out. A
    /// simulation gives one for repeatable runs.
    pub reconnect_seed: Option<u64>,
    /// How many reports may wait while disconnected.
    pub outbox: usize,
    /// How many assigned attempts it holds queued beyond what fits it (0:
    /// none). Each starts the moment resources free up, which keeps short jobs
    /// flowing; a queued attempt waits behind what runs here even if another
    /// worker frees up first, so workers of long jobs may want 0.
    pub queue: u32,
    /// On shutdown, how long running attempts may take to finish (the worker
    /// drains: the manager places nothing new on it) before they are killed and
    /// their runs requeued. Zero kills them at once.
    pub drain_grace: Duration,
    /// How long shutdown waits for killed attempts to end.
    pub shutdown_grace: Duration,
    /// The node's metrics the worker records into (a private registry unless
    /// given the node's).
    pub metrics: Metrics,
}

/// A worker's queue unless configured ([`WorkerConfig::queue`]).
pub const DEFAULT_QUEUE: u32 = 8;

impl WorkerConfig {
    /// A config named `name` offering `capacity`, other settings default.
    pub fn new(name: impl Into<String>, capacity: Resources) -> WorkerConfig {
        WorkerConfig {
            name: name.into(),
            address: String::new(),
            labels: BTreeMap::new(),
            capacity,
            output_tail: DEFAULT_TAIL_LIMIT,
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(10),
            reconnect_seed: None,
            outbox: 65_536,
            queue: DEFAULT_QUEUE,
            drain_grace: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            metrics: Metrics::new(),
        }
    }
}

struct Running {
    run: RunId,
    /// What it holds of the worker's capacity.
    resources: Resources,
    cancel: CancellationToken,
    /// The lease generation it started in: a lapse since fences it.
    generation: u64,
    /// Its job says `on_disconnect = keep`: a lapse leaves it running.
    keep: bool,
}

/// The attempts that run, and the sum of their requests.
#[derive(Default)]
struct RunningSet {
    attempts: BTreeMap<AttemptId, Running>,
    used: Resources,
}

impl std::ops::Deref for RunningSet {
    type Target = BTreeMap<AttemptId, Running>;

    fn deref(&self) -> &Self::Target {
        &self.attempts
    }
}

impl RunningSet {
    fn insert(&mut self, attempt: AttemptId, running: Running) {
        self.used.add(&running.resources);
        if let Some(old) = self.attempts.insert(attempt, running) {
            self.used.sub(&old.resources);
        }
    }

    fn remove(&mut self, attempt: &AttemptId) {
        if let Some(old) = self.attempts.remove(attempt) {
            self.used.sub(&old.resources);
        }
    }
}

struct Shared {
    config: WorkerConfig,
    executors: Arc<ExecutorRegistry>,
    running: Mutex<RunningSet>,
    /// Reports for the manager, across reconnects (the outbox).
    reports: mpsc::Sender<WorkerMessage>,
    /// Live output into the outbox, shared by all attempts.
    sink: Arc<dyn OutputSink>,
    /// Attempts that ended but whose `Finished` has not been handed to a session
    /// yet. A reconnecting worker announces them with its running ones, so the
    /// manager keeps them live and accepts the result instead of running them again.
    unreported: Mutex<BTreeSet<AttemptId>>,
    /// Results handed to a session lately. Nothing acknowledges them, so when the
    /// session breaks (say the manager failed over before committing them) they
    /// are sent again to the next one; a result the manager already has is
    /// rejected there as stale and changes nothing.
    recent: Mutex<resend::Resend>,
    /// Set while shutting down: killed attempts are not reported as finished,
    /// the manager requeues them when told the worker is leaving.
    leaving: CancellationToken,
    /// The output the current manager keeps per stream when a job does not say
    /// (from its welcome); the worker keeps no more than that.
    output_limit: std::sync::atomic::AtomicU64,
    /// The worker acts only while this holds.
    lease: lease::Lease,
    /// Assignments not started yet, in the order received: queued until the
    /// resources they ask for are free, or held while the lease has lapsed
    /// (until it is renewed). Dropped when the session ends: the manager then
    /// requeues them, as the worker's next hello does not announce them.
    waiting: Mutex<std::collections::VecDeque<Assignment>>,
    /// Whether holding the waiting assignments for a lapsed lease was logged:
    /// once per lapse, not at every call of `start_ready` while it lasts.
    held_logged: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn recent(&self) -> std::sync::MutexGuard<'_, resend::Resend> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers a result just handed to a session.
    fn sent(&self, run: RunId, attempt: AttemptId, result: &AttemptResult) {
        self.recent().push(tokio::time::Instant::now(), run, attempt, result.clone());
    }

    /// After a session broke: its recent results go back to the outbox, and are
    /// announced as unreported so the next manager keeps their attempts live.
    fn resend_recent(&self) {
        let recent = self.recent().take(tokio::time::Instant::now());
        if recent.is_empty() {
            return;
        }
        tracing::info!(results = recent.len(), "sending recent results again to the next manager");
        let mut unreported = self.unreported();
        for s in recent {
            unreported.insert(s.attempt);
            let _ = self.reports.try_send(WorkerMessage::Finished { run: s.run, attempt: s.attempt, result: s.result });
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, RunningSet> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unreported(&self) -> std::sync::MutexGuard<'_, BTreeSet<AttemptId>> {
        self.unreported.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease lapsed (noticed by whoever calls this): kill everything that
    /// runs; each attempt reports itself fenced when its executor returns.
    fn fence_all(&self) {
        let running = self.running();
        if running.is_empty() {
            tracing::warn!("lease lapsed: no leader heard from for a lease; nothing was running");
            return;
        }
        tracing::warn!(
            running = running.len(),
            "lease lapsed: no leader heard from for a lease; killing every attempt before the cluster places \
             them elsewhere"
        );
        for r in running.values().filter(|r| !r.keep) {
            r.cancel.cancel();
        }
        let kept = running.values().filter(|r| r.keep).count();
        if kept > 0 {
            tracing::warn!(kept, "attempts of jobs with on_disconnect = keep run on through the lapse");
        }
    }
}

/// A worker: connects, runs attempts, reconnects.
pub struct WorkerRuntime {
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    reports_rx: tokio::sync::Mutex<mpsc::Receiver<WorkerMessage>>,
}

impl std::fmt::Debug for WorkerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRuntime").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl WorkerRuntime {
    /// A worker running tasks with `executors`, reaching its manager via `transport`.
    pub fn new(config: WorkerConfig, executors: Arc<ExecutorRegistry>, transport: Arc<dyn Transport>) -> WorkerRuntime {
        let (reports, reports_rx) = mpsc::channel(config.outbox.max(1));
        let output_limit = std::sync::atomic::AtomicU64::new(config.output_tail as u64);
        config.metrics.worker();
        WorkerRuntime {
            shared: Arc::new(Shared {
                config,
                executors,
                running: Mutex::new(RunningSet::default()),
                sink: Arc::new(attempt::ReportSink { outbox: reports.clone(), dropped: Default::default() }),
                unreported: Mutex::new(BTreeSet::new()),
                recent: Mutex::new(resend::Resend::default()),
                output_limit,
                reports,
                leaving: CancellationToken::new(),
                lease: lease::Lease::new(),
                waiting: Mutex::new(std::collections::VecDeque::new()),
                held_logged: std::sync::atomic::AtomicBool::new(false),
            }),
            transport,
            reports_rx: tokio::sync::Mutex::new(reports_rx),
        }
    }

    /// How many attempts run now.
    pub fn running_count(&self) -> usize {
        self.shared.running().len()
    }

    /// Follows the worker's lease: an outside keeper kills what the worker
    /// started when it ends, so a frozen worker cannot outlive it.
    pub fn lease(&self) -> tokio::sync::watch::Receiver<LeaseView> {
        self.shared.lease.watch()
    }

    /// An outside keeper follows the lease: from now on the worker counts on
    /// its lease only up to what [`WorkerRuntime::lease_kept`] last said the
    /// keeper enforces, so nothing the keeper kills is reported as a failure.
    /// Call before [`WorkerRuntime::run`].
    pub fn attach_lease_keeper(&self) {
        self.shared.lease.attach_keeper();
    }

    /// The keeper now enforces `until` (`None`: no lease).
    pub fn lease_kept(&self, until: Option<tokio::time::Instant>) {
        if self.shared.lease.kept(until) {
            self.shared.fence_all();
        }
        self.shared.start_ready();
    }

    /// Runs until `shutdown` fires: connect, serve, reconnect with backoff. On
    /// shutdown, kills running attempts and tells the manager it is leaving.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut reports = self.reports_rx.lock().await;
        let seed = self.shared.config.reconnect_seed.unwrap_or_else(|| {
            std::process::id() as u64 ^ crate::clock::Clock::now(&crate::clock::SystemClock).0 as u64
        });
        let mut backoff = Backoff::new(self.shared.config.reconnect_base, self.shared.config.reconnect_cap, seed);
        let mut session: Option<Session> = None;
        let watching = tokio::spawn(watch_lease(self.shared.clone(), shutdown.child_token()));
        while !shutdown.is_cancelled() {
            let hello = self.hello();
            let hello_sent = tokio::time::Instant::now();
            let connected = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.transport.connect(hello) => r,
            };
            match connected {
                Ok(s) if s.welcome.protocol > crate::transport::PROTOCOL => {
                    let delay = backoff.next_delay();
                    tracing::error!(
                        manager_protocol = s.welcome.protocol,
                        worker_protocol = crate::transport::PROTOCOL,
                        retry_in = ?delay,
                        "the manager speaks a newer session protocol than this worker; upgrade the worker"
                    );
                    drop(s);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Ok(s) => {
                    backoff.reset();
                    if self.shared.lease.welcome(s.welcome.lease, hello_sent) {
                        self.shared.fence_all();
                    }
                    let limit = (s.welcome.output_limit as usize).min(self.shared.config.output_tail);
                    if limit > 0 {
                        self.shared.output_limit.store(limit as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    tracing::info!(worker = %s.welcome.worker, name = %self.shared.config.name, "connected to manager");
                    for attempt in &s.welcome.stale {
                        self.kill(*attempt, "stale after reconnect");
                    }
                    let mut s = s;
                    let span = session_span(&s);
                    let ended = self.serve(&mut s, &mut reports, &shutdown).instrument(span).await;
                    session = Some(s);
                    if ended == SessionEnd::Shutdown {
                        break;
                    }
                    session = None;
                    let dropped = std::mem::take(&mut *self.shared.waiting());
                    if !dropped.is_empty() {
                        tracing::info!(
                            assignments = dropped.len(),
                            "dropping assignments not started; the manager requeues them"
                        );
                    }
                    self.shared.resend_recent();
                    tracing::warn!("manager session ended; reconnecting");
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot reach manager");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if let Some(s) = session.as_mut() {
            let span = session_span(s);
            self.drain(s, &mut reports).instrument(span).await;
        }
        self.leave(session, &mut reports).await;
        watching.abort();
        Ok(())
    }

    /// Tells the manager the worker is draining, then keeps serving (reports,
    /// heartbeats, cancels) until nothing runs or the drain grace is over.
    async fn drain(&self, session: &mut Session, reports: &mut mpsc::Receiver<WorkerMessage>) {
        let grace = self.shared.config.drain_grace;
        if grace.is_zero() || self.running_count() == 0 {
            return;
        }
        if session.outbound.send(WorkerMessage::Draining).await.is_err() {
            return;
        }
        tracing::info!(running = self.running_count(), ?grace, "draining: letting running attempts finish");
        let deadline = tokio::time::Instant::now() + grace;
        let mut heartbeat = tokio::time::interval(session.welcome.heartbeat_interval.max(Duration::from_millis(10)));
        let mut check = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(running = self.running_count(), "drain grace over; killing what is left");
                    return;
                }
                msg = session.inbound.recv() => match msg {
                    // Sent before the manager applied the drain: run it like any other.
                    Some(ManagerMessage::Assign(batch)) => self.shared.assigned(batch),
                    Some(ManagerMessage::Cancel { attempt, .. }) => self.kill(attempt, "cancelled by the manager"),
                    Some(ManagerMessage::Lease { seq }) => self.renewed(seq),
                    None => return,
                },
                Some(first) = reports.recv() => {
                    if !forward(session, first, reports, &self.shared).await {
                        return;
                    }
                }
                _ = heartbeat.tick() => {
                    let running = u32::try_from(self.running_count()).unwrap_or(u32::MAX);
                    let seq = self.shared.lease.heartbeat();
                    if session.outbound.send(WorkerMessage::Heartbeat { running, seq }).await.is_err() {
                        return;
                    }
                }
                _ = check.tick() => {
                    if self.running_count() == 0 {
                        return;
                    }
                }
            }
        }
    }

    fn hello(&self) -> Hello {
        let c = &self.shared.config;
        Hello {
            protocol: crate::transport::PROTOCOL,
            name: c.name.clone(),
            address: c.address.clone(),
            labels: c.labels.clone(),
            capacity: c.capacity.clone(),
            capabilities: self.shared.executors.capability_set(),
            queue: c.queue,
            running: {
                let mut running: Vec<AttemptId> = self.shared.running().keys().copied().collect();
                running.extend(self.shared.unreported().iter().copied());
                running.sort_unstable();
                running.dedup();
                running
            },
        }
    }

    async fn serve(
        &self,
        session: &mut Session,
        reports: &mut mpsc::Receiver<WorkerMessage>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let mut heartbeat = tokio::time::interval(session.welcome.heartbeat_interval.max(Duration::from_millis(10)));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A report taken from the outbox but not delivered goes first next time.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return SessionEnd::Shutdown,
                msg = session.inbound.recv() => match msg {
                    Some(ManagerMessage::Assign(batch)) => self.shared.assigned(batch),
                    Some(ManagerMessage::Cancel { attempt, .. }) => self.kill(attempt, "cancelled by the manager"),
                    Some(ManagerMessage::Lease { seq }) => self.renewed(seq),
                    None => return SessionEnd::Lost,
                },
                Some(first) = reports.recv() => {
                    if !forward(session, first, reports, &self.shared).await {
                        return SessionEnd::Lost;
                    }
                }
                _ = heartbeat.tick() => {
                    let running = u32::try_from(self.running_count()).unwrap_or(u32::MAX);
                    let seq = self.shared.lease.heartbeat();
                    if session.outbound.send(WorkerMessage::Heartbeat { running, seq }).await.is_err() {
                        return SessionEnd::Lost;
                    }
                }
            }
        }
    }

    fn renewed(&self, seq: u64) {
        if self.shared.lease.renewed(seq) {
            self.shared.fence_all();
        }
        self.shared.start_ready();
    }

    fn kill(&self, attempt: AttemptId, why: &str) {
        if self.shared.cancel_waiting(attempt, why) {
            return;
        }
        if let Some(r) = self.shared.running().get(&attempt) {
            tracing::info!(%attempt, run = %r.run, why, "killing attempt");
            r.cancel.cancel();
        }
    }

    /// Kills everything, waits (bounded) for it to die, flushes reports and says goodbye.
    async fn leave(&self, session: Option<Session>, reports: &mut mpsc::Receiver<WorkerMessage>) {
        self.shared.leaving.cancel();
        let tokens: Vec<CancellationToken> = self.shared.running().values().map(|r| r.cancel.clone()).collect();
        for t in &tokens {
            t.cancel();
        }
        let deadline = tokio::time::Instant::now() + self.shared.config.shutdown_grace;
        while self.running_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(mut session) = session {
            while let Ok(report) = reports.try_recv() {
                if session.outbound.send(report).await.is_err() {
                    return;
                }
            }
            let _ = session.outbound.send(WorkerMessage::Leaving).await;
            // Close our side and wait (bounded) for the manager to close its side, so
            // the goodbye is on the wire before the process exits.
            drop(session.outbound);
            let _ =
                tokio::time::timeout(Duration::from_secs(3), async { while session.inbound.recv().await.is_some() {} })
                    .await;
        }
    }
}

/// Sends `first` and whatever else waits in the outbox (up to a batch) to the
/// manager. A `Started` whose `Finished` is in the same batch is left out: finishing
/// an assigned attempt implies its start, and fast jobs save a message and a
/// command. Returns false when the session is gone; undelivered reports go back
/// to the outbox for the next session.
async fn forward(
    session: &Session,
    first: WorkerMessage,
    reports: &mut mpsc::Receiver<WorkerMessage>,
    shared: &Shared,
) -> bool {
    let mut batch = vec![first];
    while batch.len() < 1024 {
        match reports.try_recv() {
            Ok(report) => batch.push(report),
            Err(_) => break,
        }
    }
    let finished: std::collections::HashSet<AttemptId> = batch
        .iter()
        .filter_map(|r| match r {
            WorkerMessage::Finished { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    let mut pending = batch.into_iter();
    while let Some(report) = pending.next() {
        if let WorkerMessage::Started { attempt, .. } = &report
            && finished.contains(attempt)
        {
            continue;
        }
        let finished = match &report {
            WorkerMessage::Finished { run, attempt, result } => {
                shared.sent(*run, *attempt, result);
                Some(*attempt)
            }
            _ => None,
        };
        if let Err(mpsc::error::SendError(report)) = session.outbound.send(report).await {
            for undelivered in std::iter::once(report).chain(pending) {
                let _ = shared.reports.try_send(undelivered);
            }
            return false;
        }
        if let Some(attempt) = finished {
            shared.unreported().remove(&attempt);
        }
    }
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    Shutdown,
    Lost,
}

/// The span of one manager session: its events carry the worker's id. Error
/// level, as the attempts' spans inside it.
fn session_span(session: &Session) -> tracing::Span {
    tracing::error_span!("session", worker = %session.welcome.worker)
}

/// Kills what runs when the lease ends unrenewed, whether or not a session is
/// open (a worker cut off from every manager is the case it is for).
async fn watch_lease(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut view = shared.lease.watch();
    loop {
        let until = shared.lease.until();
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
            () = sleep_until_opt(until) => {
                if shared.lease.check() {
                    shared.fence_all();
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
