//! `NotificationStore` on the gateway's database (`pam_notifications`). Postgres claims due
//! timers with `FOR UPDATE SKIP LOCKED` in a transaction committed only after their publish
//! (`claim_due_postgres` says why), so nodes sharing the database never fire a row twice and a
//! node that dies before publishing leaves its rows to the others;
//! SQLite does each multi-statement write in one `BEGIN IMMEDIATE` transaction (the database's
//! write lock). SQLite timestamps are UTC text `%Y-%m-%dT%H:%M:%fZ`, which compares as time.
//!
//! Group commit: fired pushes (no dedupe key, no pending limit) and `mark_delivered` are the
//! writes of every push, one each, at thousands a second. Their callers hand them to one writer
//! task per database pool, which writes whatever is queued when it is free (at most
//! [`MAX_BATCH`]) in one transaction and answers each caller; see [`GroupCommit`].

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};
use pam_actors::{
    BoxFuture, CLAIM_HOLD, DueClaim, Inserted, NewNotification, Notification, NotificationKind, NotificationStore, StoreError,
    WAITING_ALERTS, WAITING_TIMERS, waiting_batch,
};
use pam_protocol::UserId;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::storage::database::Database;
use crate::storage::sql::{FetchedRows, sqlite_time, store_error, user_uuid};

/// Most timers `listed_timers` and `pending_timers` return (a user has at most 50 pending; fired
/// ones are listed until dismissed or 24 h old).
const LISTED_TIMERS_LIMIT: i64 = 200;
/// The per-kind counts of `undelivered` as SQL `LIMIT`s.
const WAITING_ALERTS_LIMIT: i64 = WAITING_ALERTS as i64;
const WAITING_TIMERS_LIMIT: i64 = WAITING_TIMERS as i64;

/// The columns every read returns, in [`Notification`] order.
macro_rules! pg_columns {
    () => {
        "id::text AS id, user_id::text AS user_id, kind, payload, fire_at, fired_at, delivered_at, expires_at, COALESCE(created_at, fire_at) AS created_at"
    };
}
macro_rules! sqlite_columns {
    () => {
        "id, user_id, kind, payload, fire_at, fired_at, delivered_at, expires_at, COALESCE(created_at, fire_at) AS created_at"
    };
}
/// SQLite's "now" in the stored text format.
macro_rules! sqlite_now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

fn parse_sqlite_time(text: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| StoreError::Unavailable(format!("stored time {t:?}: {e}")))
    })
    .transpose()
}

fn user_id(text: String) -> Result<UserId, StoreError> {
    UserId::parse(&text).map_err(|e| StoreError::Unavailable(format!("stored user id {text:?}: {e}")))
}

