//! Abandoned turns in the database (`pam_abandoned_turns`): written when a turn is given up on
//! (a drain's grace ended: with its unanswered mark; a dead node's turn ended by another node),
//! and read back at every scrape of `/metrics` as `pam_turns_abandoned_recent{cause}` — the
//! turns abandoned across the gateway in the last 15 minutes. A process's own counter moves
//! moments before it exits and a killed one counts nothing, so only a count outside the process
//! reaches Prometheus; every node exports it, so a 15 s scrape of any survivor (or of the next
//! process on the same database) sees it.
//!
//! Why a windowed gauge without a node label rather than a counter: a counter read from storage
//! starts a new series at its full value on a new pod (a replaced single replica has a new
//! `instance`), where `increase()` sees nothing; the window's count is above zero on every node
//! for 15 minutes whoever scrapes it. Labels stay a closed set (`cause`: `shutdown`, `crash`):
//! node ids are hostnames with a random suffix, one series per pod ever abandoned would grow
//! without bound; which node and which turns are in the rows and the logs.

use std::time::Duration;

use pam_actors::{AbandonCause, AbandonedTurn, StoreError};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::database::Database;
use super::sql::{store_error, user_uuid};

/// The alert's look-back: turns recorded this recently are exported.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Scrapes closer together than this share one read (`/metrics` is unauthenticated: a flood of
/// requests costs one query per interval).
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// A scrape never waits longer than this for the database; the last count stays exported.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Rows are kept this long for whoever investigates, then deleted (checked this often).
const KEEP_DAYS: i64 = 7;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// When this node last read the count and pruned old rows.
#[derive(Default)]
pub struct AbandonedExport {
    times: Mutex<ExportTimes>,
}

#[derive(Default)]
struct ExportTimes {
    read: Option<Instant>,
    pruned: Option<Instant>,
}

impl AbandonedExport {
    /// Before a scrape renders: sets `pam_turns_abandoned_recent{cause}` from the database, unless
    /// it was read within [`REFRESH_EVERY`]. An unreadable database keeps the last values (an
    /// alert firing stays firing; one line says why).
    pub async fn refresh(&self, db: &Database) {
        let mut times = self.times.lock().await;
        if times.read.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return;
        }
        times.read = Some(Instant::now());
        match tokio::time::timeout(READ_TIMEOUT, db.abandoned_within(WINDOW)).await {
            Ok(Ok(counts)) => {
                for cause in AbandonCause::ALL {
                    let count = counts.iter().find(|(c, _)| *c == cause).map_or(0, |(_, n)| *n);
                    metrics::gauge!(pam_actors::metrics_names::TURNS_ABANDONED_RECENT, "cause" => cause.as_str()).set(count as f64);
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "could not read the abandoned-turn count; /metrics keeps the last one"),
            Err(_) => tracing::warn!("the abandoned-turn count took too long to read; /metrics keeps the last one"),
        }
        if times.pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            times.pruned = Some(Instant::now());
            if let Ok(Err(error)) = tokio::time::timeout(READ_TIMEOUT, db.prune_abandoned()).await {
                tracing::warn!(%error, "could not delete old abandoned-turn rows");
            }
        }
    }
}

impl Database {
    /// Turns recorded as abandoned within `window`, per cause (unknown causes are left out: the
    /// label set is closed).
    pub async fn abandoned_within(&self, window: Duration) -> Result<Vec<(AbandonCause, u64)>, StoreError> {
        let _timer = crate::observability::QueryTimer::start("abandoned_recent");
        let seconds = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64)> = match self {
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT cause, count(*) FROM pam_abandoned_turns
                     WHERE recorded_at > now() - make_interval(secs => $1::double precision) GROUP BY cause",
                )
                .persistent(false)
                .bind(seconds as f64)
                .fetch_all(pool)
                .await
            }
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT cause, count(*) FROM pam_abandoned_turns
                     WHERE recorded_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1) GROUP BY cause",
                )
                .bind(format!("-{seconds} seconds"))
                .fetch_all(pool)
                .await
            }
        }
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|(cause, n)| AbandonCause::ALL.into_iter().find(|c| c.as_str() == cause).map(|c| (c, n.max(0) as u64)))
            .collect())
    }

    /// Deletes rows older than [`KEEP_DAYS`].
    async fn prune_abandoned(&self) -> Result<(), StoreError> {
        match self {
            Database::Postgres(pool) => {
                sqlx::query("DELETE FROM pam_abandoned_turns WHERE recorded_at < now() - make_interval(days => $1::int)")
                    .persistent(false)
                    .bind(KEEP_DAYS as i32)
                    .execute(pool)
                    .await
                    .map(drop)
            }
            Database::Sqlite(pool) => {
                sqlx::query("DELETE FROM pam_abandoned_turns WHERE recorded_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)")
                    .bind(format!("-{KEEP_DAYS} days"))
                    .execute(pool)
                    .await
                    .map(drop)
            }
        }
        .map_err(store_error)
    }
}

/// Inserts `turns` on Postgres (inside the caller's transaction or not); how many were new.
pub(crate) async fn insert_postgres<'c>(executor: impl sqlx::PgExecutor<'c>, turns: &[AbandonedTurn]) -> Result<usize, StoreError> {
    let mut users = Vec::with_capacity(turns.len());
    for turn in turns {
        users.push(user_uuid(&turn.user)?);
    }
    let ids: Vec<&str> = turns.iter().map(|t| t.client_msg_id.as_str()).collect();
    let nodes: Vec<&str> = turns.iter().map(|t| t.node.as_str()).collect();
    let boots: Vec<&str> = turns.iter().map(|t| t.boot.as_deref().unwrap_or_default()).collect();
    let causes: Vec<&str> = turns.iter().map(|t| t.cause.as_str()).collect();
    let done = sqlx::query(
        "INSERT INTO pam_abandoned_turns (user_id, client_msg_id, node, boot, cause)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT DO NOTHING",
    )
    .persistent(false)
    .bind(users)
    .bind(ids)
    .bind(nodes)
    .bind(boots)
    .bind(causes)
    .execute(executor)
    .await
    .map_err(store_error)?;
    Ok(done.rows_affected() as usize)
}

/// Inserts `turns` on SQLite, one statement each on `connection` (the caller's transaction).
pub(crate) async fn insert_sqlite(connection: &mut sqlx::SqliteConnection, turns: &[AbandonedTurn]) -> Result<usize, StoreError> {
    let mut new = 0;
    for turn in turns {
        let done = sqlx::query(
            "INSERT INTO pam_abandoned_turns (user_id, client_msg_id, node, boot, cause) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )
        .bind(turn.user.as_str())
        .bind(&turn.client_msg_id)
        .bind(&turn.node)
        .bind(turn.boot.as_deref().unwrap_or_default())
        .bind(turn.cause.as_str())
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
        new += done.rows_affected() as usize;
    }
    Ok(new)
}
