//! The gateway on real Postgres: migrations run (twice is safe), health reports the backend,
//! and a chat works. Needs the server `./scripts/test.sh` makes sure of.

mod common;

use common::*;
use serde_json::json;

fn postgres_url() -> String {
    std::env::var("PAM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn require_postgres(url: &str) {
    if let Err(error) = sqlx::PgPool::connect(url).await {
        panic!(
            "Postgres is required for this test and is not reachable at {url}: {error}\n\
             Start it with ./scripts/test.sh (it starts an installed server) or set PAM_TEST_DATABASE_URL."
        );
    }
}

#[tokio::test]
async fn the_gateway_migrates_postgres_and_reports_it_healthy() {
    let url = postgres_url();
    require_postgres(&url).await;
    // Two gateways migrating the same database one after the other: the second is a no-op.
    for _ in 0..2 {
        let app = spawn_app_with(|s| s.database_url = url.clone(), Default::default()).await;
        let health: serde_json::Value = reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap();
        assert_eq!(health["database"]["backend"], "postgres");
        assert_eq!(health["database"]["status"], "healthy");
        assert_eq!(health["status"], "healthy");
        let mut client = app.connect_ready().await;
        client.send_json(json!({"type":"chat","message":"hi","session_id":"default"})).await;
        assert_eq!(client.recv_non_ping().await["type"], "chat_response");
        app.shutdown().await;
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let session_type: String = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'pam_conversations' AND column_name = 'session_id'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(session_type, "text", "session ids are free text, never uuid");
}
