//! How the writer learns what the database holds: the whole state when it takes
//! over ([`load`]), and the fate of a batch whose `COMMIT` got no answer
//! ([`learn_fate`]).
//!
//! The one thing to know: a `COMMIT` that was sent may have landed even though
//! the connection failed before its answer came back, and the server may still
//! be working on it when we ask. So the read-back first takes the leader row
//! `FOR UPDATE`, which waits for every write transaction (each holds that row
//! `FOR SHARE`) to end, and only then looks for the batch's last log entry.

use std::time::Duration;

use archon_core::state::{ClusterState, Command};
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::schema::{archon_leader, archon_log, archon_snapshots};
use crate::store::LOG_FORMAT;

/// The latest snapshot with every later command applied, and the last index.
pub(crate) async fn load(conn: &mut AsyncPgConnection) -> Result<(ClusterState, i64), Error> {
    let snapshot = archon_snapshots::table
        .select((archon_snapshots::index, archon_snapshots::state))
        .order(archon_snapshots::index.desc())
        .first::<(i64, serde_json::Value)>(conn)
        .await
        .optional()?;
    let (mut state, mut last) = match snapshot {
        Some((index, json)) => {
            let state = serde_json::from_value::<ClusterState>(json)
                .map_err(|e| Error::Corrupt { index, message: format!("snapshot: {e}") })?;
            (state, index)
        }
        None => (ClusterState::new(), 0),
    };
    const PAGE: i64 = 10_000;
    loop {
        let page = archon_log::table
            .select((archon_log::index, archon_log::format, archon_log::command))
            .filter(archon_log::index.gt(last))
            .order(archon_log::index.asc())
            .limit(PAGE)
            .load::<(i64, i16, serde_json::Value)>(conn)
            .await?;
        let n = page.len();
        for (index, format, json) in page {
            if format > LOG_FORMAT {
                return Err(Error::Corrupt {
                    index,
                    message: format!(
                        "the command's format {format} is newer than this binary reads ({LOG_FORMAT}); upgrade Archon"
                    ),
                });
            }
            let command = serde_json::from_value::<Command>(json)
                .map_err(|e| Error::Corrupt { index, message: e.to_string() })?;
            if format > 0 {
                state.upgrade();
            }
            state.apply(&command);
            // The history was written with the command, the first time round.
            drop(state.take_history());
            last = index;
        }
        if i64::try_from(n).unwrap_or(0) < PAGE {
            return Ok((state, last));
        }
    }
}

/// What became of a batch whose `COMMIT` got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Its entries are in the log under the writer's term.
    Stored {
        /// The writer must step down (another manager leads, or the log is not
        /// what the writer expects), so that a fresh take-over reloads.
        step_down: bool,
    },
    /// It is not in the log.
    NotStored {
        /// As for [`Fate::Stored`].
        step_down: bool,
    },
    /// It could not be learned, for this reason; the writer steps down.
    Unknown(String),
}

/// What the read-back saw, once every write transaction had ended.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The leader row's term.
    leader_term: i64,
    /// The term of the log entry at the batch's last index, if there is one.
    entry_term: Option<i64>,
    /// The newest index in the log.
    newest: Option<i64>,
    /// The newest snapshot's index.
    snapshot: Option<i64>,
}

/// The batch of log indexes `first..=last`, proposed by the writer of `term`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InDoubt {
    /// The writer's term.
    pub(crate) term: i64,
    /// The batch's first index.
    pub(crate) first: i64,
    /// The batch's last index.
    pub(crate) last: i64,
}

impl InDoubt {
    /// Decides from what the database holds. A batch is written in one
    /// transaction, so its last entry stands for all of it.
    fn judge(self, seen: Seen) -> Fate {
        let InDoubt { term, first, last } = self;
        let deposed = seen.leader_term != term;
        match seen.entry_term {
            Some(t) if t == term => Fate::Stored { step_down: deposed || seen.newest > Some(last) },
            // Another leader's entry at that index: ours did not land before it took over.
            Some(_) => Fate::NotStored { step_down: true },
            None if seen.snapshot.is_some_and(|s| s >= last) => Fate::Unknown(format!(
                "another leader's snapshot now covers log index {last}, so whether the batch was in it cannot be told"
            )),
            None => Fate::NotStored { step_down: deposed || seen.newest >= Some(first) },
        }
    }
}

