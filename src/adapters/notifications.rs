//! `NotificationStore` on the gateway's database (`pam_notifications`). Postgres claims due
//! timers with `FOR UPDATE SKIP LOCKED`, so nodes sharing the database never fire a row twice;
//! SQLite does each multi-statement write in one `BEGIN IMMEDIATE` transaction (the database's
//! write lock). SQLite timestamps are UTC text `%Y-%m-%dT%H:%M:%fZ`, which compares as time.

use chrono::{DateTime, Utc};
use pam_actors::{BoxFuture, Inserted, NewNotification, Notification, NotificationKind, NotificationStore, StoreError};
use pam_protocol::UserId;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::database::Database;

/// Most rows `undelivered` returns (a client cannot grow this: timers are bounded per user and
/// pushes come from services).
const UNDELIVERED_LIMIT: i64 = 200;

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

fn unavailable(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.code().is_some_and(|code| code.starts_with("22")) || !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
            return StoreError::Rejected(error.to_string());
        }
    }
    StoreError::Unavailable(error.to_string())
}

fn user_uuid(user: &UserId) -> Result<Uuid, StoreError> {
    Uuid::parse_str(user.as_str()).map_err(|e| StoreError::Rejected(format!("user id: {e}")))
}

/// A timestamp in SQLite's stored text format.
fn sqlite_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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

