//! [`Builder`]: the one composition path of a manager, its store and a local
//! worker — what an embedding program, `archon dev` and `archon-manager` all
//! start through. The one thing to know: nothing runs until
//! [`Builder::start`], which opens the store, starts the manager and the
//! worker, waits until the worker is in session, and returns the running
//! [`Archon`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use archon_core::api::{Api, CancelTarget, JobQuery};
use archon_core::executor::{Executor, ExecutorRegistry};
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::metrics::Metrics;
use archon_core::model::{JobSpec, Resources};
use archon_core::scheduler::Scheduler;
use archon_core::store::{MemStore, Store};
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_exec::{FunctionExecutor, ProcessLedger, TypedFunction};
use archon_net::tls::Dialer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::replicated::StoreOptions;
use crate::running::{Archon, Parts, StoreHandle};
use crate::{Error, executors, postgres, replicated};

/// How long [`Builder::start`] waits for a store of this node alone to lead,
/// and for the local worker to be in session.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the manager keeps the cluster's state.
enum StoreChoice {
    /// Not chosen yet: [`Builder::start`] says how to choose.
    Unset,
    /// [`MemStore`]: gone when the process ends.
    Memory,
    /// The embedded Raft store on a data dir (a group of one unless the options say more).
    Raft(StoreOptions),
    /// PostgreSQL at this URL.
    Postgres(String),
    /// A store of the embedder's own.
    Custom(Arc<dyn Store>),
}

/// The local worker's settings.
struct LocalWorker {
    name: String,
    capacity: Resources,
    labels: BTreeMap<String, String>,
    queue: u32,
    /// What it runs besides functions; default shell, script and process jobs.
    executors: Option<ExecutorRegistry>,
    /// Its process ledger, for a lease keeper that kills its jobs if it freezes.
    ledger: Option<Arc<ProcessLedger>>,
}

/// Composes an embedded Archon: see [`Archon::embedded`].
#[must_use = "nothing runs until .start().await"]
pub struct Builder {
    store: StoreChoice,
    address: String,
    dialer: Dialer,
    metrics: Metrics,
    manager: ManagerConfig,
    scheduler: Option<Arc<dyn Scheduler>>,
    worker: Option<LocalWorker>,
    functions: FunctionExecutor,
    extra: Vec<Arc<dyn Executor>>,
    schedules: Vec<JobSpec>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match &self.store {
            StoreChoice::Unset => "unset".to_owned(),
            StoreChoice::Memory => "memory".to_owned(),
            StoreChoice::Raft(o) => format!("raft in {}", o.data_dir.display()),
            StoreChoice::Postgres(url) => format!("postgres at {}", archon_store::redact(url)),
            StoreChoice::Custom(_) => "custom".to_owned(),
        };
        f.debug_struct("Builder")
            .field("store", &store)
            .field("address", &self.address)
            .field("worker", &self.worker.as_ref().map(|w| &w.name))
            .field("functions", &self.functions)
            .field("schedules", &self.schedules.iter().map(|s| &s.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Archon {
    /// A manager and a local worker in this process. Choose where the state
    /// lives — [`Builder::data_dir`] (durable, a Raft log in that directory),
    /// [`Builder::in_memory`] or [`Builder::postgres`] — register functions,
    /// then [`Builder::start`]. The worker runs shell, script and process jobs
    /// and the functions registered, on all of the machine's cores and memory.
    pub fn embedded() -> Builder {
        Builder {
            worker: Some(LocalWorker {
                name: format!("embedded-{}", crate::host::hostname()),
                capacity: crate::host::capacity(),
                labels: BTreeMap::new(),
                queue: archon_core::worker::DEFAULT_QUEUE,
                executors: None,
                ledger: None,
            }),
            ..Archon::manager_only()
        }
    }

    /// A manager without a local worker, for workers that connect over the
    /// network (as `archon-manager` runs).
    pub fn manager_only() -> Builder {
        Builder {
            store: StoreChoice::Unset,
            address: "in-process".to_owned(),
            dialer: Dialer::default(),
            metrics: Metrics::new(),
            manager: ManagerConfig::default(),
            scheduler: None,
            worker: None,
            functions: FunctionExecutor::new(),
            extra: Vec::new(),
            schedules: Vec::new(),
            stop: CancellationToken::new(),
        }
    }
}

impl Builder {
    /// Keeps the state durable in `dir`: a single-node Raft log and snapshots;
    /// a restart on the same directory finds every acknowledged job.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = StoreChoice::Raft(StoreOptions::new(dir.into()));
        self
    }

    /// Keeps the state on the embedded Raft store as `options` say: a node of a
    /// group of several managers (its id, peers or the member to join through).
    pub fn raft(mut self, options: StoreOptions) -> Self {
        self.store = StoreChoice::Raft(options);
        self
    }

    /// Keeps the state in memory only: gone when the process ends (tests, demos).
    pub fn in_memory(mut self) -> Self {
        self.store = StoreChoice::Memory;
        self
    }

    /// Keeps the state in PostgreSQL at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`);
    /// an unreachable database is retried until it answers or [`Builder::stop_on`] fires.
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.store = StoreChoice::Postgres(url.into());
        self
    }

    /// Keeps the state in a [`Store`] of your own (it should pass
    /// `archon_core::testkit::store_suite::run_all`, as `examples/custom-store` does).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = StoreChoice::Custom(store);
        self
    }

