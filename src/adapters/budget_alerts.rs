//! `BudgetAlertStore` on the gateway's database: reads a user's active budgets with their
//! month-to-date spend (the same month, limit and category rules as the financial context) and
//! stores the earned alerts in `pam_notifications` in the same transaction, each
//! `ON CONFLICT (user_id, dedupe_key) DO NOTHING`, so concurrent evaluations on any number of nodes
//! store each alert once and only the one that stored it sends it. SQLite's change queue
//! (`pam_budget_checks`, filled by triggers) is read and cleared here too.

use chrono::Utc;
use pam_actors::{ALERT_TTL, BudgetSpend, alerts_for};
use pam_actors::{BoxFuture, BudgetAlertStore, Notification, NotificationKind, StoreError};
use pam_protocol::UserId;
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use super::database::Database;

const PG_BUDGETS: &str = "
SELECT b.id::text AS budget_id, b.category,
       (CASE WHEN b.monthly_limit > 0 THEN b.monthly_limit ELSE b.budgeted_amount END)::float8 AS limit_amount,
       b.alert_threshold::float8 AS threshold,
       COALESCE((SELECT SUM(e.amount) FROM expenses e
                 WHERE e.user_id = b.user_id AND e.category = b.category
                   AND e.date >= date_trunc('month', CURRENT_DATE)::date AND e.date <= CURRENT_DATE), 0)::float8 AS spent,
       to_char(CURRENT_DATE, 'YYYY-MM') AS month
FROM budgets b
WHERE b.user_id = $1 AND CURRENT_DATE BETWEEN b.start_date AND b.end_date
ORDER BY b.created_at, b.id";

const SQLITE_BUDGETS: &str = "
SELECT b.id AS budget_id, b.category,
       CAST(CASE WHEN b.monthly_limit > 0 THEN b.monthly_limit ELSE b.budgeted_amount END AS REAL) AS limit_amount,
       CAST(b.alert_threshold AS REAL) AS threshold,
       (SELECT TOTAL(e.amount) FROM expenses e
        WHERE e.user_id = b.user_id AND e.category = b.category
          AND e.date >= date('now', 'start of month') AND e.date < date('now', '+1 day')) AS spent,
       strftime('%Y-%m', 'now') AS month
FROM budgets b
WHERE b.user_id = ?1 AND date(b.start_date) <= date('now') AND date(b.end_date) >= date('now')
ORDER BY b.created_at, b.id";

/// Most budgets read per user (a user's budgets are few; this bounds a pathological table).
const MAX_BUDGETS: usize = 200;

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn budget_rows<R: Row>(rows: &[R]) -> Result<Vec<BudgetSpend>, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database>,
{
    rows.iter()
        .take(MAX_BUDGETS)
        .map(|row| {
            Ok(BudgetSpend {
                budget_id: row.try_get("budget_id").map_err(unavailable)?,
                category: row.try_get("category").map_err(unavailable)?,
                limit: row.try_get::<Option<f64>, _>("limit_amount").map_err(unavailable)?.unwrap_or(0.0),
                threshold: row.try_get("threshold").map_err(unavailable)?,
                spent: row.try_get::<Option<f64>, _>("spent").map_err(unavailable)?.unwrap_or(0.0),
                month: row.try_get("month").map_err(unavailable)?,
            })
        })
        .collect()
}