fn kind(text: &str) -> Result<NotificationKind, StoreError> {
    NotificationKind::parse(text).ok_or_else(|| StoreError::Unavailable(format!("unknown notification kind {text:?}")))
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Result<Notification, StoreError> {
    let get = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
    Ok(Notification {
        id: row.try_get("id").map_err(get)?,
        user: user_id(row.try_get::<String, _>("user_id").map_err(get)?)?,
        kind: kind(row.try_get::<&str, _>("kind").map_err(get)?)?,
        payload: row.try_get::<Value, _>("payload").map_err(get)?,
        fire_at: row.try_get("fire_at").map_err(get)?,
        fired_at: row.try_get("fired_at").map_err(get)?,
        delivered_at: row.try_get("delivered_at").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<Notification, StoreError> {
    let get = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
    let time = |column: &str| parse_sqlite_time(row.try_get::<Option<String>, _>(column).map_err(get)?);
    let payload: String = row.try_get("payload").map_err(get)?;
    Ok(Notification {
        id: row.try_get("id").map_err(get)?,
        user: user_id(row.try_get::<String, _>("user_id").map_err(get)?)?,
        kind: kind(row.try_get::<&str, _>("kind").map_err(get)?)?,
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::Unavailable(format!("stored payload: {e}")))?,
        fire_at: time("fire_at")?.ok_or_else(|| StoreError::Unavailable("fire_at is null".into()))?,
        fired_at: time("fired_at")?,
        delivered_at: time("delivered_at")?,
        expires_at: time("expires_at")?,
        created_at: time("created_at")?.ok_or_else(|| StoreError::Unavailable("created_at is null".into()))?,
    })
}

fn by_fire_time(mut rows: Vec<Notification>) -> Vec<Notification> {
    rows.sort_by(|a, b| a.fire_at.cmp(&b.fire_at).then_with(|| a.created_at.cmp(&b.created_at)));
    rows
}

/// How long a fired timer stays listed (and re-sent on connect) until dismissed.
const FIRED_TIMER_SHOWN: &str = "24 hours";

impl Database {
    /// What `GET /api/v1/pam/timers` lists: the user's pending timers and those fired in the last
    /// 24 h but not dismissed (the ones still re-sent on every connect), by `fire_at`.
    pub async fn listed_timers(&self, user: &UserId) -> Result<Vec<Notification>, StoreError> {
        let _timer = crate::observability::QueryTimer::start("notification_listed_timers");
        match self {
            Database::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                pg_columns!(),
                " FROM pam_notifications
                 WHERE user_id = $1 AND kind = 'timer_expired' AND dismissed_at IS NULL
                   AND (fired_at IS NULL OR fired_at > now() - $3::interval)
                 ORDER BY fire_at LIMIT $2"
            ))
            .persistent(false)
            .bind(user_uuid(user)?)
            .bind(LISTED_TIMERS_LIMIT)
            .bind(FIRED_TIMER_SHOWN)
            .fetch_all(pool)
            .await
            .rows(pg_row),
            Database::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                sqlite_columns!(),
                " FROM pam_notifications
                 WHERE user_id = ?1 AND kind = 'timer_expired' AND dismissed_at IS NULL
                   AND (fired_at IS NULL OR fired_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?3))
                 ORDER BY fire_at LIMIT ?2"
            ))
            .bind(user.as_str())
            .bind(LISTED_TIMERS_LIMIT)
            .bind(FIRED_TIMER_SHOWN)
            .fetch_all(pool)
            .await
            .rows(sqlite_row),
        }
    }
}

