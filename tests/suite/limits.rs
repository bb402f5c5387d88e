//! Input and output limits seen from the socket: frame size (1009), message length and empty
//! messages (error frame, socket open), the per-user chat rate limit (4429 after 5 violations),
//! slow consumers (4408) and runs of invalid frames (1008).

use std::time::Duration;

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn assert_pong(client: &mut WsClient, timestamp: Value) {
    client.send_json(json!({"type": "ping", "timestamp": timestamp})).await;
    let pong = client.recv_non_ping().await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": timestamp}), "the socket is still open");
}

fn assert_error(frame: &Value, code: &str) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error_code"], code, "{frame}");
    assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()), "an error has a message: {frame}");
}

fn assert_chat_response(frame: &Value) {
    assert_eq!(frame["type"], "chat_response", "{frame}");
    assert_eq!(frame["error"], false, "{frame}");
    assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()), "{frame}");
}

async fn counter(app: &TestApp, series: &str) -> f64 {
    metric(&app.metrics().await, series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_frame_over_max_frame_bytes_closes_with_1009_and_a_reason() {
    let app = spawn_app_with(|s| s.max_frame_bytes = 4096, Default::default()).await;
    let mut client = app.connect_ready().await;
    let big = json!({"type": "chat", "message": "x".repeat(10_000)}).to_string();
    assert!(big.len() > 10_000);
    client.send_text(&big).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1009, "{closed:?}; frames: {frames:?}");
    assert!(!closed.reason.is_empty(), "{closed:?}");
    if let Some(error) = frames.iter().find(|f| f["type"] == "error") {
        assert_error(error, "MESSAGE_TOO_LARGE");
    }
    assert!(frames.iter().all(|f| f["type"] != "chat_response"), "the big message is never answered: {frames:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_frame_just_under_max_frame_bytes_is_accepted() {
    let app = spawn_app_with(|s| s.max_frame_bytes = 4096, Default::default()).await;
    let mut client = app.connect_ready().await;
    let timestamp = "t".repeat(4000);
    let frame = json!({"type": "ping", "timestamp": timestamp}).to_string();
    assert!(frame.len() < 4096);
    assert_pong(&mut client, json!(timestamp)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_chat_over_max_message_chars_gets_message_too_large_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type": "chat", "message": "a".repeat(2001)})).await;
    assert_error(&client.recv_non_ping().await, "MESSAGE_TOO_LARGE");
    assert_pong(&mut client, json!(1)).await;
    // Characters, not bytes: 2000 two-byte characters are within the limit.
    client.send_json(json!({"type": "chat", "message": "é".repeat(2000)})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_or_whitespace_chat_gets_empty_message_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    for message in [json!({"type": "chat", "message": ""}), json!({"type": "chat", "message": "  \n\t "}), json!({"type": "chat"})] {
        client.send_json(message.clone()).await;
        let reply = client.recv_non_ping().await;
        assert_error(&reply, "EMPTY_MESSAGE");
    }
    assert_pong(&mut client, json!(2)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_fourth_chat_in_a_minute_is_rate_limited_pings_are_exempt_and_five_violations_close_with_4429() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 3, Default::default()).await;
    let before = counter(&app, "pam_rate_limited_total").await;
    let mut client = app.connect_ready().await;
    for n in 1..=3 {
        client.send_json(json!({"type": "chat", "message": format!("hello {n}")})).await;
        assert_chat_response(&client.recv_non_ping().await);
    }
    client.send_json(json!({"type": "chat", "message": "hello 4"})).await;
    assert_error(&client.recv_non_ping().await, "RATE_LIMIT_EXCEEDED");
    assert_pong(&mut client, json!(3)).await;
    // Violations 2 to 4 are answered; pings in between stay exempt.
    for n in 5..=7 {
        client.send_json(json!({"type": "chat", "message": format!("hello {n}")})).await;
        assert_error(&client.recv_non_ping().await, "RATE_LIMIT_EXCEEDED");
        assert_pong(&mut client, json!(n)).await;
    }
    client.send_json(json!({"type": "chat", "message": "hello 8"})).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 4429, "{closed:?}; frames: {frames:?}");
    assert!(!closed.reason.is_empty(), "{closed:?}");
    let error = frames.iter().rev().find(|f| f["type"] == "error").unwrap_or_else(|| panic!("an error frame precedes 4429: {frames:?}"));
    assert_error(error, "RATE_LIMIT_EXCEEDED");
    let after = counter(&app, "pam_rate_limited_total").await;
    assert!(after >= before + 5.0, "pam_rate_limited_total rose by 5 ({before} -> {after})");
    app.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_is_per_user_across_that_users_sockets() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 3, Default::default()).await;
    let mut first = app.connect_ready().await;
    for n in 1..=3 {
        first.send_json(json!({"type": "chat", "message": format!("hello {n}")})).await;
        assert_chat_response(&first.recv_non_ping().await);
    }
    let mut second = app.connect_ready().await;
    second.send_json(json!({"type": "chat", "message": "hello from the second tab"})).await;
    assert_error(&second.recv_non_ping().await, "RATE_LIMIT_EXCEEDED");
    assert_pong(&mut second, json!("second")).await;
    first.send_json(json!({"type": "chat", "message": "hello again"})).await;
    assert_error(&first.recv_non_ping().await, "RATE_LIMIT_EXCEEDED");
    // Another user has a budget of their own.
    let mut other = WsClient::connect(&app.ws_url(OTHER_USER, Some(&token_for(OTHER_USER)))).await;
    assert_eq!(other.recv_json().await["type"], "connection");
    other.send_json(json!({"type": "chat", "message": "hello"})).await;
    assert_chat_response(&other.recv_non_ping().await);
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_a_slow_consumer_with_4408() {
    let app = spawn_app_with(|s| s.outbound_queue = 4, Default::default()).await;
    let series = "pam_ws_closed_total{code=\"4408\"}";
    let before = counter(&app, series).await;
    let mut client = app.connect_ready().await;
    let ping = Message::Text(json!({"type": "ping", "timestamp": "x".repeat(60_000)}).to_string().into());
    let mut sent = 0;
    // Never read: the ~60 KB pongs fill the TCP buffers, then the bounded queue.
    for n in 0..1_000 {
        match tokio::time::timeout(Duration::from_secs(5), client.ws.send(ping.clone())).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
        if n % 25 == 24 && counter(&app, series).await > before {
            break;
        }
    }
    assert!(sent >= 4, "the client got some pings out ({sent})");
    wait_until("the server closed the socket with 4408", || async { counter(&app, series).await == before + 1.0 }).await;
    // Reading now ends: maybe pongs, maybe an error frame and a close, then the end of the stream.
    let (mut close, mut last_text) = (None, None);
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match client.ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    close = Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                    break;
                }
                Some(Ok(Message::Text(text))) => last_text = Some(text.to_string()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the client's stream ends after a slow-consumer close");
    // The close frame may not make it through a full pipe; when it does, it is announced.
    if let Some(close) = close {
        let (code, reason) = close.expect("a server close has a code");
        assert_eq!(code, 4408, "a close frame that made it through carries 4408");
        assert!(!reason.is_empty());
        let error: Value = serde_json::from_str(&last_text.expect("an error frame precedes the close")).unwrap();
        assert_error(&error, "SLOW_CONSUMER");
    }
    let live = reqwest::get(app.http("/health/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    let mut fresh = app.connect_ready().await;
    assert_pong(&mut fresh, json!("fresh")).await;
    app.shutdown().await;
}

#[tokio::test]
async fn ten_invalid_frames_in_a_row_close_with_1008_after_nine_invalid_json_errors() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    for _ in 0..10 {
        client.send_text("{nope").await;
    }
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1008, "{closed:?}; frames: {frames:?}");
    assert!(!closed.reason.is_empty(), "{closed:?}");
    let frames: Vec<_> = frames.into_iter().filter(|f| f["type"] != "ping").collect();
    let invalid_json = frames.iter().filter(|f| f["error_code"] == "INVALID_JSON").count();
    assert_eq!(invalid_json, 9, "{frames:?}");
    for frame in &frames[..9] {
        assert_error(frame, "INVALID_JSON");
    }
    // The close itself is announced by one error frame (protocol.md: every server close but 1000).
    assert_eq!(frames.len(), 10, "{frames:?}");
    assert_eq!(frames[9]["type"], "error", "{frames:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_valid_frame_resets_the_invalid_frame_count() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    for _ in 0..9 {
        client.send_text("{nope").await;
    }
    client.send_json(json!({"type": "ping", "timestamp": "between"})).await;
    for _ in 0..9 {
        client.send_text("{nope").await;
    }
    for _ in 0..9 {
        assert_error(&client.recv_non_ping().await, "INVALID_JSON");
    }
    assert_eq!(client.recv_non_ping().await, json!({"type": "pong", "timestamp": "between"}));
    for _ in 0..9 {
        assert_error(&client.recv_non_ping().await, "INVALID_JSON");
    }
    assert_pong(&mut client, json!("after")).await;
    app.shutdown().await;
}
