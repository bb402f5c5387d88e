//! Postgres going away mid-session: chats still answer (saying the data is out of reach),
//! health says `degraded` (readiness stays about this node), and the turns (and v2 answers) finished meanwhile are written once
//! Postgres is back — nothing lost. Runs a throwaway cluster of its own (initdb as the `postgres` OS user).

use crate::common::cluster::Cluster;
use crate::common::*;
use serde_json::json;

async fn health(app: &TestApp) -> serde_json::Value {
    reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap()
}

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
    wait_until("health reports storage degraded", || async { health(&app).await["status"] == "degraded" }).await;
    let report = health(&app).await;
    assert_eq!(report["storage"]["status"], "degraded", "{report}");
    assert!(report["problems"].to_string().contains("conversation writes failing"), "{report}");
    assert_eq!(metric(&app.metrics().await, "pam_storage_degraded"), Some(1.0));
    // Readiness is about this node only: a database outage shared by every node must not take
    // them all out of the load balancer while they still answer.
    assert_eq!(reqwest::get(app.http("/health/ready")).await.unwrap().status(), 200);
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
    wait_until("health recovers", || async { health(&app).await["status"] == "healthy" }).await;
}

#[tokio::test]
async fn a_v2_answer_finished_while_postgres_is_down_is_written_when_it_returns() {
    use crate::common::v2::*;
    let cluster = Cluster::create();
    let (model, gate) = StreamingModel::gated(vec!["Stored ", "later"], "Stored later");
    let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
    let app = spawn_app_with(|s| s.database_url = cluster.url(), overrides).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;

    client.send_json(json!({"type":"chat","id":"outage-1","message":"tell me something"})).await;
    frames_until(&mut client, "ack").await;
    cluster.stop();
    gate.add_permits(1);
    let end = frames_until(&mut client, "chat_end").await.pop().unwrap();
    assert_eq!(end["message"], "Stored later", "{end}");
    wait_until("the answer waits in the outbox", || async { metric(&app.metrics().await, "pam_turns_pending").unwrap_or(0.0) >= 1.0 })
        .await;

    cluster.start();
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let answers = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT m.content FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
             WHERE c.user_id = $1::uuid AND m.role = 'assistant' AND m.metadata->>'client_msg_id' = 'outage-1'",
        )
        .bind(USER)
        .fetch_all(&pool)
        .await
        .unwrap_or_default()
    };
    wait_until("the waiting answer is written", || async { answers().await == ["Stored later"] }).await;

    // Once written, a repeat of the id replays it without asking the model again.
    client.send_json(json!({"type":"chat","id":"outage-1","message":"tell me something"})).await;
    let replay = frames_until(&mut client, "chat_end").await.pop().unwrap();
    assert_eq!(replay["message"], "Stored later", "{replay}");
    assert_eq!(replay["cached"], true);
    assert_eq!(model.calls(), 1);
}
