//! The legacy dialect end to end over real sockets (protocol.md, "Legacy dialect").

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn welcome_frame_has_the_legacy_shape() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection");
    assert_eq!(welcome["status"], "connected");
    assert_eq!(welcome["profile_integration"], "enabled");
    assert!(welcome["greeting"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(welcome.get("message").is_none() && welcome.get("content").is_none() && welcome.get("response").is_none(), "{welcome}");
    assert!(welcome["connection_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(welcome["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[tokio::test]
async fn every_alias_path_serves_the_same_handler() {
    let app = spawn_app().await;
    for prefix in ["/api/v1/pam/ws", "/api/v1/pam-simple/ws", "/pam/ws"] {
        let url = format!("ws://{}{prefix}/{USER}?token={}", app.addr, token_for(USER));
        let mut client = WsClient::connect(&url).await;
        assert_eq!(client.recv_json().await["type"], "connection", "{prefix}");
    }
}

#[tokio::test]
async fn chat_gets_exactly_one_chat_response_with_the_default_session() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","message":"hello"})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response");
    assert_eq!(answer["session_id"], "default");
    assert_eq!(answer["error"], false);
    assert_eq!(answer["message"], answer["content"]);
    assert!(answer["message"].as_str().unwrap().contains("PAM"));
    assert_eq!(answer["source"], "builtin");
    assert!(answer["latency_ms"].is_u64());
    assert!(answer["ui_actions"].is_array());
    // Nothing else follows the terminal frame.
    client.send_json(json!({"type":"ping","timestamp":1})).await;
    assert_eq!(client.recv_non_ping().await, json!({"type":"pong","timestamp":1}));
}

#[tokio::test]
async fn content_is_an_alias_of_message_and_session_ids_are_kept() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","content":"what can you do?","session_id":"trip-2026_a"})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response");
    assert_eq!(answer["session_id"], "trip-2026_a");
    assert!(answer["message"].as_str().unwrap().contains("budget"));
}

#[tokio::test]
async fn an_invalid_session_id_is_a_validation_error_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","message":"hi","session_id":"no spaces; please"})).await;
    let error = client.recv_non_ping().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error_code"], "VALIDATION_ERROR");
    client.send_json(json!({"type":"chat","message":"hi","session_id":"ok"})).await;
    assert_eq!(client.recv_non_ping().await["type"], "chat_response");
}

#[tokio::test]
async fn init_and_context_update_are_stored_without_any_frame_carrying_message() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"init","context":{"page":"trips"}})).await;
    client.send_json(json!({"type":"context_update","context":{"user_location":{"lat":45.5,"lng":-122.6}}})).await;
    client.send_json(json!({"type":"ping","timestamp":42})).await;
    // The pong is the first frame: neither context frame produced a reply.
    assert_eq!(client.recv_non_ping().await, json!({"type":"pong","timestamp":42}));
}

#[tokio::test]
async fn invalid_json_and_unknown_types_get_error_frames_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_text("{this is not json").await;
    let error = client.recv_non_ping().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error_code"], "INVALID_JSON");
    client.send_json(json!({"type":"teleport"})).await;
    let error = client.recv_non_ping().await;
    assert_eq!(error["error_code"], "UNKNOWN_TYPE");
    assert!(error["message"].as_str().unwrap().contains("teleport"));
    client.send_json(json!({"type":"heartbeat"})).await;
    client.send_json(json!({"type":"typing_indicator"})).await;
    client.send_json(json!({"type":"chat","message":"hi"})).await;
    assert_eq!(client.recv_non_ping().await["type"], "chat_response");
}

#[tokio::test]
async fn client_close_is_counted_with_its_code() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.ws.close(None).await.unwrap();
    wait_until("the normal close is counted", || async { metric(&app.metrics().await, "pam_ws_closed_total{code=\"1005\"}") == Some(1.0) })
        .await;
    let text = app.metrics().await;
    assert_eq!(metric(&text, "pam_ws_connections_opened_total"), Some(1.0));
    assert_eq!(metric(&text, "pam_ws_frames_total{direction=\"out\",type=\"connection\"}"), Some(1.0));
}
