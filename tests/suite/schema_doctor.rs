//! The schema doctor refuses a drifted database with one readable line per problem, and passes
//! the migrated schema on both backends.

use crate::common::*;
use pam_gateway::storage::database::Database;

fn admin_url() -> String {
    std::env::var("PAM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A throwaway database on the test server, dropped at the end.
struct ScratchDb {
    admin: sqlx::PgPool,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create() -> Self {
        let admin_url = admin_url();
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("Postgres is required at {admin_url} ({e}); start it with ./scripts/test.sh or set PAM_TEST_DATABASE_URL")
        });
        let name = format!("pam_doctor_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        Self { admin, url: format!("{base}/{name}"), name }
    }

    async fn drop(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).execute(&self.admin).await.unwrap();
    }
}

#[tokio::test]
async fn a_drifted_postgres_schema_stops_startup_with_one_line_per_problem() {
    let scratch = ScratchDb::create().await;
    let pool = sqlx::PgPool::connect(&scratch.url).await.unwrap();
    // The mistakes of the system this replaces: a bigint profile id with a user_id column, and a
    // uuid session id.
    for statement in [
        "CREATE TABLE profiles (id bigint PRIMARY KEY, user_id uuid, full_name text, nickname text, travel_style text[], interests text[])",
        "CREATE TABLE pam_conversations (id uuid PRIMARY KEY, user_id uuid, session_id uuid, message_count integer, last_activity timestamptz)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let error = Database::connect(&scratch.url, false).await.expect_err("drift must stop startup").to_string();
    scratch.drop().await;
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
    let scratch = ScratchDb::create().await;
    let postgres = Database::connect(&scratch.url, true).await.map(|_| ());
    scratch.drop().await;
    postgres.expect("migrated Postgres passes");
    let (settings, _file) = test_settings();
    Database::connect(&settings.database_url, true).await.expect("migrated SQLite passes");
}
