//! The manager's PostgreSQL store ([`crate::Builder::postgres`], `--store
//! postgres://…` of `archon-manager` and `archon dev`): managers given the same database form one
//! group, lead by advisory lock, and keep state queryable with SQL (see
//! `archon_store`). At start an unreachable database is retried with backoff
//! until it answers or the manager is stopped; a bad URL or a schema newer than
//! this binary ends the start with the reason. The password is never printed.

use std::time::Duration;

use archon_core::metrics::Metrics;
use archon_store::{Error, PgConfig, PgStore, redact};
use tokio_util::sync::CancellationToken;

use crate::Error as FacadeError;

/// Whether `--store` names a PostgreSQL database.
pub fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// Checks a `--store` value: a PostgreSQL URL. The complaint shows the value
/// without its password.
pub fn validate(store: &str) -> Result<(), String> {
    if is_postgres(store) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a store this manager knows (give postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or leave it out for the embedded Raft store)",
            redact(store)
        ))
    }
}

/// Opens the PostgreSQL store for the manager reachable at `address`, recording
/// into the node's `metrics`, retrying an unreachable database (1 s, doubling
/// to 30 s) until `shutdown`. `None` if stopped first.
pub async fn open(
    url: &str,
    address: &str,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<PgStore>, FacadeError> {
    println!("Archon keeps its state in PostgreSQL at {}", redact(url));
    let mut delay = Duration::from_secs(1);
    loop {
        match PgStore::open(PgConfig { metrics: metrics.clone(), ..PgConfig::new(url, address) }).await {
            Ok(store) => return Ok(Some(store)),
            Err(e @ Error::Unreachable { .. }) | Err(e @ Error::Query(_)) => {
                eprintln!("{e}; retrying in {}s", delay.as_secs());
            }
            Err(e) => return Err(FacadeError::Postgres(e)),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
