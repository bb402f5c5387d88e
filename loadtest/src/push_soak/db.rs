//! `push-soak`'s SQL, straight into the cluster's Postgres as the app (or a bulk import) would
//! write it: the budgets and timezones of the users who have budgets, the bulk expense inserts
//! (one statement each, however many rows), the durable budget-check queue the gateway drains,
//! and at the end the run's `pam_notifications` rows.

use std::collections::HashSet;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::audit::{Kind, StoredPush};
use super::budgets::{Budget, Expense};

/// Timezones given to budget users in turn: both sides of UTC, so "the user's month" is the
/// user's own (see the gateway's `UserMonth`).
const ZONES: [&str; 5] = ["UTC", "Pacific/Kiritimati", "America/Los_Angeles", "Europe/Berlin", "Australia/Sydney"];
/// Thresholds given to budgets in turn (`None` = NULL, the gateway's default 80).
const THRESHOLDS: [Option<u32>; 5] = [None, Some(75), Some(90), Some(50), Some(80)];

pub(super) async fn connect(url: &str) -> Result<PgPool, String> {
    PgPoolOptions::new().max_connections(4).connect(url).await.map_err(|e| format!("--database-url {url}: {e}"))
}

/// Gives each of `users` a timezone and one or two budgets (limits of $100–$1 000, active
/// around today); returns them with each user's month in the user's timezone.
pub(super) async fn create_budgets(pool: &PgPool, users: &[String]) -> Result<Vec<Budget>, String> {
    let mut budgets = Vec::new();
    let (mut ids, mut owners, mut categories, mut limits, mut thresholds) = (vec![], vec![], vec![], vec![], vec![]);
    for (n, user) in users.iter().enumerate() {
        let zone = ZONES[n % ZONES.len()];
        sqlx::query(
            "INSERT INTO user_settings (user_id, regional_preferences) VALUES ($1::uuid, jsonb_build_object('timezone', $2::text))
             ON CONFLICT (user_id) DO UPDATE SET regional_preferences = EXCLUDED.regional_preferences",
        )
        .bind(user)
        .bind(zone)
        .execute(pool)
        .await
        .map_err(|e| format!("user_settings: {e}"))?;
        let month: String = sqlx::query_scalar("SELECT to_char(now() AT TIME ZONE $1, 'YYYY-MM')")
            .bind(zone)
            .fetch_one(pool)
            .await
            .map_err(|e| format!("the month in {zone}: {e}"))?;
        for b in 0..1 + n % 2 {
            let budget = Budget {
                id: uuid::Uuid::new_v4().to_string(),
                user: user.clone(),
                category: super::budgets::CATEGORIES[(n + b) % super::budgets::CATEGORIES.len()].to_string(),
                limit_dollars: 100 + ((n * 37 + b * 11) % 10) as u32 * 100,
                threshold: THRESHOLDS[(n + b) % THRESHOLDS.len()],
                month: month.clone(),
            };
            ids.push(budget.id.clone());
            owners.push(budget.user.clone());
            categories.push(budget.category.clone());
            limits.push(i64::from(budget.limit_dollars));
            thresholds.push(budget.threshold.map(i64::from));
            budgets.push(budget);
        }
    }
    sqlx::query(
        "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date, created_at)
         SELECT t.id::uuid, t.u::uuid, t.c, t.c, t.l, t.l, t.th, CURRENT_DATE - 31, CURRENT_DATE + 31, now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS t(id, u, c, l, th)",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(&categories)
    .bind(&limits)
    .bind(&thresholds)
    .execute(pool)
    .await
    .map_err(|e| format!("budgets: {e}"))?;
    Ok(budgets)
}

/// One INSERT of all `rows`, each dated the user's today in the user's timezone.
pub(super) async fn insert_expenses(pool: &PgPool, rows: &[Expense]) -> Result<(), String> {
    let users: Vec<&str> = rows.iter().map(|(u, _, _)| u.as_str()).collect();
    let categories: Vec<&str> = rows.iter().map(|(_, c, _)| *c).collect();
    let cents: Vec<i64> = rows.iter().map(|(_, _, c)| i64::try_from(*c).unwrap_or(i64::MAX)).collect();
    sqlx::query(
        "INSERT INTO expenses (user_id, amount, category, date, description, created_at)
         SELECT t.u::uuid, t.cents::numeric / 100, t.c,
                (now() AT TIME ZONE COALESCE(s.regional_preferences->>'timezone', 'UTC'))::date, 'push-soak', now()
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(u, c, cents)
         LEFT JOIN user_settings s ON s.user_id = t.u::uuid",
    )
    .bind(&users)
    .bind(&categories)
    .bind(&cents)
    .execute(pool)
    .await
    .map(drop)
    .map_err(|e| format!("bulk insert of {} expenses: {e}", rows.len()))
}

/// How many of `users` still wait in the gateway's budget-check queue.
pub(super) async fn queued_checks(pool: &PgPool, users: &[String]) -> Result<i64, String> {
    sqlx::query_scalar("SELECT count(*) FROM pam_budget_checks WHERE user_id = ANY($1::text[]::uuid[])")
        .bind(users)
        .fetch_one(pool)
        .await
        .map_err(|e| format!("pam_budget_checks: {e}"))
}

/// Every `pam_notifications` row of `users`.
pub(super) async fn stored_pushes(pool: &PgPool, users: &[String]) -> Result<Vec<StoredPush>, String> {
    let rows = sqlx::query(
        "SELECT id::text AS id, user_id::text AS user_id, kind, delivered_at IS NOT NULL AS delivered,
                dismissed_at IS NOT NULL AS dismissed, fired_at IS NOT NULL AS fired,
                COALESCE(expires_at <= now(), false) AS expired, dedupe_key
         FROM pam_notifications WHERE user_id = ANY($1::text[]::uuid[])",
    )
    .bind(users)
    .fetch_all(pool)
    .await
    .map_err(|e| format!("pam_notifications: {e}"))?;
    let get = |e: sqlx::Error| format!("pam_notifications row: {e}");
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind").map_err(get)?;
            Ok(StoredPush {
                id: row.try_get("id").map_err(get)?,
                user: row.try_get("user_id").map_err(get)?,
                kind: match kind.as_str() {
                    "proactive_alert" => Some(Kind::Alert),
                    "timer_expired" => Some(Kind::Timer),
                    _ => None,
                },
                delivered: row.try_get("delivered").map_err(get)?,
                dismissed: row.try_get("dismissed").map_err(get)?,
                fired: row.try_get("fired").map_err(get)?,
                expired: row.try_get("expired").map_err(get)?,
                dedupe_key: row.try_get("dedupe_key").map_err(get)?,
            })
        })
        .collect()
}

/// The budget-alert dedupe keys among `rows`.
pub(super) fn budget_keys(rows: &[StoredPush]) -> Vec<String> {
    rows.iter().filter_map(|row| row.dedupe_key.clone()).filter(|key| key.starts_with("budget:")).collect()
}

/// Ids of `rows` that are budget alerts.
pub(super) fn budget_alert_ids(rows: &[StoredPush]) -> HashSet<String> {
    rows.iter().filter(|row| row.dedupe_key.as_deref().is_some_and(|k| k.starts_with("budget:"))).map(|row| row.id.clone()).collect()
}
