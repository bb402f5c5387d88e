//! Protocol v2 over real sockets: the subprotocol and the v2 route, ack after the user turn is
//! stored, streamed deltas and the full-text chat_end, idempotent ids (also after a reconnect
//! and on Postgres), cancel, seq on every frame, and legacy staying single-frame.

use std::sync::Arc;

use crate::common::db::{postgres_url, require_postgres};
use crate::common::v2::*;
use crate::common::*;
use pam_gateway::Overrides;
use serde_json::{Value, json};

fn with_model(model: Arc<StreamingModel>) -> Overrides {
    Overrides { llm: Some(model), ..Default::default() }
}

async fn sqlite(app: &TestApp) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db.0.display())).await.unwrap()
}

#[tokio::test]
async fn the_v2_subprotocol_on_the_legacy_path_is_echoed_and_welcomed() {
    let app = spawn_app().await;
    let (mut client, protocol) = connect_v2(&app.ws_url(USER, Some(&token_for(USER)))).await;
    assert_eq!(protocol.as_deref(), Some("pam.v2"));
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["protocol"], "pam.v2");
    assert_eq!(welcome["seq"], 1);
    assert!(welcome["connection_id"].as_str().is_some_and(|c| !c.is_empty()), "{welcome}");
    assert!(welcome["stream_id"].as_str().is_some_and(|s| !s.is_empty()), "{welcome}");
    assert!(welcome["epoch"].as_str().is_some_and(|s| !s.is_empty()), "{welcome}");
    assert_eq!(welcome["resume_window_ms"], 300_000, "{welcome}");
    assert_eq!(welcome["heartbeat_ms"], 25_000);
}

#[tokio::test]
async fn the_legacy_path_without_the_subprotocol_stays_legacy() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection");
    assert!(welcome.get("seq").is_none(), "{welcome}");
}

#[tokio::test]
async fn a_v2_chat_is_acked_after_storing_then_streams_deltas_and_ends_with_the_full_text() {
    let (model, gate) = StreamingModel::gated(vec!["Hel", "lo ", "there"], "Hello there");
    let app = spawn_app_with(|_| {}, with_model(model.clone())).await;
    let (mut client, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"m-1","message":"hi PAM"})).await;
    let ack = client.recv_non_ping().await;
    assert_eq!((ack["type"].as_str(), ack["id"].as_str()), (Some("ack"), Some("m-1")), "{ack}");
    // The model is held after its first delta: the user row is already durable.
    let stored: (String, String) = sqlx::query_as("SELECT role, content FROM pam_messages WHERE client_msg_id = 'm-1'")
        .fetch_one(&sqlite(&app).await)
        .await
        .expect("the user message is stored before the ack");
    assert_eq!(stored, ("user".into(), "hi PAM".into()));
    gate.add_permits(1);
    let mut frames = vec![welcome, ack];
    frames.extend(frames_until(&mut client, "chat_end").await);
    let frames: Vec<Value> = frames.into_iter().filter(|f| f["type"] != "ping").collect();
    assert_increasing_seq(&frames);
    assert_eq!(joined_deltas(&frames), "Hello there");
    let end = frames.last().unwrap();
    assert_eq!(end["id"], "m-1");
    assert_eq!(end["message"], "Hello there");
    for key in ["ui_actions", "model", "source", "cached", "first_token_ms", "latency_ms"] {
        assert!(end.get(key).is_some(), "{key} missing in {end}");
    }
    let answer: String =
        sqlx::query_scalar("SELECT content FROM pam_messages WHERE role = 'assistant'").fetch_one(&sqlite(&app).await).await.unwrap();
    assert_eq!(answer, "Hello there");
}

#[tokio::test]
async fn after_a_mid_stream_fallback_chat_end_carries_the_fallback_text() {
    let model = StreamingModel::new(vec!["The primary said half"], "The fallback's whole answer");
    let app = spawn_app_with(|_| {}, with_model(model)).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"fb","message":"plan a trip?"})).await;
    let frames = frames_until(&mut client, "chat_end").await;
    assert_eq!(joined_deltas(&frames), "The primary said half");
    assert_eq!(frames.last().unwrap()["message"], "The fallback's whole answer", "clients replace the deltas with it");
}

async fn chat_end_for(client: &mut WsClient, id: &str) -> Vec<Value> {
    client.send_json(json!({"type":"chat","id":id,"message":"how much budget is left?","session_id":"trip-7"})).await;
    let frames = frames_until(client, "chat_end").await;
    assert_eq!(frames.iter().find(|f| f["type"] == "ack").expect("an ack")["id"], id);
    frames
}

async fn repeated_ids_are_answered_once(app: &TestApp, model: &StreamingModel, id: &str) {
    let (mut client, _) = connect_welcomed(app, &token_for(USER)).await;
    let first = chat_end_for(&mut client, id).await;
    assert_eq!(model.calls(), 1);
    let again = chat_end_for(&mut client, id).await;
    assert_eq!(again.iter().filter(|f| f["type"] == "chat_delta").count(), 0, "a replay does not stream");
    assert_eq!(again.last().unwrap()["message"], first.last().unwrap()["message"]);
    assert_eq!(again.last().unwrap()["cached"], true);
    drop(client);
    let (mut reconnected, _) = connect_welcomed(app, &token_for(USER)).await;
    let after_reconnect = chat_end_for(&mut reconnected, id).await;
    assert_eq!(after_reconnect.last().unwrap()["message"], "stored answer");
    assert_eq!(model.calls(), 1, "the model ran once for one id");
}

