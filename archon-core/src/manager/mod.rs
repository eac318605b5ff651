//! The manager runtime. A [`Manager`] owns no state of its own: it turns API calls
//! and worker reports into [`Command`]s, proposes them to the [`Store`] in batches
//! (one group commit per turn of its driver loop), asks the [`Scheduler`] where
//! pending runs go, and pushes assignments and cancels down worker sessions.
//! Liveness of workers is leader-local soft state; the reaper turns silence
//! past the threshold into a `WorkerLost` command. A worker's reports are
//! checked against the session they came on before anything is proposed: a
//! session reports only on its own worker's attempts, and never as `Lost`.

mod api_impl;
mod cron;
mod driver;
mod explain;
mod leases;
mod lifecycle;
mod limits;
mod observe;
mod output_hub;
mod parents;
mod prune;
mod queries;
mod reports;
mod session;
mod timeline;
mod tokens;
mod workflows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::history::History;
use crate::metrics::Metrics;
use crate::model::{PlacementPolicy, RunId, Timestamp, WorkerId};
use crate::scheduler::{BinPack, Scheduler};
use crate::state::{Command, Outcome};
use crate::store::Store;
use crate::transport::{Hello, ManagerMessage, Welcome, WorkerMessage};

use driver::Input;
pub use limits::Limits;
use output_hub::OutputHub;
pub use parents::{PARENTS_ENV, PARENTS_LIMIT};
pub use timeline::{TIMELINE_SPAN, Timeline, TimelineSample, WorkerLoad};

/// How a manager behaves.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Placement policy for jobs that do not choose one.
    pub placement: PlacementPolicy,
    /// The most commands proposed in one batch.
    pub max_batch: usize,
    /// The most batches proposed and not yet answered. While one is on its way
    /// to disk the driver gathers and proposes the next, so their writes can
    /// share an fsync (the Raft store's log writer and PostgreSQL's committer
    /// group what arrives together); 1 proposes one batch at a time.
    pub proposals_in_flight: usize,
    /// The most runs considered in one placement pass.
    pub max_placements_per_pass: usize,
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// A worker silent for longer is declared lost and its runs requeued.
    pub worker_timeout: Duration,
    /// The most bytes of commands (as the log stores them) one batch proposes.
    pub max_batch_bytes: usize,
    /// Live output kept per running run for late followers, in bytes.
    pub output_buffer: usize,
    /// This manager's node id (for status).
    pub node_id: u64,
    /// The address clients reach this manager at (for status and redirects).
    pub address: String,
    /// How long finished runs stay in the history (a job's own `retention` or
    /// `keep_last` may remove them sooner).
    pub history_retention: Duration,
    /// How long an idempotency key makes a repeated submit return the first job.
    pub idempotency_window: Duration,
    /// How often the leader removes what the retention policy lets go.
    pub prune_every: Duration,
    /// The most runs one removal proposes.
    pub prune_batch: usize,
    /// Bounds on what clients and workers may send.
    pub limits: Limits,
    /// How often the manager samples the cluster for the last hour's
    /// [`Timeline`] (the dashboard's charts).
    pub timeline_every: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            placement: PlacementPolicy::Binpack,
            max_batch: 16_384,
            proposals_in_flight: 4,
            max_placements_per_pass: 8_192,
            heartbeat_interval: Duration::from_secs(2),
            worker_timeout: Duration::from_secs(10),
            max_batch_bytes: 1 << 20,
            output_buffer: 64 << 10,
            node_id: 1,
            address: String::new(),
            history_retention: Duration::from_secs(7 * 24 * 3600),
            idempotency_window: Duration::from_secs(24 * 3600),
            prune_every: Duration::from_secs(10),
            prune_batch: 10_000,
            limits: Limits::default(),
            timeline_every: Duration::from_secs(10),
        }
    }
}

/// The difference in clock rate between any two hosts that worker leases
/// tolerate, in percent. NTP-disciplined clocks differ by well under 0.05 %, an
/// undisciplined crystal by about 0.01 %: 1 % is a wide margin.
pub const CLOCK_DRIFT_PERCENT: u32 = 1;

/// The most a worker's lease leaves for killing what it runs after the lease
/// ends and before the manager can declare the worker lost.
pub const KILL_ALLOWANCE: Duration = Duration::from_secs(1);

/// The longest a call or a worker session that reached a node just elected
/// waits for it to lead (see `Manager::settle`); past it, it is refused as
/// before (not the leader) and goes elsewhere.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

