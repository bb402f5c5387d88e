//! Postgres going away mid-session: chats still answer (saying the data is out of reach),
//! readiness turns 503, and the turns answered meanwhile are written once Postgres is back —
//! nothing lost. Runs a throwaway cluster of its own (initdb as the `postgres` OS user).

use crate::common::cluster::Cluster;
use crate::common::*;
use serde_json::json;

async fn chat(client: &mut WsClient, message: &str) -> String {
    client.send_json(json!({"type":"chat","message":message})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    answer["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn turns_answered_while_postgres_is_down_are_written_when_it_returns() {
    let cluster = Cluster::create();
    let app = spawn_app_with(|s| s.database_url = cluster.url(), Default::default()).await;
    let mut client = app.connect_ready().await;

    // Nothing is cached yet, so every context load has to reach the stopped server.
    cluster.stop();
    assert!(chat(&mut client, "hi").await.starts_with("Hi there"));
    let budget = chat(&mut client, "how much budget is left?").await;
    assert!(budget.starts_with("I can't see your data right now"), "{budget}");
    wait_until("readiness reports the database down", || async {
        reqwest::get(app.http("/health/ready")).await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    assert!(metric(&app.metrics().await, "pam_turns_pending").unwrap_or(0.0) >= 1.0);

    cluster.start();
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let stored = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT m.content FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
             WHERE c.user_id = $1::uuid AND m.role = 'user' ORDER BY m.created_at",
        )
        .bind(USER)
        .fetch_all(&pool)
        .await
        .unwrap_or_default()
    };
    wait_until("the waiting turns are written", || async { stored().await.len() == 2 }).await;
    assert_eq!(stored().await, ["hi", "how much budget is left?"], "written in order");
    wait_until("readiness recovers", || async {
        reqwest::get(app.http("/health/ready")).await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
}
