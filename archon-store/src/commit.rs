//! One batch's write transaction, and how its failures are told apart: the
//! writer was deposed, the batch is certainly not stored, or `COMMIT` was sent
//! and its answer lost, so the batch may be stored (see [`crate::recovery`]).

use archon_core::history::HistoryOp;
use archon_core::state::{ClusterState, Command};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::rows::Touched;
use crate::schema::archon_leader;
use crate::store::LOG_FORMAT;

/// Why a batch did not commit.
pub(crate) enum BatchError {
    /// Another manager took over: step down.
    Deposed,
    /// The database failed before `COMMIT` was sent; the batch is not stored.
    NotStored(String),
    /// `COMMIT` was sent but its answer was lost: the batch may be stored.
    InDoubt(String),
}

/// Fails the transaction (as a rollback) unless the leader row still has `term`.
pub(crate) async fn check_term(conn: &mut AsyncPgConnection, term: i64) -> QueryResult<()> {
    let now = archon_leader::table
        .select(archon_leader::term)
        .filter(archon_leader::id.eq(1))
        .for_share()
        .first::<i64>(conn)
        .await?;
    if now == term { Ok(()) } else { Err(diesel::result::Error::RollbackTransaction) }
}

/// Writes one batch (its log entries, the rows it touched, the history it
/// retired) in one transaction, starting at log index `first_index`.
pub(crate) async fn commit(
    pool: &Pool<AsyncPgConnection>,
    term: i64,
    first_index: i64,
    state: &ClusterState,
    commands: &[&Command],
    touched: &Touched,
    retired: &[HistoryOp],
) -> Result<(), BatchError> {
    let indexes: Vec<i64> = (0..commands.len()).map(|i| first_index + i64::try_from(i).unwrap_or(i64::MAX)).collect();
    let texts: Vec<String> = commands.iter().map(crate::rows::json_text).collect();
    // Labelled with the newest format among them, so rows without a cron
    // command stay readable to a binary of the first cut.
    let format = commands.iter().map(|c| c.format()).max().map_or(1, |f| i16::try_from(f).unwrap_or(LOG_FORMAT));
    let mut conn = pool.get().await.map_err(|e| BatchError::NotStored(e.to_string()))?;
    // Set once the body has run: only then is COMMIT sent, so only then can a
    // failure leave the batch stored.
    let body_done = std::sync::atomic::AtomicBool::new(false);
    let result = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            check_term(conn, term).await?;
            diesel::sql_query(
                "INSERT INTO archon_log (index, term, command, format) \
                 SELECT i, $2, c::jsonb, $4 FROM unnest($1::bigint[], $3::text[]) AS t(i, c)",
            )
            .bind::<diesel::sql_types::Array<BigInt>, _>(&indexes)
            .bind::<BigInt, _>(term)
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&texts)
            .bind::<diesel::sql_types::SmallInt, _>(format)
            .execute(conn)
            .await?;
            touched.write(state, conn).await?;
            crate::history::write(retired, conn).await?;
            body_done.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .await;
    let sent_commit = body_done.into_inner();
    match result {
        Ok(()) => Ok(()),
        Err(diesel::result::Error::RollbackTransaction) => Err(BatchError::Deposed),
        Err(e) if sent_commit => Err(BatchError::InDoubt(e.to_string())),
        Err(e) => Err(BatchError::NotStored(e.to_string())),
    }
}