/// Asks the database what became of `batch`, retrying (backing off up to
/// `retry_cap`) until it answers or `within` has passed, or `stop` is cancelled.
pub(crate) async fn learn_fate(
    pool: &Pool<AsyncPgConnection>,
    stop: &CancellationToken,
    batch: InDoubt,
    within: Duration,
    retry_cap: Duration,
) -> Fate {
    const FIRST_RETRY: Duration = Duration::from_millis(50);
    let deadline = Instant::now() + within;
    let cap = retry_cap.max(FIRST_RETRY);
    let mut delay = FIRST_RETRY;
    let mut tries = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        tries += 1;
        let asked = tokio::select! {
            () = stop.cancelled() => return Fate::Unknown("the manager is shutting down".into()),
            asked = tokio::time::timeout(left, read_back(pool, batch.last, left)) => asked,
        };
        let error = match asked {
            Ok(Ok(seen)) => return batch.judge(seen),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer in {left:?}"),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Fate::Unknown(format!("the database could not be asked ({tries} tries in {within:?}): {error}"));
        }
        tracing::warn!(index = batch.last, error = %error, retry_in = ?delay.min(left), "cannot yet learn whether the last batch was stored");
        tokio::select! {
            () = stop.cancelled() => return Fate::Unknown("the manager is shutting down".into()),
            () = tokio::time::sleep(delay.min(left)) => {}
        }
        delay = (delay * 2).min(cap);
    }
}

/// One read-back: waits (at most `wait`) for the write transactions to end by
/// locking the leader row, then reads the log around `last`.
async fn read_back(pool: &Pool<AsyncPgConnection>, last: i64, wait: Duration) -> Result<Seen, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let lock_timeout = format!("{}ms", wait.as_millis().max(1));
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("SELECT set_config('lock_timeout', $1, true)")
            .bind::<diesel::sql_types::Text, _>(&lock_timeout)
            .execute(conn)
            .await?;
        let leader_term = archon_leader::table
            .select(archon_leader::term)
            .filter(archon_leader::id.eq(1))
            .for_update()
            .first::<i64>(conn)
            .await?;
        let entry_term = archon_log::table
            .select(archon_log::term)
            .filter(archon_log::index.eq(last))
            .first::<i64>(conn)
            .await
            .optional()?;
        let newest = archon_log::table.select(diesel::dsl::max(archon_log::index)).first::<Option<i64>>(conn).await?;
        let snapshot = archon_snapshots::table
            .select(diesel::dsl::max(archon_snapshots::index))
            .first::<Option<i64>>(conn)
            .await?;
        Ok(Seen { leader_term, entry_term, newest, snapshot })
    })
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{Fate, InDoubt, Seen};

    const BATCH: InDoubt = InDoubt { term: 3, first: 11, last: 14 };

    fn seen(leader_term: i64, entry_term: Option<i64>, newest: Option<i64>, snapshot: Option<i64>) -> Seen {
        Seen { leader_term, entry_term, newest, snapshot }
    }

    #[test]
    fn a_batch_whose_last_entry_has_our_term_is_stored() {
        assert_eq!(BATCH.judge(seen(3, Some(3), Some(14), None)), Fate::Stored { step_down: false });
        assert_eq!(BATCH.judge(seen(3, Some(3), Some(14), Some(10))), Fate::Stored { step_down: false });
        // Stored, but another manager has taken over since.
        assert_eq!(BATCH.judge(seen(4, Some(3), Some(20), None)), Fate::Stored { step_down: true });
    }

    #[test]
    fn a_batch_missing_from_the_log_is_not_stored() {
        assert_eq!(BATCH.judge(seen(3, None, Some(10), None)), Fate::NotStored { step_down: false });
        // Every earlier entry is in a snapshot already.
        assert_eq!(BATCH.judge(seen(3, None, None, Some(10))), Fate::NotStored { step_down: false });
        // Another leader's entry sits at that index.
        assert_eq!(BATCH.judge(seen(4, Some(4), Some(14), None)), Fate::NotStored { step_down: true });
    }

    #[test]
    fn a_log_the_writer_did_not_expect_makes_it_step_down() {
        assert_eq!(BATCH.judge(seen(3, Some(3), Some(15), None)), Fate::Stored { step_down: true });
        assert_eq!(BATCH.judge(seen(3, None, Some(11), None)), Fate::NotStored { step_down: true });
    }

    #[test]
    fn a_snapshot_over_a_missing_entry_leaves_the_fate_unknown() {
        assert!(matches!(BATCH.judge(seen(4, None, Some(30), Some(20))), Fate::Unknown(_)));
    }
}
