//! `ContextStore` on the gateway's database (schema.md, "Context the loaders build").
//!
//! - Profile: the `profiles` row by `id` (there is no `user_id` column) plus
//!   `user_settings.regional_preferences` ({currency, units, timezone}).
//! - Financial, month to date (first of the DB's current month .. the DB's today): spend per
//!   category, active budgets (limit = `monthly_limit` if > 0 else `budgeted_amount`, summed per
//!   category), income total.
//! - Social: accepted friendships in both directions joined to the friend's profile and latest
//!   public location; published `group_events` starting in the next 90 days (≤ 25, soonest first).
//!
//! Every per-user query filters by the user id. `group_events` has no per-user column the schema
//! ties to the reader (no membership table), so upcoming events are the same for every user.
//!
//! JSON, `text[]` and timestamps are normalised the same way on both backends: Postgres selects
//! them as JSON text (`to_jsonb(..)::text`, `::text`) and SQLite stores JSON text, so one Rust
//! parser handles both. Amounts are summed in SQL (`numeric` → `float8` on Postgres) and rounded
//! to cents here.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, SecondsFormat, Utc};
use pam_actors::{
    BoxFuture, CategorySpend, ContextStore, EventSummary, FinancialContext, Friend, ProfileContext, SocialContext, StoreError,
};
use pam_protocol::UserId;
use serde_json::Value;
use tokio::time::Instant;

use crate::observability::DB_QUERY_SECONDS;
use crate::storage::database::Database;
use crate::storage::sql::user_uuid;

/// At most this many upcoming events.
const MAX_EVENTS: i64 = 25;
/// Name used when a friend's profile has neither `full_name` nor `nickname`.
const UNNAMED_FRIEND: &str = "a friend";

/// Runs one query, records its time in `pam_db_query_seconds{query}` and maps its error.
async fn timed<T>(query: &'static str, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = fut.await;
    metrics::histogram!(DB_QUERY_SECONDS, "query" => query).record(started.elapsed().as_secs_f64());
    crate::observability::slow_queries().record(query, started.elapsed());
    result.map_err(|e| StoreError::Unavailable(format!("{query} query failed: {e}")))
}

impl ContextStore for Database {
    fn load_profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<ProfileContext>, StoreError>> {
        Box::pin(async move {
            let row = match self {
                Database::Postgres(pool) => {
                    let id = user_uuid(user)?;
                    timed("profile", sqlx::query_as::<_, ProfileRow>(PG_PROFILE).persistent(false).bind(id).fetch_optional(pool)).await?
                }
                Database::Sqlite(pool) => {
                    timed("profile", sqlx::query_as::<_, ProfileRow>(SQLITE_PROFILE).bind(user.as_str()).fetch_optional(pool)).await?
                }
            };
            Ok(row.map(ProfileRow::into_context))
        })
    }

    fn load_financial<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<FinancialContext, StoreError>> {
        Box::pin(async move {
            let (spend, budgets, (month, income)) = match self {
                Database::Postgres(pool) => {
                    let id = user_uuid(user)?;
                    tokio::try_join!(
                        timed("financial_spend", sqlx::query_as::<_, (String, f64)>(PG_SPEND).persistent(false).bind(id).fetch_all(pool)),
                        timed(
                            "financial_budgets",
                            sqlx::query_as::<_, (String, f64)>(PG_BUDGETS).persistent(false).bind(id).fetch_all(pool)
                        ),
                        timed("financial_income", sqlx::query_as::<_, (String, f64)>(PG_INCOME).persistent(false).bind(id).fetch_one(pool)),
                    )?
                }
                Database::Sqlite(pool) => {
                    let id = user.as_str();
                    tokio::try_join!(
                        timed("financial_spend", sqlx::query_as::<_, (String, f64)>(SQLITE_SPEND).bind(id).fetch_all(pool)),
                        timed("financial_budgets", sqlx::query_as::<_, (String, f64)>(SQLITE_BUDGETS).bind(id).fetch_all(pool)),
                        timed("financial_income", sqlx::query_as::<_, (String, f64)>(SQLITE_INCOME).bind(id).fetch_one(pool)),
                    )?
                }
            };
            Ok(build_financial(month, spend, budgets, income))
        })
    }

