//! [`PgStore`]: archon-core's [`Store`] on PostgreSQL.
//!
//! One task per manager does everything that touches leadership: it campaigns
//! for the advisory lock on a dedicated connection, and while it holds it, it is
//! the only writer. Proposals queue to it; whatever queued while a transaction was
//! in flight goes into the next one (group commit). A transaction re-reads the
//! leader row's term `FOR SHARE` and aborts if it changed: a new leader bumps the
//! term before it reads the log, so a deposed leader's late write either commits
//! before the new leader loads (and is loaded) or fails.
//!
//! The writer applies a batch to its working copy of the state to get the
//! outcomes and the rows to write; once the transaction commits it applies the
//! same commands to the state readers see (apply is deterministic), so readers
//! never see uncommitted work. A failed transaction resets the working copy;
//! one whose `COMMIT` was sent but not answered may have landed, so the writer
//! asks the database (see [`crate::recovery`]) before it answers or writes again.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::history::History;
use archon_core::metrics::Metrics;
use archon_core::state::{ClusterState, Command, Outcome};
use archon_core::store::{Leadership, Store};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::commit::{BatchError, check_term, commit};
use crate::error::{Error, redact};
use crate::history::PgHistory;
use crate::recovery::{Fate, InDoubt, learn_fate, load};
use crate::rows::Touched;
use crate::schema::{archon_leader, archon_log, archon_snapshots};

/// The newest format of the commands this build writes to `archon_log` and
/// reads (0: Archon 0.1's; 2: the cron commands; 3: tokens and specs with
/// `secret_env`): `Command::format`'s newest, [`COMMAND_FORMAT`](archon_core::state::COMMAND_FORMAT).
pub const LOG_FORMAT: i16 = archon_core::state::COMMAND_FORMAT as i16;

/// The advisory lock the managers of one database campaign for ("ARCHON").
pub const DEFAULT_LOCK_KEY: i64 = 0x4152_4348_4f4e;

/// How a manager uses its database.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
    pub url: String,
    /// Where clients reach this manager, told to the others while it leads.
    pub address: String,
    /// Pooled connections for writes (the lock has its own).
    pub pool_size: usize,
    /// The advisory lock key; managers sharing a database and a key form one group.
    pub lock_key: i64,
    /// How often a follower tries for the lock and a leader checks it still holds it.
    pub election_poll: Duration,
    /// The longest wait between tries while the database is unreachable.
    pub retry_cap: Duration,
    /// Write a snapshot of the state after this many commands.
    pub snapshot_every: u64,
    /// The most commands in one transaction.
    pub max_batch: usize,
    /// How long the writer keeps asking whether a batch whose `COMMIT` got no
    /// answer was stored; if it still cannot tell, it steps down and answers
    /// that the outcome is unknown.
    pub in_doubt_timeout: Duration,
    /// The node's metrics: each transaction is recorded as a store batch (a
    /// private registry unless given the node's).
    pub metrics: Metrics,
}

impl PgConfig {
    /// Defaults: 4 pooled connections, the lock polled every 250 ms, retries
    /// backing off to 5 s, a snapshot every 50,000 commands (a new leader replays
    /// at most that many), batches of up to 4,096, 30 s to learn the outcome of
    /// an unanswered `COMMIT`.
    pub fn new(url: impl Into<String>, address: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            address: address.into(),
            pool_size: 4,
            lock_key: DEFAULT_LOCK_KEY,
            election_poll: Duration::from_millis(250),
            retry_cap: Duration::from_secs(5),
            snapshot_every: 50_000,
            max_batch: 4096,
            in_doubt_timeout: Duration::from_secs(30),
            metrics: Metrics::new(),
        }
    }
}

/// archon-core's [`Store`] on PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    history: PgHistory,
    /// For the store's own reads (the leader row); the history has its clone.
    pool: Pool<AsyncPgConnection>,
    requests: mpsc::Sender<Request>,
    /// Stops the campaign (releasing the lock) when the last clone is dropped.
    _stop: Arc<StopOnDrop>,
}

/// Cancels its token when dropped.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &redact(&self.inner.config.url)).finish_non_exhaustive()
    }
}

struct Inner {
    config: PgConfig,
    /// The state as committed: what readers see.
    published: RwLock<ClusterState>,
    leadership: watch::Sender<Leadership>,
    stop: CancellationToken,
}

/// One proposal waiting for the writer.
struct Request {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<Vec<Outcome>, CoreError>>,
}