impl NotificationStore for Database {
    fn insert<'a>(&'a self, row: &'a NewNotification) -> BoxFuture<'a, Result<Inserted, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("notification_insert");
            if row.fired && row.dedupe_key.is_none() && row.max_pending.is_none() {
                // A push: nothing to check first, so the row can share a transaction with others.
                user_uuid(&row.user)?;
                return match GroupCommit::write(self, Write::Insert(row.clone())).await? {
                    Written::Inserted(id) => Ok(Inserted::New(id)),
                    Written::Marked => Err(StoreError::Unavailable("the group commit answered an insert with an update".into())),
                };
            }
            let fired_at = row.fired.then_some(row.fire_at);
            let max_pending = row.max_pending.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            match self {
                Database::Postgres(pool) => {
                    let user = user_uuid(&row.user)?;
                    let mut tx = pool.begin().await.map_err(store_error)?;
                    if let Some(max) = max_pending {
                        // Serialises this user's limited inserts, so the count is exact.
                        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('pam_notifications:' || $1::text, 0))")
                            .persistent(false)
                            .bind(user)
                            .execute(&mut *tx)
                            .await
                            .map_err(store_error)?;
                        let pending: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM pam_notifications WHERE user_id = $1 AND fired_at IS NULL AND dismissed_at IS NULL",
                        )
                        .persistent(false)
                        .bind(user)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(store_error)?;
                        if pending >= max {
                            return Ok(Inserted::TooManyPending);
                        }
                    }
                    let id: Option<String> = sqlx::query_scalar(
                        "INSERT INTO pam_notifications (user_id, kind, payload, fire_at, fired_at, expires_at, dedupe_key)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                         RETURNING id::text",
                    )
                    .persistent(false)
                    .bind(user)
                    .bind(row.kind.as_str())
                    .bind(&row.payload)
                    .bind(row.fire_at)
                    .bind(fired_at)
                    .bind(row.expires_at)
                    .bind(&row.dedupe_key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(store_error)?;
                    tx.commit().await.map_err(store_error)?;
                    Ok(id.map_or(Inserted::Duplicate, Inserted::New))
                }
                Database::Sqlite(pool) => {
                    user_uuid(&row.user)?;
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
                    if let Some(max) = max_pending {
                        let pending: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM pam_notifications WHERE user_id = ?1 AND fired_at IS NULL AND dismissed_at IS NULL",
                        )
                        .bind(row.user.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(store_error)?;
                        if pending >= max {
                            return Ok(Inserted::TooManyPending);
                        }
                    }
                    let id: Option<String> = sqlx::query_scalar(
                        "INSERT INTO pam_notifications (user_id, kind, payload, fire_at, fired_at, expires_at, dedupe_key)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                         RETURNING id",
                    )
                    .bind(row.user.as_str())
                    .bind(row.kind.as_str())
                    .bind(row.payload.to_string())
                    .bind(sqlite_time(row.fire_at))
                    .bind(fired_at.map(sqlite_time))
                    .bind(row.expires_at.map(sqlite_time))
                    .bind(&row.dedupe_key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(store_error)?;
                    tx.commit().await.map_err(store_error)?;
                    Ok(id.map_or(Inserted::Duplicate, Inserted::New))
                }
            }
        })
    }

    fn claim_due<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Box<dyn DueClaim>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("notification_claim_due");
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            match self {
                Database::Postgres(pool) => claim_due_postgres(pool, limit).await,
                Database::Sqlite(pool) => claim_due_sqlite(pool, limit).await,
            }
        })
    }

    fn undelivered<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("notification_undelivered");
            // One round trip, each kind's list read in its own order up to its own count;
            // `waiting_batch` orders the two and cuts each to its byte share.
            let rows = match self {
                Database::Postgres(pool) => sqlx::query(concat!(
                    "SELECT * FROM (SELECT ",
                    pg_columns!(),
                    " FROM pam_notifications
                       WHERE user_id = $1 AND kind = 'proactive_alert' AND fired_at IS NOT NULL AND delivered_at IS NULL
                         AND dismissed_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                       ORDER BY fired_at DESC, fire_at DESC, created_at DESC, id DESC LIMIT $2) AS alerts
                     UNION ALL
                     SELECT * FROM (SELECT ",
                    pg_columns!(),
                    " FROM pam_notifications
                       WHERE user_id = $1 AND kind = 'timer_expired' AND fired_at > now() - interval '24 hours'
                         AND dismissed_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                       ORDER BY fired_at, fire_at, created_at, id LIMIT $3) AS timers"
                ))
                .persistent(false)
                .bind(user_uuid(user)?)
                .bind(WAITING_ALERTS_LIMIT)
                .bind(WAITING_TIMERS_LIMIT)
                .fetch_all(pool)
                .await
                .rows(pg_row)?,
                Database::Sqlite(pool) => sqlx::query(concat!(
                    "SELECT * FROM (SELECT ",
                    sqlite_columns!(),
                    " FROM pam_notifications
                       WHERE user_id = ?1 AND kind = 'proactive_alert' AND fired_at IS NOT NULL AND delivered_at IS NULL
                         AND dismissed_at IS NULL AND (expires_at IS NULL OR expires_at > ",
                    sqlite_now!(),
                    ")
                       ORDER BY fired_at DESC, fire_at DESC, created_at DESC, id DESC LIMIT ?2) AS alerts
                     UNION ALL
                     SELECT * FROM (SELECT ",
                    sqlite_columns!(),
                    " FROM pam_notifications
                       WHERE user_id = ?1 AND kind = 'timer_expired' AND fired_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-24 hours')
                         AND dismissed_at IS NULL AND (expires_at IS NULL OR expires_at > ",
                    sqlite_now!(),
                    ")
                       ORDER BY fired_at, fire_at, created_at, id LIMIT ?3) AS timers"
                ))
                .bind(user.as_str())
                .bind(WAITING_ALERTS_LIMIT)
                .bind(WAITING_TIMERS_LIMIT)
                .fetch_all(pool)
                .await
                .rows(sqlite_row)?,
            };
            Ok(waiting_batch(rows))
        })
    }

    fn waiting_by_ids<'a>(&'a self, user: &'a UserId, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let rows = match self {
                Database::Postgres(pool) => {
                    let uuids: Vec<Uuid> = ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect();
                    sqlx::query(concat!(
                        "SELECT ",
                        pg_columns!(),
                        " FROM pam_notifications
                           WHERE user_id = $1 AND id = ANY($2) AND fired_at IS NOT NULL AND dismissed_at IS NULL
                             AND (expires_at IS NULL OR expires_at > now())
                             AND ((kind = 'proactive_alert' AND delivered_at IS NULL)
                               OR (kind = 'timer_expired' AND fired_at > now() - interval '24 hours'))"
                    ))
                    .persistent(false)
                    .bind(user_uuid(user)?)
                    .bind(uuids)
                    .fetch_all(pool)
                    .await
                    .rows(pg_row)?
                }
                Database::Sqlite(pool) => sqlx::query(concat!(
                    "SELECT ",
                    sqlite_columns!(),
                    " FROM pam_notifications
                       WHERE user_id = ?1 AND id IN (SELECT value FROM json_each(?2)) AND fired_at IS NOT NULL
                         AND dismissed_at IS NULL AND (expires_at IS NULL OR expires_at > ",
                    sqlite_now!(),
                    ")
                         AND ((kind = 'proactive_alert' AND delivered_at IS NULL)
                           OR (kind = 'timer_expired' AND fired_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-24 hours')))"
                ))
                .bind(user.as_str())
                .bind(Value::from(ids.to_vec()).to_string())
                .fetch_all(pool)
                .await
                .rows(sqlite_row)?,
            };
            let mut rows = rows;
            rows.sort_by_key(|row| ids.iter().position(|id| *id == row.id));
            Ok(rows)
        })
    }

    fn pending_timers<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            let rows = match self {
                Database::Postgres(pool) => sqlx::query(concat!(
                    "SELECT ",
                    pg_columns!(),
                    " FROM pam_notifications
                     WHERE user_id = $1 AND kind = 'timer_expired' AND fired_at IS NULL AND dismissed_at IS NULL
                     ORDER BY fire_at LIMIT $2"
                ))
                .persistent(false)
                .bind(user_uuid(user)?)
                .bind(LISTED_TIMERS_LIMIT)
                .fetch_all(pool)
                .await
                .rows(pg_row)?,
                Database::Sqlite(pool) => sqlx::query(concat!(
                    "SELECT ",
                    sqlite_columns!(),
                    " FROM pam_notifications
                     WHERE user_id = ?1 AND kind = 'timer_expired' AND fired_at IS NULL AND dismissed_at IS NULL
                     ORDER BY fire_at LIMIT ?2"
                ))
                .bind(user.as_str())
                .bind(LISTED_TIMERS_LIMIT)
                .fetch_all(pool)
                .await
                .rows(sqlite_row)?,
            };
            Ok(rows)
        })
    }

    fn mark_delivered<'a>(&'a self, user: &'a UserId, ids: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            user_uuid(user)?;
            match GroupCommit::write(self, Write::Delivered(user.clone(), ids.to_vec())).await? {
                Written::Marked => Ok(()),
                Written::Inserted(_) => Err(StoreError::Unavailable("the group commit answered an update with an insert".into())),
            }
        })
    }

    fn dismiss<'a>(&'a self, user: &'a UserId, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let affected = match self {
                Database::Postgres(pool) => {
                    let Ok(id) = Uuid::parse_str(id) else { return Ok(false) };
                    sqlx::query("UPDATE pam_notifications SET dismissed_at = now() WHERE id = $1 AND user_id = $2 AND dismissed_at IS NULL")
                        .persistent(false)
                        .bind(id)
                        .bind(user_uuid(user)?)
                        .execute(pool)
                        .await
                        .map_err(store_error)?
                        .rows_affected()
                }
                Database::Sqlite(pool) => sqlx::query(concat!(
                    "UPDATE pam_notifications SET dismissed_at = ",
                    sqlite_now!(),
                    " WHERE id = ?1 AND user_id = ?2 AND dismissed_at IS NULL"
                ))
                .bind(id)
                .bind(user.as_str())
                .execute(pool)
                .await
                .map_err(store_error)?
                .rows_affected(),
            };
            Ok(affected > 0)
        })
    }

    fn count_pending<'a>(&'a self) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let count: i64 = match self {
                Database::Postgres(pool) => sqlx::query_scalar(
                    "SELECT count(*) FROM pam_notifications WHERE kind = 'timer_expired' AND fired_at IS NULL AND dismissed_at IS NULL",
                )
                .persistent(false)
                .fetch_one(pool)
                .await
                .map_err(store_error)?,
                Database::Sqlite(pool) => sqlx::query_scalar(
                    "SELECT count(*) FROM pam_notifications WHERE kind = 'timer_expired' AND fired_at IS NULL AND dismissed_at IS NULL",
                )
                .fetch_one(pool)
                .await
                .map_err(store_error)?,
            };
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }
}

