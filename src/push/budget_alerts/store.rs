//! `BudgetAlertStore` on the gateway's database: reads a user's active budgets with their
//! month-to-date spend (the same limit and category rules as the financial context, on the user's own month) and
//! stores the earned alerts in `pam_notifications` in the same transaction, each
//! `ON CONFLICT (user_id, dedupe_key) DO NOTHING`, so concurrent evaluations on any number of nodes
//! store each alert once and only the one that stored it sends it. The month is the user's own,
//! in the user's timezone. The durable change queue (`pam_budget_checks`, filled by triggers on
//! both backends) is claimed and cleared here too; on Postgres a claim is a short lease, so nodes
//! split the queue and a node that dies mid-batch only delays its users.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use pam_actors::{ALERT_TTL, BudgetSpend, alerts_for};
use pam_actors::{BoxFuture, BudgetAlertStore, Notification, NotificationKind, StoreError};
use pam_protocol::UserId;
use serde_json::json;
use sqlx::Row;

use crate::storage::database::Database;
use crate::storage::sql::{sqlite_time, store_error, user_uuid};

/// `$2` and `$4` are the first and last day of the user's month and `$3` the user's today, all in
/// the user's timezone. The spend is the whole month's: an expense dated later this month (a
/// booked campsite, or a date another clock calls today) counts now, not never — nothing
/// evaluates the budget again when that day comes.
const PG_BUDGETS: &str = "
SELECT b.id::text AS budget_id, b.category,
       (CASE WHEN b.monthly_limit > 0 THEN b.monthly_limit ELSE b.budgeted_amount END)::float8 AS limit_amount,
       b.alert_threshold::float8 AS threshold,
       COALESCE((SELECT SUM(e.amount) FROM expenses e
                 WHERE e.user_id = b.user_id AND e.category = b.category
                   AND e.date >= $2 AND e.date <= $4), 0)::float8 AS spent
FROM budgets b
WHERE b.user_id = $1 AND $3 BETWEEN b.start_date AND b.end_date
ORDER BY b.created_at, b.id";

/// `?2` and `?4` are the first and last day of the user's month and `?3` the user's today
/// (`YYYY-MM-DD`), all in the user's timezone; the spend is the whole month's, as on Postgres.
const SQLITE_BUDGETS: &str = "
SELECT b.id AS budget_id, b.category,
       CAST(CASE WHEN b.monthly_limit > 0 THEN b.monthly_limit ELSE b.budgeted_amount END AS REAL) AS limit_amount,
       CAST(b.alert_threshold AS REAL) AS threshold,
       (SELECT TOTAL(e.amount) FROM expenses e
        WHERE e.user_id = b.user_id AND e.category = b.category
          AND e.date >= ?2 AND e.date < date(?4, '+1 day')) AS spent
FROM budgets b
WHERE b.user_id = ?1 AND date(b.start_date) <= ?3 AND date(b.end_date) >= ?3
ORDER BY b.created_at, b.id";

const PG_TIMEZONE: &str = "SELECT regional_preferences->>'timezone' FROM user_settings WHERE user_id = $1";
const SQLITE_TIMEZONE: &str = "SELECT json_extract(regional_preferences, '$.timezone') FROM user_settings WHERE user_id = ?1";

/// How long a node holds the users it claimed from the queue before another node may take them
/// (it evaluates a batch in far less; a node that dies mid-batch only delays those users).
const CLAIM_LEASE_SECS: i64 = 30;

/// Most budgets read per user (a user's budgets are few; this bounds a pathological table).
const MAX_BUDGETS: usize = 200;

fn budget_rows<R: Row>(rows: &[R], month: &str) -> Result<Vec<BudgetSpend>, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database>,
{
    let month = month.to_owned();
    rows.iter()
        .take(MAX_BUDGETS)
        .map(|row| {
            Ok(BudgetSpend {
                budget_id: row.try_get("budget_id").map_err(store_error)?,
                category: row.try_get("category").map_err(store_error)?,
                limit: row.try_get::<Option<f64>, _>("limit_amount").map_err(store_error)?.unwrap_or(0.0),
                threshold: row.try_get("threshold").map_err(store_error)?,
                spent: row.try_get::<Option<f64>, _>("spent").map_err(store_error)?.unwrap_or(0.0),
                month: month.clone(),
            })
        })
        .collect()
}

