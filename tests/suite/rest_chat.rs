//! REST chat (`POST /api/v1/pam/chat`): answers through the same pipeline as the socket (context,
//! storage), honours `Idempotency-Key` (replay, 422, 409), shares the socket's rate limit, and
//! answers CORS preflights for allowed origins.

use std::sync::Arc;

use crate::common::db::{postgres_url, require_postgres};
use crate::common::rest::*;
use crate::common::v2::StreamingModel;
use crate::common::*;
use pam_gateway::Overrides;
use serde_json::json;

#[tokio::test]
async fn a_rest_chat_is_answered_from_context_and_stored_with_its_ids() {
    let app = spawn_app().await;
    sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES (?1, 40.0, 'fuel', date('now'))")
        .bind(USER)
        .execute(&sqlite(&app).await)
        .await
        .unwrap();
    let body = json!({"message": "how much have I spent on fuel this month?", "session_id": "rest-1", "extra": true});
    let (status, answer) = post_chat(&app, &token_for(USER), &body, None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["response"].as_str().unwrap().contains("$40.00 on fuel"), "{answer}");
    assert!(answer["actions"].is_array());
    assert_eq!(answer["session_id"], "rest-1");
    assert!(answer["processing_time_ms"].is_u64() && answer["timestamp"].is_string(), "{answer}");
    let (conversation, message): (String, String) = sqlx::query_as(
        "SELECT c.id, m.id FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = ?1 AND c.session_id = 'rest-1' AND m.role = 'assistant'",
    )
    .bind(USER)
    .fetch_one(&sqlite(&app).await)
    .await
    .unwrap();
    assert_eq!(answer["conversation_id"], conversation.as_str());
    assert_eq!(answer["message_id"], message.as_str());
    assert_eq!(stored_messages(&app, USER).await, 2);
}

#[tokio::test]
async fn a_rest_chat_on_postgres_is_stored_once_with_its_ids() {
    let url = postgres_url();
    let pool = require_postgres(&url).await;
    let app = spawn_app_with(|s| s.database_url = url.clone(), Overrides::default()).await;
    let user = uuid::Uuid::new_v4().to_string();
    let body = json!({"message": "hello from REST", "session_id": "default"});
    let (status, first) = post_chat(&app, &token_for(&user), &body, Some("pg-key")).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = post_chat(&app, &token_for(&user), &body, Some("pg-key")).await;
    assert_eq!(first, again);
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.id::text, m.id::text, m.role FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = $1::uuid ORDER BY m.created_at",
    )
    .bind(&user)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "one stored turn: {rows:?}");
    assert_eq!(first["conversation_id"], rows[1].0.as_str());
    assert_eq!((first["message_id"].as_str(), rows[1].2.as_str()), (Some(rows[1].1.as_str()), "assistant"));
}