/// Postgres, shared by every node: the rows are claimed in a transaction that stays open until
/// the scheduler has published them (`DueClaim::commit`). Why: a claim committed before its
/// publish marks a timer fired that no socket on another node may ever get if the node dies in
/// between; here a node that dies (or drops the claim) at any instruction before the commit
/// leaves its rows unfired, and Postgres releases their locks when its connection ends, so the
/// next tick of any node claims them. A crash right after the publish but before the commit
/// publishes them twice, which sockets and clients drop by push id. `FOR UPDATE SKIP LOCKED`
/// keeps other nodes off the rows meanwhile without waiting; `idle_in_transaction_session_timeout`
/// (twice [`CLAIM_HOLD`]) ends a claim whose node stalls without dying, so no stall holds the
/// rows for longer.
async fn claim_due_postgres(pool: &crate::storage::postgres_pool::PostgresPool, limit: i64) -> Result<Box<dyn DueClaim>, StoreError> {
    // Every node asks 4 times a second: a plain read first, so a transaction is begun only when
    // something is due.
    let due: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pam_notifications WHERE fired_at IS NULL AND dismissed_at IS NULL AND fire_at <= now() LIMIT 1")
            .persistent(false)
            .fetch_optional(pool)
            .await
            .map_err(store_error)?;
    if due.is_none() {
        return Ok(Box::new(FinalClaim(Vec::new())));
    }
    let mut tx = pool.begin().await.map_err(store_error)?;
    sqlx::query("SELECT set_config('idle_in_transaction_session_timeout', $1, true)")
        .persistent(false)
        .bind(format!("{}ms", (2 * CLAIM_HOLD).as_millis()))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    let rows = sqlx::query(concat!(
        "UPDATE pam_notifications SET fired_at = now() WHERE id IN (
           SELECT id FROM pam_notifications
           WHERE fired_at IS NULL AND dismissed_at IS NULL AND fire_at <= now()
           ORDER BY fire_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING ",
        pg_columns!()
    ))
    .persistent(false)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .rows(pg_row)?;
    if rows.is_empty() {
        // Another node holds them; nothing to keep open.
        tx.rollback().await.map_err(store_error)?;
        return Ok(Box::new(FinalClaim(Vec::new())));
    }
    Ok(Box::new(OpenClaim { tx, rows: by_fire_time(rows) }))
}

