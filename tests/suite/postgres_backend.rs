//! The gateway on real Postgres: migrations run (twice is safe), health reports the backend,
//! and a chat works. Needs the server `./scripts/test.sh` makes sure of.

use crate::common::db::{postgres_url, require_postgres};
use crate::common::*;
use serde_json::json;

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

/// Answers "poison" with a NUL (Postgres text cannot hold it) and anything else normally.
struct NulModel;

impl pam_actors::LlmProvider for NulModel {
    fn name(&self) -> &str {
        "nul"
    }

    fn generate<'a>(
        &'a self,
        request: &'a pam_actors::LlmRequest,
        _deltas: tokio::sync::mpsc::Sender<String>,
    ) -> pam_actors::BoxFuture<'a, Result<pam_actors::LlmReply, pam_actors::LlmError>> {
        let text = if request.message == "poison" { "bad\0answer".to_string() } else { format!("fine: {}", request.message) };
        Box::pin(async move { Ok(pam_actors::LlmReply::new(text, "nul-1", "nul")) })
    }
}

#[tokio::test]
async fn a_turn_postgres_refuses_is_dropped_and_later_turns_are_still_stored() {
    let url = postgres_url();
    require_postgres(&url).await;
    let overrides = pam_gateway::Overrides { llm: Some(std::sync::Arc::new(NulModel)), ..Default::default() };
    let app = spawn_app_with(|s| s.database_url = url.clone(), overrides).await;
    let session = format!("nul-{}", uuid::Uuid::new_v4().simple());
    let mut client = app.connect_ready().await;
    for message in ["poison", "after the poison"] {
        client.send_json(json!({"type":"chat","message":message,"session_id":session})).await;
        let reply = client.recv_non_ping().await;
        assert_eq!(reply["type"], "chat_response", "{reply}");
        assert_eq!(reply["error"], false, "{reply}");
    }
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "pam_turns_dropped_total"), Some(1.0), "the refused turn is dropped, not queued");
    assert_eq!(metric(&metrics, "pam_turns_pending").unwrap_or(0.0), 0.0, "nothing waits in the outbox");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT m.content FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.session_id = $1 ORDER BY m.created_at",
    )
    .bind(&session)
    .fetch_all(&pool)
    .await
    .unwrap();
    // The user's message is stored before the model runs; only the refused answer is missing.
    assert_eq!(stored, ["poison", "after the poison", "fine: after the poison"], "the turn after the refused one is stored");
    app.shutdown().await;
}
