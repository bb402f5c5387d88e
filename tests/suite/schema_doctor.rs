//! The schema doctor refuses a drifted database with one readable line per problem, and passes
//! the migrated schema on both backends.

use crate::common::db::private_postgres_url;
use crate::common::*;
use pam_gateway::storage::database::Database;

#[tokio::test]
async fn a_drifted_postgres_schema_stops_startup_with_one_line_per_problem() {
    // A throwaway database on the test server, dropped at the end.
    let (url, _scratch) = private_postgres_url().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // The mistakes of the system this replaces: a bigint profile id with a user_id column, and a
    // uuid session id.
    for statement in [
        "CREATE TABLE profiles (id bigint PRIMARY KEY, user_id uuid, full_name text, nickname text, travel_style text[], interests text[])",
        "CREATE TABLE pam_conversations (id uuid PRIMARY KEY, user_id uuid, session_id uuid, message_count integer, last_activity timestamptz)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let error = Database::connect(&url, false).await.expect_err("drift must stop startup").to_string();
    let lines: Vec<&str> = error.lines().collect();
    assert!(lines[0].starts_with("the database schema does not fit the gateway"), "{error}");
    assert!(
        lines.contains(
            &"  - profiles.id is bigint, expected uuid (used by the profile context (profiles is keyed by id, there is no user_id))"
        ),
        "{error}"
    );
    assert!(lines.iter().any(|l| l.starts_with("  - pam_conversations.session_id is uuid, expected text or character varying")), "{error}");
    assert!(lines.iter().any(|l| l.starts_with("  - expenses.user_id is missing")), "{error}");
    assert!(!lines.iter().any(|l| l.contains("pam_conversations.user_id")), "correct columns are not reported: {error}");
}

#[tokio::test]
async fn the_migrated_schemas_pass_the_doctor() {
    // A throwaway database on the test server, dropped at the end.
    let (url, _scratch) = private_postgres_url().await;
    let postgres = Database::connect(&url, true).await.map(|_| ());
    postgres.expect("migrated Postgres passes");
    let (settings, _file) = test_settings();
    Database::connect(&settings.database_url, true).await.expect("migrated SQLite passes");
}