impl ManagerConfig {
    /// How long a worker may act on one acknowledged heartbeat: the worker
    /// timeout less what clock-rate drift and killing take. The worker measures
    /// its lease from when it *sent* the heartbeat; the manager measures the
    /// timeout from when it *received* the worker's last message (always later),
    /// and a new leader from when it gained leadership (later than any
    /// acknowledgement of a deposed leader, which confirms its leadership after
    /// hearing the heartbeat). A worker duration `L` lasts at most `L·(1+ρ)` of
    /// real time and a manager duration `T` at least `T·(1−ρ)`, so with
    /// `L = T·(1−2ρ) − kill` the worker has killed its attempts before any
    /// manager declares it lost. `kill` is a fifth of the timeout, at most
    /// [`KILL_ALLOWANCE`]. With the defaults (10 s timeout): 8.8 s.
    pub fn worker_lease(&self) -> Duration {
        let t = self.worker_timeout;
        let drift = t * (2 * CLOCK_DRIFT_PERCENT) / 100;
        let kill = (t / 5).min(KILL_ALLOWANCE);
        t.saturating_sub(drift + kill)
    }

    /// Checks that the timings make sense together: a worker renews its lease
    /// with each heartbeat, so the lease must outlast a few of them.
    pub fn check(&self) -> Result<(), Error> {
        if self.heartbeat_interval.is_zero() {
            return Err(Error::invalid("heartbeat_interval", "must be more than zero (e.g. 2s)"));
        }
        if self.heartbeat_interval * 3 > self.worker_lease() {
            return Err(Error::invalid(
                "heartbeat_interval",
                format!(
                    "{:?} is too long for a worker timeout of {:?}: a worker's lease ({:?}, the timeout less clock \
                     drift and kill time) must outlast three heartbeats; shorten the interval or lengthen the timeout",
                    self.heartbeat_interval,
                    self.worker_timeout,
                    self.worker_lease()
                ),
            ));
        }
        Ok(())
    }

    /// How often pruning runs: `prune_every`, but at least four times per
    /// retention period or idempotency window, so a short one is honoured closely.
    pub fn prune_interval(&self) -> Duration {
        self.prune_every
            .min(self.history_retention / 4)
            .min(self.idempotency_window / 4)
            .max(Duration::from_millis(100))
    }
}

/// What the manager knows of a worker's liveness.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    /// When it was last heard from, by the wall clock (for display).
    pub(crate) last_seen: Timestamp,
    /// The same, by the monotonic clock: the reaper measures silence with this,
    /// so a step of the wall clock never declares a worker lost early (which
    /// would break the lease's promise; see [`ManagerConfig::worker_lease`]).
    pub(crate) heard: tokio::time::Instant,
    pub(crate) connected: bool,
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) history: Arc<dyn History>,
    pub(crate) scheduler: Arc<dyn Scheduler>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ManagerConfig,
    pub(crate) inputs: mpsc::Sender<Input>,
    inputs_rx: Mutex<Option<mpsc::Receiver<Input>>>,
    /// Batches of runs that just reached a terminal state.
    pub(crate) finished: broadcast::Sender<Arc<[RunId]>>,
    pub(crate) hub: OutputHub,
    pub(crate) liveness: Mutex<HashMap<WorkerId, Liveness>>,
    /// Why pending runs were not placed in the latest explained pass (soft state).
    pub(crate) pending_reasons: Mutex<HashMap<RunId, String>>,
    pub(crate) stopped: CancellationToken,
    /// The node's metrics, recorded into by the driver.
    pub(crate) metrics: Metrics,
    /// The last hour's samples (soft state, every manager).
    pub(crate) timeline: timeline::TimelineRing,
    /// Heartbeats waiting for a lease.
    pub(crate) leases: leases::Leases,
}