/// SQLite's stored time format (see `adapters::notifications`).
fn sqlite_time(at: chrono::DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl BudgetAlertStore for Database {
    fn evaluate<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::monitor::QueryTimer::start("budget_alerts");
            let now = Utc::now();
            let expires_at = now + ALERT_TTL;
            let mut stored = Vec::new();
            match self {
                Database::Postgres(pool) => {
                    let uuid = Uuid::parse_str(user.as_str()).map_err(|e| StoreError::Rejected(format!("user id: {e}")))?;
                    let mut tx = pool.begin().await.map_err(unavailable)?;
                    let budgets = budget_rows(&sqlx::query(PG_BUDGETS).bind(uuid).fetch_all(&mut *tx).await.map_err(unavailable)?)?;
                    for alert in budgets.iter().flat_map(alerts_for) {
                        let payload = json!({"content": alert.content});
                        let id: Option<String> = sqlx::query_scalar(
                            "INSERT INTO pam_notifications (user_id, kind, payload, fire_at, fired_at, expires_at, dedupe_key, dismissed_at)
                             VALUES ($1, 'proactive_alert', $2, $3, $3, $4, $5, CASE WHEN $6 THEN $3 END)
                             ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                             RETURNING id::text",
                        )
                        .bind(uuid)
                        .bind(&payload)
                        .bind(now)
                        .bind(expires_at)
                        .bind(&alert.dedupe_key)
                        .bind(alert.superseded)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                        if let (Some(id), false) = (id, alert.superseded) {
                            stored.push(row(id, user, payload, now, expires_at));
                        }
                    }
                    tx.commit().await.map_err(unavailable)?;
                }
                Database::Sqlite(pool) => {
                    // The write lock first: the read and the inserts see one state of the spend.
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
                    let budgets =
                        budget_rows(&sqlx::query(SQLITE_BUDGETS).bind(user.as_str()).fetch_all(&mut *tx).await.map_err(unavailable)?)?;
                    for alert in budgets.iter().flat_map(alerts_for) {
                        let payload = json!({"content": alert.content});
                        let id: Option<String> = sqlx::query_scalar(
                            "INSERT INTO pam_notifications (user_id, kind, payload, fire_at, fired_at, expires_at, dedupe_key, dismissed_at)
                             VALUES (?1, 'proactive_alert', ?2, ?3, ?3, ?4, ?5, CASE WHEN ?6 THEN ?3 END)
                             ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                             RETURNING id",
                        )
                        .bind(user.as_str())
                        .bind(payload.to_string())
                        .bind(sqlite_time(now))
                        .bind(sqlite_time(expires_at))
                        .bind(&alert.dedupe_key)
                        .bind(alert.superseded)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                        if let (Some(id), false) = (id, alert.superseded) {
                            stored.push(row(id, user, payload, now, expires_at));
                        }
                    }
                    tx.commit().await.map_err(unavailable)?;
                }
            }
            Ok(stored)
        })
    }

    fn queued_checks<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Vec<(UserId, i64)>, StoreError>> {
        Box::pin(async move {
            let Database::Sqlite(pool) = self else { return Ok(Vec::new()) };
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT user_id, version FROM pam_budget_checks LIMIT ?1")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
            let mut checks = Vec::with_capacity(rows.len());
            for (user, version) in rows {
                match UserId::parse(&user) {
                    Ok(id) if id.as_str() == user => checks.push((id, version)),
                    // Not a user id this gateway writes (so `check_done` could never clear it):
                    // drop the entry so it does not clog the queue.
                    _ => {
                        sqlx::query("DELETE FROM pam_budget_checks WHERE user_id = ?1")
                            .bind(&user)
                            .execute(pool)
                            .await
                            .map_err(unavailable)?;
                    }
                }
            }
            Ok(checks)
        })
    }

    fn check_done<'a>(&'a self, user: &'a UserId, version: i64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Database::Sqlite(pool) = self else { return Ok(()) };
            sqlx::query("DELETE FROM pam_budget_checks WHERE user_id = ?1 AND version = ?2")
                .bind(user.as_str())
                .bind(version)
                .execute(pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }
}

fn row(
    id: String,
    user: &UserId,
    payload: serde_json::Value,
    now: chrono::DateTime<Utc>,
    expires_at: chrono::DateTime<Utc>,
) -> Notification {
    Notification {
        id,
        user: user.clone(),
        kind: NotificationKind::ProactiveAlert,
        payload,
        fire_at: now,
        fired_at: Some(now),
        delivered_at: None,
        expires_at: Some(expires_at),
        created_at: now,
    }
}