#[tokio::test]
async fn the_pam_simple_alias_answers_too() {
    let app = spawn_app().await;
    let response = client()
        .post(app.http("/api/v1/pam-simple/chat"))
        .bearer_auth(token_for(USER))
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert!(answer["response"].as_str().unwrap().contains("PAM"), "{answer}");
    assert_eq!(answer["session_id"], "default");
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_gets_the_stored_answer_and_stores_one_turn() {
    let app = spawn_app().await;
    let body = json!({"message": "hello there", "session_id": "idem"});
    let (first_status, first) = post_chat(&app, &token_for(USER), &body, Some("key-1")).await;
    let (second_status, second) = post_chat(&app, &token_for(USER), &body, Some("key-1")).await;
    assert_eq!((first_status, second_status), (200, 200));
    assert_eq!(first, second, "the replay is the stored response, timestamp and ids included");
    assert!(first["message_id"].is_string(), "{first}");
    assert_eq!(stored_messages(&app, USER).await, 2, "one stored turn");
    let (_, other_user) = post_chat(&app, &token_for(OTHER_USER), &body, Some("key-1")).await;
    assert_ne!(other_user["message_id"], first["message_id"], "keys are per user");
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let (status, _) = post_chat(&app, &token_for(USER), &json!({"message": "hello"}), Some("key-2")).await;
    assert_eq!(status, 200);
    let (status, body) = post_chat(&app, &token_for(USER), &json!({"message": "hello again"}), Some("key-2")).await;
    assert_eq!(status, 422, "{body}");
    assert_error_body(&body, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(stored_messages(&app, USER).await, 2);
}

#[tokio::test]
async fn the_same_key_while_the_first_request_runs_is_409() {
    let (llm, gate) = StreamingModel::gated(vec!["the gated answer"], "the gated answer");
    let app = spawn_app_with(|_| {}, Overrides { llm: Some(llm.clone()), ..Default::default() }).await;
    let app = Arc::new(app);
    let body = json!({"message": "plan my route to Broome"});
    let first = {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move { post_chat(&app, &token_for(USER), &body, Some("key-3")).await })
    };
    wait_until("the first request reaches the model", || async { llm.calls() == 1 }).await;
    let (status, conflict) = post_chat(&app, &token_for(USER), &body, Some("key-3")).await;
    assert_eq!(status, 409, "{conflict}");
    assert_error_body(&conflict, "IDEMPOTENCY_IN_FLIGHT");
    gate.add_permits(10);
    let (status, answer) = first.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"], "the gated answer");
    let (status, replay) = post_chat(&app, &token_for(USER), &body, Some("key-3")).await;
    assert_eq!((status, &replay), (200, &answer));
    assert_eq!(llm.calls(), 1, "the model ran once");
}

#[tokio::test]
async fn rest_and_socket_chats_share_one_rate_limit() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 2, Overrides::default()).await;
    let mut socket = app.connect_ready().await;
    socket.send_json(json!({"type": "chat", "message": "hello"})).await;
    assert_eq!(socket.recv_non_ping().await["type"], "chat_response");
    let (status, _) = post_chat(&app, &token_for(USER), &json!({"message": "hello"}), None).await;
    assert_eq!(status, 200);
    let (status, body) = post_chat(&app, &token_for(USER), &json!({"message": "hello"}), Some("after-limit")).await;
    assert_eq!(status, 429, "{body}");
    assert_error_body(&body, "RATE_LIMIT_EXCEEDED");
    socket.send_json(json!({"type": "chat", "message": "hello"})).await;
    assert_eq!(socket.recv_non_ping().await["error_code"], "RATE_LIMIT_EXCEEDED", "the socket shares the spent budget");
    let (status, _) = post_chat(&app, &token_for(OTHER_USER), &json!({"message": "hello"}), None).await;
    assert_eq!(status, 200, "another user has their own budget");
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let app = spawn_app_with(|s| s.allowed_origins = Some("https://wheelsandwins.com".into()), Overrides::default()).await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, app.http("/api/v1/pam/chat"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://wheelsandwins.com").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://wheelsandwins.com");
    let allowed_headers = allowed.headers()["access-control-allow-headers"].to_str().unwrap().to_string();
    for header in ["authorization", "content-type", "idempotency-key", "x-csrf-token"] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }
    assert!(allowed.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let answer = client()
        .post(app.http("/api/v1/pam/chat"))
        .header("Origin", "https://wheelsandwins.com")
        .bearer_auth(token_for(USER))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], "https://wheelsandwins.com");
    let failed = client().post(app.http("/api/v1/pam/chat")).header("Origin", "https://wheelsandwins.com").send().await.unwrap();
    assert_eq!(failed.status(), 401);
    assert_eq!(failed.headers()["access-control-allow-origin"], "https://wheelsandwins.com", "errors are readable by the page too");
}

#[tokio::test]
async fn a_client_that_gives_up_mid_answer_gets_the_replay_on_retry() {
    let (llm, gate) = StreamingModel::gated(vec!["the gated answer"], "the gated answer");
    let app = spawn_app_with(|_| {}, Overrides { llm: Some(llm.clone()), ..Default::default() }).await;
    let body = json!({"message": "plan my route to Darwin"});
    let abandoned = client()
        .post(app.http("/api/v1/pam/chat"))
        .bearer_auth(token_for(USER))
        .header("Idempotency-Key", "key-4")
        .json(&body)
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(abandoned.is_err(), "the model is gated, so the client's timeout fires first");
    assert_eq!(llm.calls(), 1);
    gate.add_permits(10);
    wait_until("the retry gets the stored answer", || {
        let (app, body) = (&app, &body);
        async move { post_chat(app, &token_for(USER), body, Some("key-4")).await.0 == 200 }
    })
    .await;
    let (status, replay) = post_chat(&app, &token_for(USER), &body, Some("key-4")).await;
    assert_eq!(status, 200);
    assert_eq!(replay["response"], "the gated answer");
    assert_eq!(llm.calls(), 1, "the abandoned turn finished and was not run again");
    assert_eq!(stored_messages(&app, USER).await, 2);
}