    /// The address workers and other managers reach this manager at (default
    /// `in-process`: nothing outside this process reaches it).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// How the Raft store dials its peers (TLS; default plaintext).
    pub fn dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// The Prometheus registry the manager, store and worker record into.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The manager's settings: timings, retention, limits (its `address` is
    /// [`Builder::address`]'s).
    pub fn manager_config(mut self, config: ManagerConfig) -> Self {
        self.manager = config;
        self
    }

    /// Places runs with `scheduler` instead of the default bin-packing one.
    pub fn scheduler(mut self, scheduler: Arc<dyn Scheduler>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Registers the typed function `f` as `name` on the local worker: an
    /// `async fn(In) -> Result<Out, E>` with serde types `In` and `Out` and an
    /// error that displays. Submit it with [`crate::function_job`] or call it
    /// with [`Archon::call`]; an `Err` fails the run with its message.
    pub fn function<In, Out, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
        F: TypedFunction<In, Out>,
    {
        self.functions.register_typed_mut(name, f);
        self
    }

    /// Adds the functions of `functions` (replacing any of the same name).
    pub fn functions(mut self, functions: FunctionExecutor) -> Self {
        self.functions.extend(functions);
        self
    }

    /// Runs another kind of task on the local worker (an executor of your own,
    /// or Docker's), replacing the one for that kind.
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.extra.push(executor);
        self
    }

    /// The local worker runs what `registry` holds (instead of shell, script and
    /// process jobs), plus the functions and executors added here.
    pub fn executors(mut self, registry: ExecutorRegistry) -> Self {
        if let Some(w) = &mut self.worker {
            w.executors = Some(registry);
        }
        self
    }

    /// Notes the local worker's processes in `ledger` and starts a lease keeper
    /// that kills them if this process freezes past the worker's lease. The
    /// program's `main` must first call `archon_exec::lease_keeper_main_if_asked()`.
    pub fn ledger(mut self, ledger: Arc<ProcessLedger>) -> Self {
        if let Some(w) = &mut self.worker {
            w.ledger = Some(ledger);
        }
        self
    }

    /// The local worker's name (default `embedded-HOSTNAME`).
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        if let Some(w) = &mut self.worker {
            w.name = name.into();
        }
        self
    }

    /// What the local worker offers (default: the machine's cores and memory).
    pub fn capacity(mut self, capacity: Resources) -> Self {
        if let Some(w) = &mut self.worker {
            w.capacity = capacity;
        }
        self
    }

    /// A label on the local worker, for placement constraints.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Some(w) = &mut self.worker {
            w.labels.insert(key.into(), value.into());
        }
        self
    }

    /// How many assigned jobs the local worker holds queued beyond what fits.
    pub fn queue(mut self, queue: u32) -> Self {
        if let Some(w) = &mut self.worker {
            w.queue = queue;
        }
        self
    }

    /// A cron job kept as declared here (its spec has a
    /// [`schedule`](archon_core::model::JobSpec::schedule)): at start, a cron job
    /// of the same name with the same spec is kept (its schedule's place too);
    /// one whose spec differs is cancelled and this one submitted.
    pub fn schedule(mut self, spec: JobSpec) -> Self {
        self.schedules.push(spec);
        self
    }

    /// Gives up starting (with [`Error::Stopped`]) when `token` fires while the
    /// store is being reached; once started, [`Archon::shutdown`] stops.
    pub fn stop_on(mut self, token: CancellationToken) -> Self {
        self.stop = token;
        self
    }

    /// Opens the store, starts the manager and the local worker, waits until the
    /// worker is in session and the declared schedules are in place.
    pub async fn start(self) -> Result<Archon, Error> {
        let Builder { store, address, dialer, metrics, manager, scheduler, worker, functions, extra, schedules, stop } =
            self;
        for spec in &schedules {
            if spec.schedule.is_none() {
                return Err(Error::Config {
                    field: "schedule",
                    message: format!("{:?} has no cron schedule (give it one, or submit it instead)", spec.name),
                });
            }
        }
        let alone_or_local = worker.is_some();
        let (store, handle) = open_store(store, &address, &metrics, &dialer, &stop, alone_or_local).await?;

        let mut builder = Manager::builder(store)
            .config(ManagerConfig { address: address.clone(), ..manager })
            .metrics(metrics.clone());
        if let Some(scheduler) = scheduler {
            builder = builder.scheduler(scheduler);
        }
        let manager = builder.build();
        let manager_stop = CancellationToken::new();
        let manager_task = tokio::spawn({
            let (m, s) = (manager.clone(), manager_stop.clone());
            async move { m.run(s).await }
        });
        let mut parts = Parts {
            manager: manager.clone(),
            store: handle,
            metrics: metrics.clone(),
            manager_stop,
            manager_task: Some(manager_task),
            worker: None,
            worker_stop: CancellationToken::new(),
            worker_task: None,
            keeper: None,
        };

        if let Some(local) = worker {
            let mut registry = local.executors.unwrap_or_else(|| executors::processes(local.ledger.clone()));
            registry.register(Arc::new(functions));
            for executor in extra {
                registry.register(executor);
            }
            let mut config = WorkerConfig::new(local.name, local.capacity);
            config.labels = local.labels;
            config.queue = local.queue;
            config.address = "in-process".into();
            config.metrics = metrics;
            let runtime = Arc::new(WorkerRuntime::new(
                config,
                Arc::new(registry),
                Arc::new(InProcTransport::new(manager.clone())),
            ));
            if let Some(ledger) = &local.ledger {
                parts.keeper = Some(executors::keep_lease(ledger, &runtime)?);
            }
            parts.worker_task = Some(tokio::spawn({
                let (w, s) = (runtime.clone(), parts.worker_stop.clone());
                async move { w.run(s).await }
            }));
            parts.worker = Some(runtime);
        }
        let archon = Archon::from_parts(parts);
        if archon.worker().is_some() {
            archon.wait_for_worker(START_TIMEOUT).await?;
        }
        for spec in schedules {
            keep_schedule(archon.manager(), spec).await?;
        }
        Ok(archon)
    }
}

