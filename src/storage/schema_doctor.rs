//! The schema doctor: after migrations (or instead of them, with `PAM_MIGRATE=false` on a shared
//! database) it checks that every column the gateway's queries use exists with the right type,
//! and reports drift as one readable line per problem: what was expected, what was found, and
//! which query depends on it.

use std::collections::HashMap;

use sqlx::Row;

use super::database::Database;

/// (table, column, accepted Postgres `information_schema` types, what depends on it).
type Expectation = (&'static str, &'static str, &'static [&'static str], &'static str);

const UUID: &[&str] = &["uuid"];
const TEXT: &[&str] = &["text", "character varying"];
const NUMERIC: &[&str] = &["numeric", "double precision", "real"];
const JSON: &[&str] = &["jsonb", "json"];
const TIMESTAMP: &[&str] = &["timestamp with time zone"];
const DATE: &[&str] = &["date"];
const ARRAY: &[&str] = &["ARRAY"];

const EXPECTED: &[Expectation] = &[
    ("profiles", "id", UUID, "the profile context (profiles is keyed by id, there is no user_id)"),
    ("profiles", "full_name", TEXT, "the profile and social context"),
    ("profiles", "nickname", TEXT, "the profile and social context"),
    ("profiles", "travel_style", ARRAY, "the profile context"),
    ("profiles", "interests", ARRAY, "the profile context"),
    ("user_settings", "user_id", UUID, "regional preferences"),
    ("user_settings", "regional_preferences", JSON, "regional preferences"),
    ("expenses", "user_id", UUID, "month-to-date spend"),
    ("expenses", "amount", NUMERIC, "month-to-date spend"),
    ("expenses", "category", TEXT, "month-to-date spend"),
    ("expenses", "date", DATE, "month-to-date spend"),
    ("budgets", "user_id", UUID, "active budgets"),
    ("budgets", "budgeted_amount", NUMERIC, "active budgets"),
    ("budgets", "monthly_limit", NUMERIC, "active budgets"),
    ("budgets", "start_date", DATE, "active budgets"),
    ("budgets", "end_date", DATE, "active budgets"),
    ("budgets", "alert_threshold", NUMERIC, "budget alerts"),
    ("income_entries", "user_id", UUID, "month-to-date income"),
    ("income_entries", "amount", NUMERIC, "month-to-date income"),
    ("user_friendships", "requester_id", UUID, "friends"),
    ("user_friendships", "addressee_id", UUID, "friends"),
    ("user_friendships", "status", TEXT, "friends"),
    ("friend_locations", "user_id", UUID, "friend locations"),
    ("friend_locations", "is_public", &["boolean"], "friend locations"),
    ("group_events", "start_date", TIMESTAMP, "upcoming events"),
    ("group_events", "status", TEXT, "upcoming events"),
    ("pam_conversations", "user_id", UUID, "conversation storage"),
    ("pam_conversations", "session_id", TEXT, "conversation storage (session ids are free text, never uuid)"),
    ("pam_conversations", "message_count", &["integer", "bigint"], "conversation storage"),
    ("pam_conversations", "last_activity", TIMESTAMP, "conversation storage"),
    ("pam_messages", "conversation_id", UUID, "conversation storage"),
    ("pam_messages", "role", TEXT, "conversation storage"),
    ("pam_messages", "content", TEXT, "conversation storage"),
    ("pam_messages", "metadata", JSON, "conversation storage"),
    ("pam_messages", "created_at", TIMESTAMP, "conversation storage and history order"),
    ("pam_messages", "client_msg_id", TEXT, "idempotent chats"),
    ("pam_notifications", "id", UUID, "pushes and timers (the timer_id)"),
    ("pam_notifications", "user_id", UUID, "pushes and timers"),
    ("pam_notifications", "kind", TEXT, "pushes and timers"),
    ("pam_notifications", "payload", JSON, "pushes and timers (the frame's fields)"),
    ("pam_notifications", "fire_at", TIMESTAMP, "timers (claiming due rows)"),
    ("pam_notifications", "fired_at", TIMESTAMP, "timers (claiming due rows)"),
    ("pam_notifications", "delivered_at", TIMESTAMP, "delivery of pushes on connect"),
    ("pam_notifications", "dismissed_at", TIMESTAMP, "dismissing timers"),
    ("pam_notifications", "expires_at", TIMESTAMP, "push time-to-live"),
    ("pam_notifications", "dedupe_key", TEXT, "deduplicated pushes"),
    ("pam_notifications", "created_at", TIMESTAMP, "pushes and timers"),
    ("pam_abandoned_turns", "user_id", UUID, "the abandoned-turn count (pam_turns_abandoned_recent)"),
    ("pam_abandoned_turns", "client_msg_id", TEXT, "the abandoned-turn count (pam_turns_abandoned_recent)"),
    ("pam_abandoned_turns", "node", TEXT, "the abandoned-turn count (pam_turns_abandoned_recent)"),
    ("pam_abandoned_turns", "boot", TEXT, "the abandoned-turn count (pam_turns_abandoned_recent)"),
    ("pam_abandoned_turns", "cause", TEXT, "the abandoned-turn count (pam_turns_abandoned_recent)"),
    ("pam_abandoned_turns", "recorded_at", TIMESTAMP, "the abandoned-turn count (pam_turns_abandoned_recent)"),
];

/// Every problem found, one line each; empty when the schema fits.
pub async fn diagnose(db: &Database) -> anyhow::Result<Vec<String>> {
    let columns = columns(db).await?;
    let mut problems = Vec::new();
    for (table, column, types, used_by) in EXPECTED {
        match columns.get(&(table.to_string(), column.to_string())) {
            None => problems.push(format!("{table}.{column} is missing (expected {}; used by {used_by})", types[0])),
            // SQLite types are affinities, so only presence is checked there.
            Some(found) if matches!(db, Database::Postgres(_)) && !types.contains(&found.as_str()) => {
                problems.push(format!("{table}.{column} is {found}, expected {} (used by {used_by})", types.join(" or ")))
            }
            Some(_) => {}
        }
    }
    Ok(problems)
}

/// Fails with one line per problem.
pub async fn check(db: &Database) -> anyhow::Result<()> {
    let problems = diagnose(db).await?;
    if problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    anyhow::bail!("the database schema does not fit the gateway ({} problems):\n{}", problems.len(), lines.join("\n"))
}

async fn columns(db: &Database) -> anyhow::Result<HashMap<(String, String), String>> {
    let rows: Vec<(String, String, String)> = match db {
        Database::Postgres(pool) => sqlx::query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema()",
        ).persistent(false)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect(),
        Database::Sqlite(pool) => sqlx::query(
            "SELECT m.name, p.name, lower(p.type) FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect(),
    };
    Ok(rows.into_iter().map(|(table, column, kind)| ((table, column), kind)).collect())
}