impl PgStore {
    /// Connects, brings the schema up to date (see [`crate::migrate`]) and starts
    /// campaigning for leadership in the background. Fails if the database cannot
    /// be reached or its schema is newer than this binary.
    pub async fn open(config: PgConfig) -> Result<PgStore, Error> {
        crate::migrate(&config.url).await?;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(config.url.clone());
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| Error::Unreachable { url: redact(&config.url), message: e.to_string() })?;
        let (requests, queue) = mpsc::channel(1024);
        config.metrics.store();
        let (leadership, _) = watch::channel(Leadership::default());
        let inner = Arc::new(Inner {
            config,
            published: RwLock::new(ClusterState::new()),
            leadership,
            stop: CancellationToken::new(),
        });
        let stop = Arc::new(StopOnDrop(inner.stop.clone()));
        let history = PgHistory::new(pool.clone(), inner.config.url.clone());
        tokio::spawn(
            Campaign {
                inner: inner.clone(),
                pool: pool.clone(),
                lock: None,
                leader: None,
                snapshotting: Arc::default(),
            }
            .run(queue),
        );
        Ok(PgStore { inner, history, pool, requests, _stop: stop })
    }

    /// Waits until this manager leads, or `within` passes.
    pub async fn wait_for_leadership(&self, within: Duration) -> Result<(), CoreError> {
        let mut rx = self.inner.leadership.subscribe();
        let wait = rx.wait_for(|l| l.is_leader);
        match tokio::time::timeout(within, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(CoreError::ShuttingDown),
            Err(_) => Err(CoreError::Unavailable(format!("not the leader after {within:?}"))),
        }
    }

    /// Stops campaigning; a leader releases the lock by closing its connection.
    /// Dropping the last clone of the store does the same.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
    }
}

#[async_trait]
impl Store for PgStore {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, CoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request { commands, reply }).await.map_err(|_| CoreError::ShuttingDown)?;
        answer.await.map_err(|_| CoreError::ShuttingDown)?
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        let state = self.inner.published.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        reader(&state);
    }

    fn history(&self) -> Arc<dyn History> {
        Arc::new(self.history.clone())
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.subscribe()
    }

    /// Reads the leader row now: while it holds this manager's term, no other
    /// manager has taken over (a take-over bumps the term before it leads).
    async fn confirm_leadership(&self) -> Result<(), CoreError> {
        let ours = self.inner.leadership.borrow().clone();
        if !ours.is_leader {
            return Err(CoreError::NotLeader { leader: ours.leader });
        }
        let unavailable = |e: String| CoreError::Unavailable(format!("cannot confirm leadership: {e}"));
        let mut conn = self.pool.get().await.map_err(|e| unavailable(redact(&e.to_string())))?;
        let term = archon_leader::table
            .filter(archon_leader::id.eq(1))
            .select(archon_leader::term)
            .first::<i64>(&mut conn)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if u64::try_from(term).ok() == Some(ours.term) { Ok(()) } else { Err(CoreError::NotLeader { leader: None }) }
    }
}

/// What this manager holds while it leads.
struct Leading {
    term: i64,
    /// The state with every committed command applied, ahead of `published` only
    /// while a transaction is in flight.
    working: ClusterState,
    /// The log index the next command gets.
    next_index: i64,
    /// Commands since the last snapshot.
    since_snapshot: u64,
}

/// The one task that campaigns, leads and writes.
struct Campaign {
    inner: Arc<Inner>,
    pool: Pool<AsyncPgConnection>,
    /// The connection holding (or trying for) the advisory lock.
    lock: Option<AsyncPgConnection>,
    leader: Option<Leading>,
    /// A snapshot is being written.
    snapshotting: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[allow(dead_code)]
    one: i32,
}