impl BudgetAlertStore for Database {
    fn evaluate<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("budget_alerts");
            let now = Utc::now();
            let expires_at = now + ALERT_TTL;
            let mut stored = Vec::new();
            match self {
                Database::Postgres(pool) => {
                    let uuid = user_uuid(user)?;
                    let mut tx = pool.begin().await.map_err(store_error)?;
                    let zone: Option<String> = sqlx::query_scalar(PG_TIMEZONE)
                        .persistent(false)
                        .bind(uuid)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(store_error)?
                        .flatten();
                    let month = UserMonth::at(now, zone.as_deref());
                    let rows = sqlx::query(PG_BUDGETS)
                        .persistent(false)
                        .bind(uuid)
                        .bind(month.first_day)
                        .bind(month.today)
                        .bind(month.last_day)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(store_error)?;
                    let budgets = budget_rows(&rows, &month.name)?;
                    for alert in budgets.iter().flat_map(alerts_for) {
                        let payload = json!({"content": alert.content});
                        let id: Option<String> = sqlx::query_scalar(
                            "INSERT INTO pam_notifications (user_id, kind, payload, fire_at, fired_at, expires_at, dedupe_key, dismissed_at)
                             VALUES ($1, 'proactive_alert', $2, $3, $3, $4, $5, CASE WHEN $6 THEN $3 END)
                             ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                             RETURNING id::text",
                        ).persistent(false)
                        .bind(uuid)
                        .bind(&payload)
                        .bind(now)
                        .bind(expires_at)
                        .bind(&alert.dedupe_key)
                        .bind(alert.superseded)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(store_error)?;
                        if let (Some(id), false) = (id, alert.superseded) {
                            stored.push(row(id, user, payload, now, expires_at));
                        }
                    }
                    tx.commit().await.map_err(store_error)?;
                }
                Database::Sqlite(pool) => {
                    // The write lock first: the read and the inserts see one state of the spend.
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
                    let zone: Option<String> = sqlx::query_scalar(SQLITE_TIMEZONE)
                        .bind(user.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(store_error)?
                        .flatten();
                    let month = UserMonth::at(now, zone.as_deref());
                    let rows = sqlx::query(SQLITE_BUDGETS)
                        .bind(user.as_str())
                        .bind(month.first_day.to_string())
                        .bind(month.today.to_string())
                        .bind(month.last_day.to_string())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(store_error)?;
                    let budgets = budget_rows(&rows, &month.name)?;
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
                        .map_err(store_error)?;
                        if let (Some(id), false) = (id, alert.superseded) {
                            stored.push(row(id, user, payload, now, expires_at));
                        }
                    }
                    tx.commit().await.map_err(store_error)?;
                }
            }
            Ok(stored)
        })
    }

    fn queued_checks<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Vec<(UserId, i64)>, StoreError>> {
        Box::pin(async move {
            let pool = match self {
                Database::Postgres(pool) => {
                    // Claims a batch (SKIP LOCKED: nodes polling together split the queue).
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "UPDATE pam_budget_checks c SET claimed_until = now() + make_interval(secs => $2)
                         FROM (SELECT user_id FROM pam_budget_checks
                               WHERE claimed_until IS NULL OR claimed_until < now()
                               ORDER BY user_id LIMIT $1 FOR UPDATE SKIP LOCKED) due
                         WHERE c.user_id = due.user_id
                         RETURNING c.user_id::text, c.version",
                    )
                    .persistent(false)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .bind(CLAIM_LEASE_SECS as f64)
                    .fetch_all(pool)
                    .await
                    .map_err(store_error)?;
                    // The column is a uuid: every row names a user id this gateway can clear.
                    return Ok(rows.into_iter().filter_map(|(user, version)| Some((UserId::parse(&user).ok()?, version))).collect());
                }
                Database::Sqlite(pool) => pool,
            };
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT user_id, version FROM pam_budget_checks LIMIT ?1")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(store_error)?;
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
                            .map_err(store_error)?;
                    }
                }
            }
            Ok(checks)
        })
    }

    fn check_done<'a>(&'a self, user: &'a UserId, version: i64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let pool = match self {
                Database::Postgres(pool) => {
                    sqlx::query("DELETE FROM pam_budget_checks WHERE user_id = $1 AND version = $2")
                        .persistent(false)
                        .bind(user_uuid(user)?)
                        .bind(version)
                        .execute(pool)
                        .await
                        .map_err(store_error)?;
                    return Ok(());
                }
                Database::Sqlite(pool) => pool,
            };
            sqlx::query("DELETE FROM pam_budget_checks WHERE user_id = ?1 AND version = ?2")
                .bind(user.as_str())
                .bind(version)
                .execute(pool)
                .await
                .map_err(store_error)?;
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

/// The user's month on the user's own calendar (`user_settings.regional_preferences.timezone`,
/// UTC when none or unknown): an expense dated the user's today counts even where that is
/// already tomorrow in UTC.
#[derive(Debug, PartialEq, Eq)]
struct UserMonth {
    first_day: NaiveDate,
    today: NaiveDate,
    last_day: NaiveDate,
    /// `YYYY-MM`, the month part of each alert's dedupe key.
    name: String,
}

impl UserMonth {
    fn at(now: DateTime<Utc>, zone: Option<&str>) -> Self {
        let zone: Tz = zone.and_then(|name| name.trim().parse().ok()).unwrap_or(Tz::UTC);
        let today = now.with_timezone(&zone).date_naive();
        let first_day = today.with_day(1).unwrap_or(today);
        let next_month = first_day.checked_add_months(chrono::Months::new(1)).unwrap_or(first_day);
        let last_day = next_month.pred_opt().unwrap_or(today);
        UserMonth { first_day, today, last_day, name: today.format("%Y-%m").to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("test time").with_timezone(&Utc)
    }

    #[test]
    fn the_month_is_the_users_own_on_both_sides_of_utc() {
        let now = at("2026-11-30T20:00:00Z");
        let kiritimati = UserMonth::at(now, Some("Pacific/Kiritimati"));
        assert_eq!((kiritimati.today.to_string(), kiritimati.name.as_str()), ("2026-12-01".into(), "2026-12"));
        assert_eq!(kiritimati.first_day.to_string(), "2026-12-01");
        assert_eq!(kiritimati.last_day.to_string(), "2026-12-31");
        let los_angeles = UserMonth::at(at("2026-12-01T03:00:00Z"), Some("America/Los_Angeles"));
        assert_eq!((los_angeles.today.to_string(), los_angeles.name.as_str()), ("2026-11-30".into(), "2026-11"));
        assert_eq!(los_angeles.first_day.to_string(), "2026-11-01");
        assert_eq!(los_angeles.last_day.to_string(), "2026-11-30");
    }

    #[test]
    fn no_or_an_unknown_timezone_means_utc() {
        let now = at("2026-11-30T20:00:00Z");
        assert_eq!(UserMonth::at(now, None), UserMonth::at(now, Some("UTC")));
        assert_eq!(UserMonth::at(now, Some("Mars/Olympus_Mons")), UserMonth::at(now, Some("UTC")));
        assert_eq!(UserMonth::at(now, Some("")).name, "2026-11");
    }
}