impl NotificationStore for Database {
    fn insert<'a>(&'a self, row: &'a NewNotification) -> BoxFuture<'a, Result<Inserted, StoreError>> {
        Box::pin(async move {
            let _timer = crate::monitor::QueryTimer::start("notification_insert");
            let fired_at = row.fired.then_some(row.fire_at);
            let max_pending = row.max_pending.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            match self {
                Database::Postgres(pool) => {
                    let user = user_uuid(&row.user)?;
                    let mut tx = pool.begin().await.map_err(unavailable)?;
                    if let Some(max) = max_pending {
                        // Serialises this user's limited inserts, so the count is exact.
                        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('pam_notifications:' || $1::text, 0))")
                            .bind(user)
                            .execute(&mut *tx)
                            .await
                            .map_err(unavailable)?;
                        let pending: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM pam_notifications WHERE user_id = $1 AND fired_at IS NULL AND dismissed_at IS NULL",
                        )
                        .bind(user)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(unavailable)?;
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
                    .bind(user)
                    .bind(row.kind.as_str())
                    .bind(&row.payload)
                    .bind(row.fire_at)
                    .bind(fired_at)
                    .bind(row.expires_at)
                    .bind(&row.dedupe_key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    tx.commit().await.map_err(unavailable)?;
                    Ok(id.map_or(Inserted::Duplicate, Inserted::New))
                }
                Database::Sqlite(pool) => {
                    user_uuid(&row.user)?;
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
                    if let Some(max) = max_pending {
                        let pending: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM pam_notifications WHERE user_id = ?1 AND fired_at IS NULL AND dismissed_at IS NULL",
                        )
                        .bind(row.user.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(unavailable)?;
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
                    .map_err(unavailable)?;
                    tx.commit().await.map_err(unavailable)?;
                    Ok(id.map_or(Inserted::Duplicate, Inserted::New))
                }
            }
        })
    }

    fn claim_due<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::monitor::QueryTimer::start("notification_claim_due");
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match self {
                Database::Postgres(pool) => sqlx::query(concat!(
                    "UPDATE pam_notifications SET fired_at = now() WHERE id IN (
                       SELECT id FROM pam_notifications
                       WHERE fired_at IS NULL AND dismissed_at IS NULL AND fire_at <= now()
                       ORDER BY fire_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                     RETURNING ",
                    pg_columns!()
                ))
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(pg_row)
                .collect::<Result<Vec<_>, _>>()?,
                Database::Sqlite(pool) => {
                    // Every node asks 4 times a second: a plain read first (WAL readers take no
                    // lock), so the write lock is taken only when something is due.
                    let due: Option<i64> = sqlx::query_scalar(concat!(
                        "SELECT 1 FROM pam_notifications WHERE fired_at IS NULL AND dismissed_at IS NULL AND fire_at <= ",
                        sqlite_now!(),
                        " LIMIT 1"
                    ))
                    .fetch_optional(pool)
                    .await
                    .map_err(unavailable)?;
                    if due.is_none() {
                        return Ok(Vec::new());
                    }
                    // One write transaction: the select and the update see the same rows.
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
                    .map_err(unavailable)?
                    .iter()
                    .map(sqlite_row)
                    .collect::<Result<Vec<_>, _>>()?;
                    tx.commit().await.map_err(unavailable)?;
                    rows
                }
            };
            Ok(by_fire_time(rows))
        })
    }

    fn undelivered<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::monitor::QueryTimer::start("notification_undelivered");
            let rows = match self {
                Database::Postgres(pool) => sqlx::query(concat!(
                    "SELECT ",
                    pg_columns!(),
                    " FROM pam_notifications
                     WHERE user_id = $1 AND fired_at IS NOT NULL AND dismissed_at IS NULL
                       AND (expires_at IS NULL OR expires_at > now())
                       AND ((kind = 'proactive_alert' AND delivered_at IS NULL)
                         OR (kind = 'timer_expired' AND fired_at > now() - interval '24 hours'))
                     ORDER BY fired_at, created_at LIMIT $2"
                ))
                .bind(user_uuid(user)?)
                .bind(UNDELIVERED_LIMIT)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(pg_row)
                .collect::<Result<Vec<_>, _>>()?,
                Database::Sqlite(pool) => sqlx::query(concat!(
                    "SELECT ",
                    sqlite_columns!(),
                    " FROM pam_notifications
                     WHERE user_id = ?1 AND fired_at IS NOT NULL AND dismissed_at IS NULL
                       AND (expires_at IS NULL OR expires_at > ",
                    sqlite_now!(),
                    ")
                       AND ((kind = 'proactive_alert' AND delivered_at IS NULL)
                         OR (kind = 'timer_expired' AND fired_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-24 hours')))
                     ORDER BY fired_at, created_at LIMIT ?2"
                ))
                .bind(user.as_str())
                .bind(UNDELIVERED_LIMIT)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(sqlite_row)
                .collect::<Result<Vec<_>, _>>()?,
            };
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
                .bind(user_uuid(user)?)
                .bind(UNDELIVERED_LIMIT)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(pg_row)
                .collect::<Result<Vec<_>, _>>()?,
                Database::Sqlite(pool) => sqlx::query(concat!(
                    "SELECT ",
                    sqlite_columns!(),
                    " FROM pam_notifications
                     WHERE user_id = ?1 AND kind = 'timer_expired' AND fired_at IS NULL AND dismissed_at IS NULL
                     ORDER BY fire_at LIMIT ?2"
                ))
                .bind(user.as_str())
                .bind(UNDELIVERED_LIMIT)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(sqlite_row)
                .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(rows)
        })
    }

    fn mark_delivered<'a>(&'a self, user: &'a UserId, ids: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            match self {
                Database::Postgres(pool) => {
                    let ids: Vec<Uuid> = ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect();
                    sqlx::query(
                        "UPDATE pam_notifications SET delivered_at = now()
                         WHERE user_id = $1 AND id = ANY($2) AND delivered_at IS NULL",
                    )
                    .bind(user_uuid(user)?)
                    .bind(ids)
                    .execute(pool)
                    .await
                    .map_err(unavailable)?;
                }
                Database::Sqlite(pool) => {
                    let ids = Value::from(ids.to_vec()).to_string();
                    sqlx::query(concat!(
                        "UPDATE pam_notifications SET delivered_at = ",
                        sqlite_now!(),
                        " WHERE user_id = ?1 AND id IN (SELECT value FROM json_each(?2)) AND delivered_at IS NULL"
                    ))
                    .bind(user.as_str())
                    .bind(ids)
                    .execute(pool)
                    .await
                    .map_err(unavailable)?;
                }
            }
            Ok(())
        })
    }

    fn dismiss<'a>(&'a self, user: &'a UserId, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let affected = match self {
                Database::Postgres(pool) => {
                    let Ok(id) = Uuid::parse_str(id) else { return Ok(false) };
                    sqlx::query("UPDATE pam_notifications SET dismissed_at = now() WHERE id = $1 AND user_id = $2 AND dismissed_at IS NULL")
                        .bind(id)
                        .bind(user_uuid(user)?)
                        .execute(pool)
                        .await
                        .map_err(unavailable)?
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
                .map_err(unavailable)?
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
                .fetch_one(pool)
                .await
                .map_err(unavailable)?,
                Database::Sqlite(pool) => sqlx::query_scalar(
                    "SELECT count(*) FROM pam_notifications WHERE kind = 'timer_expired' AND fired_at IS NULL AND dismissed_at IS NULL",
                )
                .fetch_one(pool)
                .await
                .map_err(unavailable)?,
            };
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }
}