impl Campaign {
    async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let stop = self.inner.stop.clone();
        let mut delay = Duration::ZERO;
        // A deadline, not a sleep started each turn: a stream of proposals must not
        // keep a leader from checking that it still holds the lock.
        let mut next_tick = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(next_tick) => {
                    delay = match self.tick().await {
                        Ok(()) => self.inner.config.election_poll,
                        Err(e) => {
                            let next = (delay * 2).clamp(self.inner.config.election_poll, self.inner.config.retry_cap);
                            tracing::warn!(error = %e, retry_in = ?next, "the database is unavailable");
                            next
                        }
                    };
                    next_tick = tokio::time::Instant::now() + delay;
                }
                request = queue.recv() => {
                    let Some(first) = request else { break };
                    let mut batch = vec![first];
                    let mut commands = batch[0].commands.len();
                    while commands < self.inner.config.max_batch {
                        match queue.try_recv() {
                            Ok(more) => {
                                commands += more.commands.len();
                                batch.push(more);
                            }
                            Err(_) => break,
                        }
                    }
                    self.serve(batch).await;
                }
            }
        }
        self.step_down("shutting down");
    }

    /// One election step: a follower tries for the lock; a leader checks it still
    /// holds it.
    async fn tick(&mut self) -> Result<(), Error> {
        let url = self.inner.config.url.clone();
        if self.lock.is_none() {
            let conn = AsyncPgConnection::establish(&url)
                .await
                .map_err(|e| Error::Unreachable { url: redact(&url), message: e.to_string() })?;
            self.lock = Some(conn);
        }
        let Some(conn) = self.lock.as_mut() else { return Ok(()) };
        if self.leader.is_some() {
            let check = diesel::sql_query("SELECT 1 AS one").get_result::<One>(conn);
            match tokio::time::timeout(Duration::from_secs(2), check).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => {
                    self.step_down("lost the database connection that holds the leader lock");
                    return Err(e.into());
                }
                Err(_) => {
                    self.step_down("the database connection that holds the leader lock stopped answering");
                    return Err(Error::Unreachable { url: redact(&url), message: "no answer in 2 s".into() });
                }
            }
        }
        let locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<BigInt, _>(self.inner.config.lock_key)
            .get_result::<Locked>(conn)
            .await;
        match locked {
            Ok(Locked { locked: true }) => self.take_over().await,
            Ok(Locked { locked: false }) => {
                let row = archon_leader::table
                    .select((archon_leader::term, archon_leader::address))
                    .first::<(i64, String)>(conn)
                    .await;
                if let Ok((term, address)) = row {
                    self.publish(false, (!address.is_empty()).then_some(address), term);
                }
                Ok(())
            }
            Err(e) => {
                self.lock = None;
                Err(e.into())
            }
        }
    }

    /// Holding the lock: bump the term, load the state, lead.
    async fn take_over(&mut self) -> Result<(), Error> {
        let Some(conn) = self.lock.as_mut() else { return Ok(()) };
        let address = self.inner.config.address.clone();
        let term = diesel::update(archon_leader::table.filter(archon_leader::id.eq(1)))
            .set((
                archon_leader::term.eq(archon_leader::term + 1),
                archon_leader::holder.eq(holder()),
                archon_leader::address.eq(&address),
                archon_leader::since_ms.eq(now_ms()),
            ))
            .returning(archon_leader::term)
            .get_result::<i64>(conn)
            .await;
        let term = match term {
            Ok(term) => term,
            Err(e) => {
                // Let the lock go with the connection; try again next tick.
                self.lock = None;
                return Err(e.into());
            }
        };
        let (state, last) = match load(conn).await {
            Ok(loaded) => loaded,
            Err(e) => {
                self.lock = None;
                return Err(e);
            }
        };
        tracing::info!(term, applied = last, "leading: the leader lock is ours");
        *self.inner.published.write().unwrap_or_else(std::sync::PoisonError::into_inner) = state.clone();
        self.leader = Some(Leading { term, working: state, next_index: last + 1, since_snapshot: 0 });
        self.publish(true, Some(address), term);
        Ok(())
    }

    fn step_down(&mut self, why: &str) {
        if let Some(leading) = self.leader.take() {
            tracing::warn!(term = leading.term, why, "no longer leading");
            self.publish(false, None, leading.term);
        }
        // Closing the connection releases the lock, if the database still has it.
        self.lock = None;
    }

    fn publish(&self, is_leader: bool, leader: Option<String>, term: i64) {
        let next = Leadership { is_leader, leader, term: u64::try_from(term).unwrap_or(0), elected: false };
        self.inner.leadership.send_if_modified(|now| {
            if *now == next {
                false
            } else {
                *now = next;
                true
            }
        });
    }

    /// Commits `batch` in one transaction and answers every proposal in it.
    async fn serve(&mut self, batch: Vec<Request>) {
        let Some(leading) = self.leader.as_mut() else {
            let leader = self.inner.leadership.borrow().leader.clone();
            for request in batch {
                let _ = request.reply.send(Err(CoreError::NotLeader { leader: leader.clone() }));
            }
            return;
        };
        let mut touched = Touched::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        // Everything this version writes is of its format: a state loaded from
        // Archon 0.1's data hands its finished runs to the history now.
        leading.working.upgrade();
        for request in &batch {
            let out: Vec<Outcome> = request.commands.iter().map(|c| leading.working.apply(c)).collect();
            request.commands.iter().zip(&out).for_each(|(c, o)| touched.note(c, o));
            outcomes.push(out);
        }
        let retired = leading.working.take_history();
        let commands: Vec<&Command> = batch.iter().flat_map(|r| &r.commands).collect();
        let count = i64::try_from(commands.len()).unwrap_or(i64::MAX);
        let in_doubt = InDoubt { term: leading.term, first: leading.next_index, last: leading.next_index + count - 1 };
        let started = std::time::Instant::now();
        let committed =
            commit(&self.pool, leading.term, leading.next_index, &leading.working, &commands, &touched, &retired).await;
        let (fate, failure) = match committed {
            Ok(()) => (Fate::Stored { step_down: false }, String::new()),
            Err(BatchError::Deposed) => {
                (Fate::NotStored { step_down: true }, "another manager took over (the term changed)".into())
            }
            Err(BatchError::NotStored(message)) => (Fate::NotStored { step_down: false }, message),
            Err(BatchError::InDoubt(message)) => {
                let (term, index) = (in_doubt.term, in_doubt.last);
                tracing::warn!(term, index, error = %message, "COMMIT got no answer; asking whether the batch was stored");
                let config = &self.inner.config;
                let fate =
                    learn_fate(&self.pool, &self.inner.stop, in_doubt, config.in_doubt_timeout, config.retry_cap).await;
                tracing::warn!(term, index, ?fate, "learned what became of the unanswered batch");
                (fate, message)
            }
        };
        match fate {
            Fate::Stored { step_down } => {
                self.inner.config.metrics.store().committed(commands.len(), started.elapsed());
                {
                    let mut published = self.inner.published.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                    published.upgrade();
                    for command in &commands {
                        published.apply(command);
                    }
                    // Already in the tables, written with the batch.
                    drop(published.take_history());
                }
                leading.next_index += count;
                leading.since_snapshot += commands.len() as u64;
                let snapshot_due = leading.since_snapshot >= self.inner.config.snapshot_every;
                for (request, out) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(out));
                }
                if step_down {
                    self.step_down("after an unanswered COMMIT the database shows another leader or an unexpected log");
                } else if snapshot_due {
                    self.snapshot();
                }
            }
            Fate::NotStored { step_down } => {
                leading.working =
                    self.inner.published.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                let error = if step_down {
                    self.step_down(&format!("the batch was not stored: {failure}"));
                    CoreError::NotLeader { leader: None }
                } else {
                    CoreError::Unavailable(format!("the database did not store the batch: {failure}"))
                };
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
            Fate::Unknown(why) => {
                // A fresh take-over reloads whatever the database holds.
                self.step_down("cannot learn whether the last batch was stored");
                let error = CoreError::Unavailable(format!(
                    "the outcome of this submit is unknown: the connection failed before the database answered \
                     COMMIT ({failure}) and {why}; retry with the same idempotency key"
                ));
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Writes the committed state as a snapshot, so a new leader replays less. The
    /// state is copied here and serialized and written in the background, one
    /// snapshot at a time, so the writer is not held up by it.
    fn snapshot(&mut self) {
        let Some(leading) = self.leader.as_mut() else { return };
        if self.snapshotting.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        leading.since_snapshot = 0;
        let index = leading.next_index - 1;
        let term = leading.term;
        let state = self.inner.published.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (pool, busy) = (self.pool.clone(), self.snapshotting.clone());
        tokio::spawn(async move {
            let written = async {
                let json = tokio::task::spawn_blocking(move || crate::rows::json_text(&state))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    check_term(conn, term).await?;
                    diesel::sql_query(
                        "INSERT INTO archon_snapshots (index, state) VALUES ($1, $2::jsonb) ON CONFLICT DO NOTHING",
                    )
                    .bind::<BigInt, _>(index)
                    .bind::<diesel::sql_types::Text, _>(&json)
                    .execute(conn)
                    .await?;
                    diesel::delete(archon_snapshots::table.filter(archon_snapshots::index.lt(index)))
                        .execute(conn)
                        .await?;
                    // The log up to the snapshot is in it; a new leader starts there.
                    diesel::delete(archon_log::table.filter(archon_log::index.le(index))).execute(conn).await?;
                    Ok(())
                })
                .await
                .map_err(|e| e.to_string())
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(index, error = %e, "cannot write a snapshot; the next one will cover it");
            }
            busy.store(false, std::sync::atomic::Ordering::Release);
        });
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The name this process goes by in the leader row.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}