/// SQLite is one node's database: the claim is committed at once. A node that dies before
/// publishing takes its sockets with it, and every reconnect gets the fired timer from the store
/// (re-sent until dismissed), so nothing waits on a publish that never happened; holding the
/// write lock across a publish would instead stall every other write of the node.
async fn claim_due_sqlite(pool: &sqlx::SqlitePool, limit: i64) -> Result<Box<dyn DueClaim>, StoreError> {
    // Every node asks 4 times a second: a plain read first (WAL readers take no lock), so the
    // write lock is taken only when something is due.
    let due: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT 1 FROM pam_notifications WHERE fired_at IS NULL AND dismissed_at IS NULL AND fire_at <= ",
        sqlite_now!(),
        " LIMIT 1"
    ))
    .fetch_optional(pool)
    .await
    .map_err(store_error)?;
    if due.is_none() {
        return Ok(Box::new(FinalClaim(Vec::new())));
    }
    // One write transaction: the select and the update see the same rows.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
    let rows = sqlx::query(concat!(
        "UPDATE pam_notifications SET fired_at = ",
        sqlite_now!(),
        " WHERE id IN (
           SELECT id FROM pam_notifications
           WHERE fired_at IS NULL AND dismissed_at IS NULL AND fire_at <= ",
        sqlite_now!(),
        " ORDER BY fire_at LIMIT ?1)
         RETURNING ",
        sqlite_columns!()
    ))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .rows(sqlite_row)?;
    tx.commit().await.map_err(store_error)?;
    Ok(Box::new(FinalClaim(by_fire_time(rows))))
}