/// Opens the chosen store; waits for it to lead when this node is a group of
/// its own or runs a local worker (which needs a leading manager).
async fn open_store(
    choice: StoreChoice,
    address: &str,
    metrics: &Metrics,
    dialer: &Dialer,
    stop: &CancellationToken,
    local_worker: bool,
) -> Result<(Arc<dyn Store>, StoreHandle), Error> {
    match choice {
        StoreChoice::Unset => Err(Error::Config {
            field: "store",
            message: "choose where the state lives: .data_dir(DIR) (durable), .in_memory() or .postgres(URL)".into(),
        }),
        StoreChoice::Memory => Ok((Arc::new(MemStore::new()), StoreHandle::Other)),
        StoreChoice::Custom(store) => Ok((store, StoreHandle::Other)),
        StoreChoice::Raft(options) => {
            let raft = replicated::open(&options, address, metrics, dialer).await?;
            if options.alone() || local_worker {
                raft.wait_for_leadership(START_TIMEOUT).await.map_err(Error::Raft)?;
            }
            Ok((Arc::new(raft.clone()), StoreHandle::Raft(raft)))
        }
        StoreChoice::Postgres(url) => {
            let pg = postgres::open(&url, address, metrics, stop).await?.ok_or(Error::Stopped)?;
            if local_worker {
                pg.wait_for_leadership(START_TIMEOUT).await?;
            }
            Ok((Arc::new(pg.clone()), StoreHandle::Postgres(pg)))
        }
    }
}

/// Makes `spec` the cron job of its name: keeps one with the same spec, cancels
/// one that differs and submits `spec`.
async fn keep_schedule(manager: &Manager, spec: JobSpec) -> Result<(), Error> {
    let query = JobQuery { name: Some(spec.name.clone()), ..JobQuery::default() };
    // The API shows specs with their secrets redacted: compare like with like.
    let mut shown = spec.clone();
    shown.redact_secrets();
    let mut same = false;
    for summary in manager.list_jobs(query).await?.items {
        let detail = manager.get_job(summary.id).await?;
        if detail.schedule.is_none() || detail.job.cancelled || detail.job.spec.name != spec.name {
            continue;
        }
        if !same && *detail.job.spec == shown {
            same = true;
            continue;
        }
        tracing::info!(job = %summary.id, name = %spec.name, "replacing a cron job whose spec changed");
        manager.cancel(CancelTarget::Job(summary.id)).await?;
    }
    if !same {
        let submitted = manager.submit(vec![spec]).await?.into_iter().next();
        let submitted =
            submitted.ok_or_else(|| archon_core::Error::Internal("a submit of one spec answered nothing".into()))?;
        submitted.map_err(archon_core::Error::from)?;
    }
    Ok(())
}
