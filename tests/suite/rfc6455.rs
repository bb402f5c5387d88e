//! RFC 6455 exactness over raw TCP against the real server: every client protocol violation
//! closes with 1002 (1007 for invalid UTF-8) right after an `error` frame with `PROTOCOL_ERROR`,
//! and the close is counted in `pam_ws_closed_total` and the monitor under the code sent.
//! Another `Sec-WebSocket-Version` gets 426 (§4.4).

use crate::common::raw_ws::*;
use crate::common::rest::client;
use crate::common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_TOKEN: &str = "admin-token-for-tests";

async fn admin_app() -> TestApp {
    spawn_app_with(|s| s.admin_token = Some(ADMIN_TOKEN.into()), Default::default()).await
}

/// A legacy socket past its `connection` frame.
async fn ready(app: &TestApp) -> RawWs {
    let mut ws = RawWs::connect(app.addr, &format!("/api/v1/pam/ws/{USER}?token={}", token_for(USER))).await;
    assert_eq!(ws.recv_json().await["type"], "connection");
    ws
}

async fn websocket_report(app: &TestApp) -> Value {
    let response = client().get(app.http("/api/v1/monitoring/websockets")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The server sent `PROTOCOL_ERROR` then close `code` with a short reason, dropped the
/// connection, and counted exactly that code in the metrics and the monitor.
async fn assert_failed_with(app: &TestApp, ws: &mut RawWs, code: u16) {
    let closed = ws.recv_close().await;
    assert_eq!(closed.code, code, "{closed:?}");
    assert!(!closed.reason.is_empty() && closed.reason.len() <= 123, "{closed:?}");
    let error = closed.texts.last().unwrap_or_else(|| panic!("an error frame precedes the close: {closed:?}"));
    assert_eq!((&error["type"], &error["error_code"]), (&json!("error"), &json!("PROTOCOL_ERROR")), "{closed:?}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    assert!(ws.ends().await, "the server drops the connection after its close frame");
    let series = format!("pam_ws_closed_total{{code=\"{code}\"}}");
    wait_until("the close is counted", || async { metric(&app.metrics().await, &series) == Some(1.0) }).await;
    let metrics = app.metrics().await;
    let closes: Vec<&str> = metrics.lines().filter(|l| l.starts_with("pam_ws_closed_total{")).collect();
    assert_eq!(closes, [format!("{series} 1")], "only the code actually sent is counted");
    let report = websocket_report(app).await;
    assert_eq!(report["last_5_minutes"]["closes_by_code"], json!({ code.to_string(): 1 }), "{report}");
}

#[tokio::test]
async fn a_continuation_frame_with_no_message_to_continue_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(true, CONTINUATION, b"{}").await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn a_text_frame_inside_an_open_fragmented_message_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(false, TEXT, br#"{"type":"#).await;
    ws.send(true, TEXT, br#"{"type":"ping"}"#).await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn a_ping_with_a_126_byte_payload_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(true, PING, &[b'p'; 126]).await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn a_fragmented_ping_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(false, PING, b"half").await;
    ws.send(true, CONTINUATION, b"half").await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn a_frame_with_the_reserved_opcode_3_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(true, 0x3, b"{}").await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn rsv1_without_a_negotiated_extension_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send_raw(0x80 | 0x40 | TEXT, br#"{"type":"ping"}"#).await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send_unmasked(true, TEXT, br#"{"type":"ping"}"#).await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn a_close_frame_with_a_one_byte_payload_closes_with_1002() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(true, CLOSE, &[0x03]).await;
    assert_failed_with(&app, &mut ws, 1002).await;
}

#[tokio::test]
async fn a_close_reason_that_is_not_utf8_closes_with_1007() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0xce, 0xba, 0xff, 0xfe]);
    ws.send(true, CLOSE, &payload).await;
    assert_failed_with(&app, &mut ws, 1007).await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(true, TEXT, &[b'"', 0xc3, 0x28, b'"']).await;
    assert_failed_with(&app, &mut ws, 1007).await;
}

#[tokio::test]
async fn a_text_message_in_fragments_with_a_ping_between_them_is_still_answered() {
    let app = admin_app().await;
    let mut ws = ready(&app).await;
    ws.send(false, TEXT, br#"{"type":"ping","#).await;
    ws.send(true, PING, b"between").await;
    ws.send(true, CONTINUATION, br#""timestamp":7}"#).await;
    let pong = loop {
        let frame = ws.recv().await.expect("frames keep coming");
        if frame.opcode == TEXT {
            break serde_json::from_slice::<Value>(&frame.payload).unwrap();
        }
        assert_eq!((frame.opcode, frame.payload.as_slice()), (0xA, &b"between"[..]), "the ping is answered with its payload");
    };
    assert_eq!(pong, json!({"type": "pong", "timestamp": 7}));
    ws.send(true, CLOSE, &1000u16.to_be_bytes()).await;
    let closed = ws.recv_close().await;
    assert_eq!((closed.code, closed.texts.len()), (1000, 0), "{closed:?}");
}

/// The raw response (head and body) to a hand-written upgrade request with `version`.
async fn upgrade_with_version(app: &TestApp, path: &str, version: &str) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("an answer in time").unwrap_or(0);
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            let length =
                head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>()));
            n == 0 || length.is_some_and(|l| l.is_ok_and(|l| body.len() >= l))
        });
        if complete || text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n") {
            return text;
        }
    }
}

#[tokio::test]
async fn an_upgrade_asking_for_websocket_version_8_gets_426_naming_version_13() {
    let app = spawn_app().await;
    for path in [format!("/api/v1/pam/ws/{USER}?token={}", token_for(USER)), "/api/v2/pam/ws".into()] {
        let response = upgrade_with_version(&app, &path, "8").await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 426"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("\r\nsec-websocket-version: 13\r\n") || lower.ends_with("\r\nsec-websocket-version: 13"), "{head}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "UNSUPPORTED_WEBSOCKET_VERSION", "{body}");
        assert!(body["message"].as_str().unwrap().contains("13"), "{body}");
    }
    let accepted = upgrade_with_version(&app, &format!("/api/v1/pam/ws/{USER}?token={}", token_for(USER)), "13").await;
    assert!(accepted.starts_with("HTTP/1.1 101"), "version 13 still upgrades: {accepted}");
    assert_eq!(metric(&app.metrics().await, "pam_ws_rejected_total{reason=\"version\"}"), Some(2.0));
}