/// A Postgres claim: the rows' update, not yet committed (rolled back if dropped).
struct OpenClaim {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rows: Vec<Notification>,
}

impl DueClaim for OpenClaim {
    fn rows(&self) -> &[Notification] {
        &self.rows
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("notification_claim_commit");
            self.tx.commit().await.map_err(store_error)
        })
    }
}

/// A claim that is final already (SQLite's, or an empty one).
struct FinalClaim(Vec<Notification>);

impl DueClaim for FinalClaim {
    fn rows(&self) -> &[Notification] {
        &self.0
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Most writes one group commit takes (the rest wait for the next).
pub const MAX_BATCH: usize = 512;
/// Writes queued for a pool's writer at most; a caller beyond this waits for room.
const QUEUE: usize = 2 * MAX_BATCH;
/// Batches a Postgres writer commits at once. Under load a commit's time is mostly waiting (the
/// round trip, the WAL flush, a busy runtime scheduling the writer again), not work, so a second
/// batch need not wait for the first; when idle there is one batch of one. SQLite has one writer
/// at a time (a second would only sleep in its busy handler): one batch at a time there.
const POSTGRES_COMMITS_IN_FLIGHT: usize = 4;

/// A write the group commit takes.
#[derive(Debug)]
enum Write {
    /// A fired row with no dedupe key and no pending limit (a push).
    Insert(NewNotification),
    /// `mark_delivered(user, ids)`.
    Delivered(UserId, Vec<String>),
}

/// What a [`Write`] did: the new row's id, or the rows marked.
#[derive(Debug)]
enum Written {
    Inserted(String),
    Marked,
}

/// A write handed to a writer, with its pool (the writer keeps none, so a dropped pool is freed)
/// and where its caller waits.
struct Queued {
    db: Database,
    write: Write,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// The writer of one pool: its queue, and the pool's connect options held weakly — that pins
/// the options' address (no other pool can get it while this entry lives) without keeping the
/// pool alive; once the pool is gone the entry is dropped, which ends the writer.
struct Writer {
    pool: Weak<dyn Any + Send + Sync>,
    queue: mpsc::Sender<Queued>,
}

/// One writer task per pool. `Database` is a bare pool handle cloned all over the gateway, so
/// the writers are found by the pool they write to rather than kept in it.
static WRITERS: Mutex<Vec<Writer>> = Mutex::new(Vec::new());

/// Group commit: callers [`GroupCommit::write`]; the pool's writer task takes whatever is queued
/// (at least one write, at most [`MAX_BATCH`], never waiting for more, so an idle store adds no
/// latency) and writes it in one transaction, then answers every caller of the batch; up to
/// [`POSTGRES_COMMITS_IN_FLIGHT`] batches are committed at once on Postgres. A caller
/// dropped after handing its write over changes nothing: the writer owns it from then on.
struct GroupCommit;

impl GroupCommit {
    /// Hands `write` to the writer of `db`'s pool and waits for its answer. An error of the
    /// batch reaches each of its callers, except that a batch the database refuses
    /// ([`StoreError::Rejected`]) is written again a write at a time, so one bad row fails only
    /// its own caller.
    async fn write(db: &Database, write: Write) -> Result<Written, StoreError> {
        let (reply, answer) = oneshot::channel();
        let mut queued = Queued { db: db.clone(), write, reply };
        // A writer whose runtime shut down refuses the write back (nothing written): a new one is
        // started; a runtime that is shutting down refuses again, so the tries are few.
        for _ in 0..3 {
            match Self::queue(db).send(queued).await {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the notification writer stopped".into())));
                }
                Err(mpsc::error::SendError(back)) => queued = back,
            }
        }
        Err(StoreError::Unavailable("no notification writer could be started".into()))
    }

    /// The queue of `db`'s writer, started on this runtime when there is none.
    fn queue(db: &Database) -> mpsc::Sender<Queued> {
        let pool: Arc<dyn Any + Send + Sync> = match db {
            Database::Postgres(pool) => pool.connect_options(),
            Database::Sqlite(pool) => pool.connect_options(),
        };
        let mut writers = WRITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writers.retain(|writer| writer.pool.strong_count() > 0 && !writer.queue.is_closed());
        if let Some(writer) = writers.iter().find(|writer| std::ptr::addr_eq(writer.pool.as_ptr(), Arc::as_ptr(&pool))) {
            return writer.queue.clone();
        }
        let (queue, received) = mpsc::channel(QUEUE);
        let in_flight = match db {
            Database::Postgres(_) => POSTGRES_COMMITS_IN_FLIGHT,
            Database::Sqlite(_) => 1,
        };
        tokio::spawn(Self::run(received, in_flight));
        writers.push(Writer { pool: Arc::downgrade(&pool), queue: queue.clone() });
        queue
    }

    /// The writer, until its queue is dropped: whenever fewer than `in_flight` batches are being
    /// committed, what is queued becomes the next batch.
    async fn run(mut received: mpsc::Receiver<Queued>, in_flight: usize) {
        use futures_util::StreamExt;
        let mut commits = futures_util::stream::FuturesUnordered::new();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                taken = received.recv_many(&mut batch, MAX_BATCH), if commits.len() < in_flight => {
                    if taken == 0 {
                        break;
                    }
                    commits.push(Self::commit(std::mem::take(&mut batch)));
                }
                Some(()) = commits.next(), if !commits.is_empty() => {}
            }
        }
        while commits.next().await.is_some() {}
    }