impl Shared {
    pub(crate) fn pending_reasons(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, String>> {
        self.pending_reasons.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A manager: cheap to clone, all clones drive the same one.
#[derive(Clone)]
pub struct Manager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

/// A handle on a [`Manager`] that does not keep it (or its store) alive.
#[derive(Clone)]
pub struct WeakManager {
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for WeakManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakManager").field("alive", &(self.shared.strong_count() > 0)).finish()
    }
}

impl WeakManager {
    /// The manager, unless every [`Manager`] clone is gone.
    pub fn upgrade(&self) -> Option<Manager> {
        self.shared.upgrade().map(|shared| Manager { shared })
    }
}

impl Manager {
    /// A handle that does not keep this manager alive.
    pub fn downgrade(&self) -> WeakManager {
        WeakManager { shared: Arc::downgrade(&self.shared) }
    }
}

/// Builds a [`Manager`] around a [`Store`].
pub struct ManagerBuilder {
    store: Arc<dyn Store>,
    scheduler: Arc<dyn Scheduler>,
    clock: Arc<dyn Clock>,
    config: ManagerConfig,
    metrics: Metrics,
}

impl ManagerBuilder {
    /// Uses `scheduler` instead of [`BinPack`].
    pub fn scheduler(mut self, scheduler: Arc<dyn Scheduler>) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `config`.
    pub fn config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// Records into `metrics`, the node's registry, instead of a private one.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The manager. Call [`Manager::run`] to drive it.
    pub fn build(self) -> Manager {
        let (inputs, rx) = mpsc::channel(65_536);
        let shared = Shared {
            hub: OutputHub::new(self.config.output_buffer),
            history: self.store.history(),
            store: self.store,
            scheduler: self.scheduler,
            clock: self.clock,
            config: self.config,
            inputs,
            inputs_rx: Mutex::new(Some(rx)),
            finished: broadcast::channel(4096).0,
            liveness: Mutex::new(HashMap::new()),
            pending_reasons: Mutex::new(HashMap::new()),
            stopped: CancellationToken::new(),
            metrics: self.metrics,
            timeline: timeline::TimelineRing::default(),
            leases: leases::Leases::default(),
        };
        let shared = Arc::new(shared);
        shared.metrics.manager();
        let weak = Arc::downgrade(&shared);
        shared.metrics.sample_cluster(move || weak.upgrade().map(|shared| observe::sample(&shared)));
        Manager { shared }
    }
}

impl Manager {
    /// A builder with the default scheduler, clock and config.
    pub fn builder(store: Arc<dyn Store>) -> ManagerBuilder {
        ManagerBuilder {
            store,
            scheduler: Arc::new(BinPack),
            clock: Arc::new(SystemClock),
            config: ManagerConfig::default(),
            metrics: Metrics::new(),
        }
    }

    /// The store it proposes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Its config.
    pub fn config(&self) -> &ManagerConfig {
        &self.shared.config
    }

    /// The node's metrics it records into (see [`ManagerBuilder::metrics`]).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The last hour of the cluster as this manager sampled it, oldest first,
    /// with the loads of the workers `wanted` picks.
    pub fn timeline(&self, wanted: &dyn Fn(WorkerId) -> bool) -> Timeline {
        self.shared.timeline.read(self.shared.config.timeline_every, wanted)
    }

    /// Drives the manager until `shutdown` fires. Call once.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let rx = self
            .shared
            .inputs_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::Internal("Manager::run called twice".into()))?;
        if let Err(e) = self.shared.config.check() {
            tracing::warn!(error = %e, "worker leases will lapse between heartbeats");
        }
        let sampling = tokio::spawn(timeline::record(self.shared.clone(), shutdown.child_token()));
        let granting = tokio::spawn(leases::grant(self.shared.clone(), shutdown.child_token()));
        let result = driver::Driver::new(self.shared.clone(), rx).run(shutdown).await;
        sampling.abort();
        granting.abort();
        self.shared.stopped.cancel();
        result
    }

    /// Proposes commands and returns one outcome per command.
    ///
    /// A caller's commands go straight to the store, so its wait is its
    /// entry's alone, not also a turn of the driver on each side of it; the
    /// driver is then told what their outcomes ask of it (placing the runs they
    /// queued, sending cancels to workers, waking those waiting on runs that
    /// ended) before the caller has them. Worker reports and cron fires, whose
    /// metrics the driver reads from the state before they are proposed, go in
    /// the driver's batch instead.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error> {
        self.settle().await;
        if commands.iter().any(observe::recorded) {
            let (reply, rx) = oneshot::channel();
            self.send(Input::Propose { commands, reply }).await?;
            return rx.await.map_err(|_| Error::ShuttingDown)?;
        }
        if self.shared.stopped.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let leadership = self.shared.store.leadership().borrow().clone();
        if !leadership.is_leader {
            return Err(Error::NotLeader { leader: leadership.leader });
        }
        let outcomes = self.shared.store.propose(commands).await?;
        let reactions = driver::Reactions::of(&outcomes);
        if !reactions.is_empty() {
            // Applied whatever happens next: a driver that has stopped has
            // nothing left to do for them.
            let _ = self.shared.inputs.send(Input::React(reactions)).await;
        }
        Ok(outcomes)
    }

    /// Accepts a worker session: registers the worker and returns the welcome and
    /// the channel of messages for it. `incoming` is the worker's stream.
    pub async fn attach(
        &self,
        hello: Hello,
        incoming: BoxStream<'static, WorkerMessage>,
    ) -> Result<(Welcome, mpsc::UnboundedReceiver<ManagerMessage>), Error> {
        self.settle().await;
        let (reply, rx) = oneshot::channel();
        self.send(Input::Attach { hello, incoming, reply }).await?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Waits, at most [`SETTLE_LIMIT`], while this node has won an election but
    /// may not propose yet: what reached the new leader is served there once it
    /// leads, instead of being refused and coming back. With a thousand workers
    /// reconnecting at once, refusing would cost the new leader a TLS handshake
    /// per worker per try just when it has an election's backlog to apply.
    pub(super) async fn settle(&self) {
        let mut leadership = self.shared.store.leadership();
        if !leadership.borrow_and_update().elected {
            return;
        }
        let _ = tokio::time::timeout(SETTLE_LIMIT, leadership.wait_for(|l| !l.elected)).await;
    }

    async fn send(&self, input: Input) -> Result<(), Error> {
        if self.shared.stopped.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        self.shared.inputs.send(input).await.map_err(|_| Error::ShuttingDown)
    }
}
