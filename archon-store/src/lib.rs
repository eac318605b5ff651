//! # archon-store
//!
//! [`PgStore`]: Archon's state in PostgreSQL, for teams that already run it. The
//! transition rules stay in archon-core's state machine; this crate stores the
//! command log and keeps queryable tables of jobs, runs, attempts and workers up
//! to date in the same transaction as the commands that change them.
//!
//! Several managers can share one database: they campaign for a session-level
//! advisory lock held on a dedicated connection, the holder leads, and every
//! leadership has a term stored in the database that each write transaction
//! checks, so a deposed leader's late write fails. Followers answer `NotLeader`
//! with the leader's address, as Raft followers do.
//!
//! Migrations are embedded in the binary and applied at start ([`migrate`]).
//!
//! ## Schema
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `archon_log` | committed command since the latest snapshot, in order (older ones are deleted when a snapshot is stored) | `index`, `term`, `command` (jsonb, archon-core's `Command`), `format` (0: Archon 0.1) |
//! | `archon_jobs` | job, live or retired | `id`, `name`, `kind` (shell, docker, ...), `spec` (jsonb), `cancelled`, `runs`, `created_at`; once retired `record` (jsonb) and `last_state` |
//! | `archon_runs` | run, live or finished | `id`, `job_id`, `state` (pending, running, succeeded, failed, ...), `attempts`, `retries_used`, `reason`, `created_at`, `finished_at`; once finished `record` (jsonb: run, attempts, results without output) and `expires_at` (the job's own retention) |
//! | `archon_output` | slice of an attempt's kept output | `attempt_id`, `stream` (0 stdout, 1 stderr), `byte_offset`, `run_id`, `data` (bytea) |
//! | `archon_workflows` | finished workflow | `id`, `name`, `state` (succeeded, failed, cancelled), `created_ms`, `finished_ms`, `record` (jsonb: definition, jobs) |
//! | `archon_attempts` | attempt | `id`, `run_id`, `worker_id`, `state`, `status` (jsonb), `exit_code`, `assigned_at`, `finished_at` |
//! | `archon_workers` | worker | `id`, `name`, `address`, `state`, `labels`, `capabilities`, `capacity`, `allocated` (jsonb), `running`, `registered_ms` |
//! | `archon_leader` | (one row) | `term`, `holder`, `address`, `since_ms` |
//! | `archon_snapshots` | (the latest) | `index`, `state` (jsonb): where a new leader starts replaying |
//!
//! Finished runs and retired jobs are the history ([`PgHistory`]): the retention
//! policy deletes their rows (and their output) in the transaction of the
//! command that removes them.
//!
//! Times are kept as milliseconds since the epoch (`*_ms`) with `timestamptz`
//! columns generated from them (`*_at`). Ids are the numbers the CLI shows
//! (`run-42` is `archon_runs.id = 42`). For example, the failure rate per job
//! name over the last day:
//!
//! ```sql
//! SELECT j.name, count(*) FILTER (WHERE r.state = 'failed') * 100.0 / count(*) AS failed_pct
//! FROM archon_runs r JOIN archon_jobs j ON j.id = r.job_id
//! WHERE r.finished_at > now() - interval '1 day'
//! GROUP BY j.name ORDER BY failed_pct DESC;
//! ```

mod commit;
mod error;
mod history;
mod recovery;
mod rows;
mod schema;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use diesel::migration::MigrationSource;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use error::{Error, redact};
pub use history::PgHistory;
pub use store::{DEFAULT_LOCK_KEY, LOG_FORMAT, PgConfig, PgStore};

/// The advisory lock held while migrating ("ARCHMG").
const MIGRATION_LOCK_KEY: i64 = 0x4152_4348_4d47;

/// The schema migrations this binary carries.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Brings the database at `url` up to this binary's schema: creates it on an
/// empty database, applies what is missing, changes nothing on an up-to-date
/// one, and refuses a database migrated by a newer binary. Returns the
/// migrations it applied.
pub async fn migrate(url: &str) -> Result<Vec<String>, Error> {
    let url = url.to_owned();
    let redacted = redact(&url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::BadUrl { url: redacted });
    }
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| Error::Unreachable { url: redacted, message: e.to_string() })?;
        let known: Vec<String> = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
            .map_err(|e| Error::Migrations(e.to_string()))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect();
        // Managers starting together on an empty database take turns; the lock
        // goes with the connection.
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(&mut conn)
            .map_err(|e| Error::Migrations(format!("cannot take the migration lock: {e}")))?;
        let applied = conn.applied_migrations().map_err(|e| Error::Migrations(e.to_string()))?;
        let newest = known.iter().max().cloned().unwrap_or_default();
        if let Some(unknown) = applied.iter().map(|v| v.to_string()).find(|v| !known.contains(v)) {
            return Err(Error::SchemaTooNew { found: unknown, known: newest });
        }
        let ran = conn.run_pending_migrations(MIGRATIONS).map_err(|e| Error::Migrations(e.to_string()))?;
        Ok(ran.iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| Error::Migrations(format!("the migration task failed: {e}")))?
}