    async fn commit(batch: Vec<Queued>) {
        let Some(db) = batch.first().map(|queued| queued.db.clone()) else { return };
        let writes: Vec<&Write> = batch.iter().map(|queued| &queued.write).collect();
        match write_batch(&db, &writes).await {
            Ok(written) => {
                for (queued, written) in batch.into_iter().zip(written) {
                    let _ = queued.reply.send(Ok(written));
                }
            }
            Err(StoreError::Rejected(_)) if batch.len() > 1 => {
                for queued in batch {
                    let written = write_batch(&db, &[&queued.write])
                        .await
                        .and_then(|mut written| written.pop().ok_or_else(|| StoreError::Unavailable("a write had no outcome".into())));
                    let _ = queued.reply.send(written);
                }
            }
            Err(error) => {
                for queued in batch {
                    let _ = queued.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Writes `writes` in one transaction (timed as `notification_group_commit` in
/// `pam_db_query_seconds`); their outcomes in the same order.
async fn write_batch(db: &Database, writes: &[&Write]) -> Result<Vec<Written>, StoreError> {
    let _timer = crate::observability::QueryTimer::start("notification_group_commit");
    match db {
        Database::Postgres(pool) => write_batch_postgres(pool, writes).await,
        Database::Sqlite(pool) => write_batch_sqlite(pool, writes).await,
    }
}

/// Postgres: one multi-row INSERT (ids made here, so no reliance on the order `RETURNING`
/// gives) and one UPDATE for every user's delivered rows; one transaction when there are both.
async fn write_batch_postgres(pool: &crate::storage::postgres_pool::PostgresPool, writes: &[&Write]) -> Result<Vec<Written>, StoreError> {
    let mut new = PgNewRows::default();
    let (mut marked_ids, mut marked_users) = (Vec::new(), Vec::new());
    let mut written = Vec::with_capacity(writes.len());
    for write in writes {
        match write {
            Write::Insert(row) => {
                let id = Uuid::new_v4();
                new.id.push(id);
                new.user.push(user_uuid(&row.user)?);
                new.kind.push(row.kind.as_str());
                new.payload.push(row.payload.clone());
                new.fire_at.push(row.fire_at);
                new.fired_at.push(row.fired.then_some(row.fire_at));
                new.expires_at.push(row.expires_at);
                written.push(Written::Inserted(id.to_string()));
            }
            Write::Delivered(user, ids) => {
                let user = user_uuid(user)?;
                for id in ids.iter().filter_map(|id| Uuid::parse_str(id).ok()) {
                    marked_ids.push(id);
                    marked_users.push(user);
                }
                written.push(Written::Marked);
            }
        }
    }
    let (inserts, marks) = (!new.id.is_empty(), !marked_ids.is_empty());
    let insert = sqlx::query(
        "INSERT INTO pam_notifications (id, user_id, kind, payload, fire_at, fired_at, expires_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[])",
    )
    .persistent(false)
    .bind(new.id)
    .bind(new.user)
    .bind(new.kind)
    .bind(new.payload)
    .bind(new.fire_at)
    .bind(new.fired_at)
    .bind(new.expires_at);
    let mark = sqlx::query(
        "UPDATE pam_notifications AS n SET delivered_at = now()
         FROM unnest($1::uuid[], $2::uuid[]) AS d(id, user_id)
         WHERE n.id = d.id AND n.user_id = d.user_id AND n.delivered_at IS NULL",
    )
    .persistent(false)
    .bind(marked_ids)
    .bind(marked_users);
    match (inserts, marks) {
        (true, true) => {
            let mut tx = pool.begin().await.map_err(store_error)?;
            insert.execute(&mut *tx).await.map_err(store_error)?;
            mark.execute(&mut *tx).await.map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
        }
        // One statement is its own transaction.
        (true, false) => {
            insert.execute(pool).await.map_err(store_error)?;
        }
        (false, true) => {
            mark.execute(pool).await.map_err(store_error)?;
        }
        (false, false) => {}
    }
    Ok(written)
}

/// The columns of a multi-row Postgres insert, one array each.
#[derive(Default)]
struct PgNewRows {
    id: Vec<Uuid>,
    user: Vec<Uuid>,
    kind: Vec<&'static str>,
    payload: Vec<Value>,
    fire_at: Vec<DateTime<Utc>>,
    fired_at: Vec<Option<DateTime<Utc>>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
}

/// SQLite: a statement per write, in one `BEGIN IMMEDIATE` transaction (one commit, one WAL
/// sync for the batch); a lone write is its own transaction (no `BEGIN`/`COMMIT` round trips
/// when the store is idle).
async fn write_batch_sqlite(pool: &sqlx::SqlitePool, writes: &[&Write]) -> Result<Vec<Written>, StoreError> {
    if let [write] = writes {
        let mut connection = pool.acquire().await.map_err(store_error)?;
        return Ok(vec![write_sqlite(&mut connection, write).await?]);
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
    let mut written = Vec::with_capacity(writes.len());
    for write in writes {
        written.push(write_sqlite(&mut tx, write).await?);
    }
    tx.commit().await.map_err(store_error)?;
    Ok(written)
}

/// One write's statement on SQLite.
async fn write_sqlite(connection: &mut sqlx::SqliteConnection, write: &Write) -> Result<Written, StoreError> {
    match write {
        Write::Insert(row) => {
            let id: String = sqlx::query_scalar(
                "INSERT INTO pam_notifications (user_id, kind, payload, fire_at, fired_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 RETURNING id",
            )
            .bind(row.user.as_str())
            .bind(row.kind.as_str())
            .bind(row.payload.to_string())
            .bind(sqlite_time(row.fire_at))
            .bind(row.fired.then(|| sqlite_time(row.fire_at)))
            .bind(row.expires_at.map(sqlite_time))
            .fetch_one(&mut *connection)
            .await
            .map_err(store_error)?;
            Ok(Written::Inserted(id))
        }
        Write::Delivered(user, ids) => {
            sqlx::query(concat!(
                "UPDATE pam_notifications SET delivered_at = ",
                sqlite_now!(),
                " WHERE user_id = ?1 AND id IN (SELECT value FROM json_each(?2)) AND delivered_at IS NULL"
            ))
            .bind(user.as_str())
            .bind(Value::from(ids.clone()).to_string())
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
            Ok(Written::Marked)
        }
    }
}