#[tokio::test]
async fn a_repeated_id_replays_the_stored_answer_without_asking_the_model_again() {
    let model = StreamingModel::new(vec!["stored ", "answer"], "stored answer");
    let app = spawn_app_with(|_| {}, with_model(model.clone())).await;
    repeated_ids_are_answered_once(&app, &model, "same-id").await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pam_messages").fetch_one(&sqlite(&app).await).await.unwrap();
    assert_eq!(rows, 2, "one user row and one answer");
}

#[tokio::test]
async fn a_repeated_id_replays_the_stored_answer_on_postgres_too() {
    let url = postgres_url();
    require_postgres(&url).await;
    let model = StreamingModel::new(vec!["stored ", "answer"], "stored answer");
    let app = spawn_app_with(|s| s.database_url = url.clone(), with_model(model.clone())).await;
    let id = format!("pg-{}", uuid::Uuid::new_v4().simple());
    repeated_ids_are_answered_once(&app, &model, &id).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pam_messages WHERE client_msg_id = $1 OR metadata->>'client_msg_id' = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn cancel_stops_the_chat_and_stores_the_partial_answer() {
    let (model, _gate) = StreamingModel::gated(vec!["Half an ", "answer"], "Half an answer");
    let app = spawn_app_with(|_| {}, with_model(model)).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"c-1","message":"tell me a long story"})).await;
    let frames = frames_until(&mut client, "chat_delta").await;
    assert_eq!(frames.last().unwrap()["delta"], "Half an ");
    client.send_json(json!({"type":"cancel","id":"c-1"})).await;
    let end = frames_until(&mut client, "chat_end").await.pop().unwrap();
    assert_eq!((end["id"].as_str(), end["message"].as_str()), (Some("c-1"), Some("Half an ")), "{end}");
    let metadata: String =
        sqlx::query_scalar("SELECT metadata FROM pam_messages WHERE role = 'assistant'").fetch_one(&sqlite(&app).await).await.unwrap();
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["cancelled"], true);
    client.send_json(json!({"type":"cancel","id":"c-1"})).await;
    let error = client.recv_non_ping().await;
    assert_eq!((error["type"].as_str(), error["error_code"].as_str()), (Some("error"), Some("VALIDATION_ERROR")), "{error}");
}

#[tokio::test]
async fn every_v2_frame_carries_seq_including_errors_pongs_and_pings() {
    let app = spawn_app_with(|s| s.ping_interval_ms = 200, Overrides::default()).await;
    let (mut client, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","message":"no id"})).await;
    client.send_json(json!({"type":"dance"})).await;
    client.send_json(json!({"type":"ping","timestamp":7})).await;
    let mut frames = vec![welcome];
    frames.extend(frames_until(&mut client, "pong").await);
    frames.extend(frames_until(&mut client, "ping").await);
    assert_increasing_seq(&frames);
    let errors: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    assert_eq!(errors[0]["error_code"], "VALIDATION_ERROR");
    assert_eq!(errors[1]["error_code"], "UNKNOWN_TYPE");
    assert!(errors.iter().all(|e| e["retryable"] == false));
}

#[tokio::test]
async fn ten_invalid_v2_frames_close_with_1008_after_a_sequenced_error() {
    let app = spawn_app().await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    for _ in 0..10 {
        client.send_text("{nope").await;
    }
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1008);
    let last = frames.last().unwrap();
    assert_eq!(last["error_code"], "VALIDATION_ERROR");
    assert_increasing_seq(&frames);
}

#[tokio::test]
async fn v2_chats_obey_the_rate_limit_with_an_error_naming_the_id() {
    let model = StreamingModel::new(vec![], "ok");
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 1, with_model(model)).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    chat_end_for(&mut client, "r-1").await;
    client.send_json(json!({"type":"chat","id":"r-2","message":"again"})).await;
    let error = client.recv_non_ping().await;
    assert_eq!(error["error_code"], "RATE_LIMIT_EXCEEDED", "{error}");
    assert_eq!(error["id"], "r-2", "the refused chat is named, so a client can tie the refusal to it");
    assert_eq!(error["retryable"], true);
    assert!(error["seq"].is_u64());
}

#[tokio::test]
async fn a_legacy_client_gets_one_chat_response_from_a_streaming_model() {
    let model = StreamingModel::new(vec!["one ", "two ", "three ", "four"], "one two three four");
    let app = spawn_app_with(|_| {}, with_model(model)).await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","message":"count for me"})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    assert_eq!(answer["message"], "one two three four");
    assert!(answer.get("seq").is_none());
    client.send_json(json!({"type":"ping","timestamp":1})).await;
    let next = client.recv_non_ping().await;
    assert_eq!(next, json!({"type":"pong","timestamp":1}), "nothing else came between the answer and the pong");
}

#[tokio::test]
async fn draining_closes_v2_sockets_with_1012_after_a_sequenced_error() {
    let app = spawn_app().await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    let closing = tokio::spawn(async move { client.recv_close().await });
    app.shutdown().await;
    let (closed, frames) = closing.await.unwrap();
    assert_eq!(closed.code, 1012);
    let error = frames.last().unwrap();
    assert_eq!(error["error_code"], "SERVICE_RESTART");
    assert!(error["seq"].as_u64().unwrap() > 1, "{error}");
}