    fn load_social<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<SocialContext, StoreError>> {
        Box::pin(async move {
            let (friends, events) = match self {
                Database::Postgres(pool) => {
                    let id = user_uuid(user)?;
                    let (friends, events) = tokio::try_join!(
                        timed("social_friends", sqlx::query_as::<_, FriendRow>(PG_FRIENDS).persistent(false).bind(id).fetch_all(pool)),
                        timed(
                            "social_events",
                            sqlx::query_as::<_, (String, DateTime<Utc>, Option<String>)>(PG_EVENTS)
                                .persistent(false)
                                .bind(MAX_EVENTS)
                                .fetch_all(pool)
                        ),
                    )?;
                    let events = events
                        .into_iter()
                        .map(|(title, start, location)| (title, start.to_rfc3339_opts(SecondsFormat::Secs, true), location));
                    (friends, events.collect::<Vec<_>>())
                }
                Database::Sqlite(pool) => tokio::try_join!(
                    timed("social_friends", sqlx::query_as::<_, FriendRow>(SQLITE_FRIENDS).bind(user.as_str()).fetch_all(pool)),
                    timed(
                        "social_events",
                        sqlx::query_as::<_, (String, String, Option<String>)>(SQLITE_EVENTS).bind(MAX_EVENTS).fetch_all(pool)
                    ),
                )?,
            };
            let mut friends: Vec<Friend> = friends.into_iter().map(FriendRow::into_friend).collect();
            friends.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user_id.cmp(&b.user_id)));
            let events = events
                .into_iter()
                .map(|(title, start_date, location)| EventSummary { title, start_date, location: event_location(location.as_deref()) })
                .collect();
            Ok(SocialContext { friends, events })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Profile

const PG_PROFILE: &str = "
SELECT p.full_name, p.nickname, p.email, p.region, p.vehicle_type, p.vehicle_make_model, p.fuel_type,
       to_jsonb(p.travel_style)::text AS travel_style,
       to_jsonb(p.interests)::text AS interests,
       s.regional_preferences::text AS regional_preferences
FROM profiles p
LEFT JOIN user_settings s ON s.user_id = p.id
WHERE p.id = $1";

const SQLITE_PROFILE: &str = "
SELECT p.full_name, p.nickname, p.email, p.region, p.vehicle_type, p.vehicle_make_model, p.fuel_type,
       p.travel_style, p.interests, s.regional_preferences
FROM profiles p
LEFT JOIN user_settings s ON s.user_id = p.id
WHERE p.id = ?1";

#[derive(sqlx::FromRow)]
struct ProfileRow {
    full_name: Option<String>,
    nickname: Option<String>,
    email: Option<String>,
    region: Option<String>,
    vehicle_type: Option<String>,
    vehicle_make_model: Option<String>,
    fuel_type: Option<String>,
    /// JSON array text.
    travel_style: Option<String>,
    /// JSON array text.
    interests: Option<String>,
    /// JSON object text.
    regional_preferences: Option<String>,
}

impl ProfileRow {
    fn into_context(self) -> ProfileContext {
        let regional = self.regional_preferences.as_deref().and_then(|text| serde_json::from_str::<Value>(text).ok());
        let pref = |key: &str| regional.as_ref().and_then(|v| v.get(key)).and_then(json_scalar_text);
        ProfileContext {
            currency: pref("currency"),
            units: pref("units"),
            timezone: pref("timezone"),
            full_name: self.full_name,
            nickname: self.nickname,
            email: self.email,
            region: self.region,
            vehicle_type: self.vehicle_type,
            vehicle_make_model: self.vehicle_make_model,
            fuel_type: self.fuel_type,
            travel_style: string_list(self.travel_style.as_deref()),
            interests: string_list(self.interests.as_deref()),
        }
    }
}

/// The strings of a JSON array (non-strings and malformed text are skipped).
fn string_list(json: Option<&str>) -> Vec<String> {
    match json.and_then(|text| serde_json::from_str::<Value>(text).ok()) {
        Some(Value::Array(items)) => items.iter().filter_map(json_scalar_text).collect(),
        _ => Vec::new(),
    }
}

/// A non-empty string or number as text.
fn json_scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Financial

const PG_SPEND: &str = "
SELECT category, SUM(amount)::float8 AS spent
FROM expenses
WHERE user_id = $1 AND date >= date_trunc('month', CURRENT_DATE)::date AND date <= CURRENT_DATE
GROUP BY category";

const PG_BUDGETS: &str = "
SELECT category, SUM(CASE WHEN monthly_limit > 0 THEN monthly_limit ELSE budgeted_amount END)::float8 AS limit_amount
FROM budgets
WHERE user_id = $1 AND CURRENT_DATE BETWEEN start_date AND end_date
GROUP BY category";

const PG_INCOME: &str = "
SELECT to_char(CURRENT_DATE, 'YYYY-MM') AS month, COALESCE(SUM(amount), 0)::float8 AS income
FROM income_entries
WHERE user_id = $1 AND date >= date_trunc('month', CURRENT_DATE)::date AND date <= CURRENT_DATE";

// Dates are 'YYYY-MM-DD' text; `< date('now', '+1 day')` also keeps today's rows should one be
// stored with a time part.
const SQLITE_SPEND: &str = "
SELECT category, TOTAL(amount) AS spent
FROM expenses
WHERE user_id = ?1 AND date >= date('now', 'start of month') AND date < date('now', '+1 day')
GROUP BY category";

const SQLITE_BUDGETS: &str = "
SELECT category, TOTAL(CASE WHEN monthly_limit > 0 THEN monthly_limit ELSE budgeted_amount END) AS limit_amount
FROM budgets
WHERE user_id = ?1 AND date(start_date) <= date('now') AND date(end_date) >= date('now')
GROUP BY category";

const SQLITE_INCOME: &str = "
SELECT strftime('%Y-%m', 'now') AS month, TOTAL(amount) AS income
FROM income_entries
WHERE user_id = ?1 AND date >= date('now', 'start of month') AND date < date('now', '+1 day')";

fn round_to(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    let rounded = (value * factor).round() / factor;
    if rounded == 0.0 { 0.0 } else { rounded } // no "-0"
}

fn cents(value: f64) -> f64 {
    round_to(value, 2)
}

/// Month-to-date figures from the per-category sums. Amounts are rounded to cents first, so a
/// float sum like 100.00000000000001 never counts as over a 100.00 budget.
fn build_financial(month: String, spend: Vec<(String, f64)>, budgets: Vec<(String, f64)>, income: f64) -> FinancialContext {
    let mut by_category: BTreeMap<String, (f64, Option<f64>)> = BTreeMap::new();
    for (category, spent) in spend {
        by_category.entry(category).or_default().0 += spent;
    }
    for (category, limit) in budgets {
        let entry = by_category.entry(category).or_default();
        entry.1 = Some(entry.1.unwrap_or(0.0) + limit);
    }
    let mut context = FinancialContext { month, income_total: cents(income), ..Default::default() };
    let (mut total_spent, mut total_budget, mut budgeted_spent) = (0.0, 0.0, 0.0);
    for (category, (spent, limit)) in by_category {
        let spent = cents(spent);
        let limit = limit.map(cents);
        total_spent += spent;
        if let Some(limit) = limit {
            total_budget += limit;
            budgeted_spent += spent;
        }
        context.categories.push(CategorySpend {
            category,
            spent,
            limit,
            remaining: limit.map(|limit| cents(limit - spent)),
            // A zero limit has no meaningful utilisation (it would be infinite).
            utilisation_pct: limit.filter(|limit| *limit > 0.0).map(|limit| round_to(spent / limit * 100.0, 1)),
            over_budget: limit.is_some_and(|limit| spent > limit),
        });
    }
    context.total_spent = cents(total_spent);
    context.total_budget = cents(total_budget);
    context.total_remaining = cents(total_budget - budgeted_spent);
    context
}

// ---------------------------------------------------------------------------------------------
// Social

const PG_FRIENDS: &str = "
WITH friends AS (
    SELECT DISTINCT CASE WHEN requester_id = $1 THEN addressee_id ELSE requester_id END AS friend_id
    FROM user_friendships
    WHERE status = 'accepted' AND (requester_id = $1 OR addressee_id = $1)
)
SELECT f.friend_id::text AS user_id,
       COALESCE(NULLIF(btrim(p.full_name), ''), NULLIF(btrim(p.nickname), '')) AS name,
       l.location_name, l.latitude::float8 AS latitude, l.longitude::float8 AS longitude, l.status
FROM friends f
LEFT JOIN profiles p ON p.id = f.friend_id
LEFT JOIN LATERAL (
    SELECT location_name, latitude, longitude, status
    FROM friend_locations
    WHERE user_id = f.friend_id AND is_public IS TRUE
    ORDER BY last_updated DESC NULLS LAST, created_at DESC NULLS LAST, id DESC
    LIMIT 1
) l ON true
WHERE f.friend_id IS NOT NULL AND f.friend_id <> $1";

const SQLITE_FRIENDS: &str = "
WITH friends AS (
    SELECT DISTINCT CASE WHEN requester_id = ?1 THEN addressee_id ELSE requester_id END AS friend_id
    FROM user_friendships
    WHERE status = 'accepted' AND (requester_id = ?1 OR addressee_id = ?1)
),
latest AS (
    SELECT user_id, location_name, latitude, longitude, status,
           ROW_NUMBER() OVER (
               PARTITION BY user_id
               ORDER BY julianday(last_updated) DESC NULLS LAST, julianday(created_at) DESC NULLS LAST, id DESC
           ) AS rn
    FROM friend_locations
    WHERE is_public = 1 AND user_id IN (SELECT friend_id FROM friends)
)
SELECT f.friend_id AS user_id,
       COALESCE(NULLIF(trim(p.full_name), ''), NULLIF(trim(p.nickname), '')) AS name,
       l.location_name, CAST(l.latitude AS REAL) AS latitude, CAST(l.longitude AS REAL) AS longitude, l.status
FROM friends f
LEFT JOIN profiles p ON p.id = f.friend_id
LEFT JOIN latest l ON l.user_id = f.friend_id AND l.rn = 1
WHERE f.friend_id IS NOT NULL AND f.friend_id <> ?1";

const PG_EVENTS: &str = "
SELECT title, start_date, location::text AS location
FROM group_events
WHERE status = 'published' AND start_date >= now() AND start_date <= now() + interval '90 days'
ORDER BY start_date, id
LIMIT $1";

// Timestamps are ISO-8601 text; julianday() compares them whatever their exact layout.
const SQLITE_EVENTS: &str = "
SELECT title, strftime('%Y-%m-%dT%H:%M:%SZ', start_date) AS start_date, location
FROM group_events
WHERE status = 'published'
  AND julianday(start_date) >= julianday('now') AND julianday(start_date) <= julianday('now', '+90 days')
ORDER BY julianday(start_date), id
LIMIT ?1";

#[derive(sqlx::FromRow)]
struct FriendRow {
    user_id: String,
    name: Option<String>,
    location_name: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    status: Option<String>,
}

impl FriendRow {
    fn into_friend(self) -> Friend {
        Friend {
            user_id: self.user_id,
            name: self.name.unwrap_or_else(|| UNNAMED_FRIEND.to_string()),
            location_name: self.location_name,
            latitude: self.latitude,
            longitude: self.longitude,
            status: self.status,
        }
    }
}

/// `location.name`, a bare JSON string as itself, else the JSON as compact text (the same on
/// both backends); `None` for null/absent.
fn event_location(text: Option<&str>) -> Option<String> {
    let text = text?.trim();
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => None,
        Ok(Value::String(s)) => Some(s),
        Ok(value) => match value.get("name") {
            Some(Value::String(name)) => Some(name.clone()),
            Some(name) if !name.is_null() => Some(name.to_string()),
            _ => Some(value.to_string()),
        },
        Err(_) if text.is_empty() => None,
        Err(_) => Some(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(items: &[(&str, f64)]) -> Vec<(String, f64)> {
        items.iter().map(|(c, a)| (c.to_string(), *a)).collect()
    }

    #[test]
    fn figures_are_rounded_and_compared_in_cents() {
        let context = build_financial(
            "2026-11".into(),
            spend(&[("fuel", 33.33 + 33.33 + 33.34), ("food", 10.0)]),
            spend(&[("fuel", 100.0), ("camping", 0.0)]),
            1850.456,
        );
        let fuel = context.categories.iter().find(|c| c.category == "fuel").unwrap();
        assert_eq!((fuel.spent, fuel.remaining, fuel.utilisation_pct, fuel.over_budget), (100.0, Some(0.0), Some(100.0), false));
        let camping = context.categories.iter().find(|c| c.category == "camping").unwrap();
        assert_eq!((camping.limit, camping.utilisation_pct, camping.over_budget), (Some(0.0), None, false));
        assert_eq!(context.categories.iter().map(|c| c.category.as_str()).collect::<Vec<_>>(), ["camping", "food", "fuel"]);
        assert_eq!(
            (context.total_spent, context.total_budget, context.total_remaining, context.income_total),
            (110.0, 100.0, 0.0, 1850.46)
        );
    }

    #[test]
    fn event_locations_prefer_the_name() {
        assert_eq!(event_location(Some(r#"{"name":"Quartzsite, AZ","lat":1}"#)).as_deref(), Some("Quartzsite, AZ"));
        assert_eq!(event_location(Some(r#""Moab""#)).as_deref(), Some("Moab"));
        assert_eq!(event_location(Some(r#"{"lat": 1}"#)).as_deref(), Some(r#"{"lat":1}"#));
        assert_eq!(event_location(Some("null")), None);
        assert_eq!(event_location(None), None);
    }

    #[test]
    fn string_lists_come_from_json_arrays() {
        assert_eq!(string_list(Some(r#"["a", null, "b"]"#)), ["a", "b"]);
        assert!(string_list(Some("not json")).is_empty());
        assert!(string_list(None).is_empty());
    }
}
