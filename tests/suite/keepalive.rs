//! Keepalive seen from the socket: the server's JSON ping plus RFC 6455 Ping, clients that answer
//! staying open, a silent client closed with 1001 after `PAM_PONG_TIMEOUT_MS`, client pings
//! echoed exactly, and the `pam_ws_connections{state="ready"}` gauge following the socket.

use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio_tungstenite::tungstenite::Message;

/// Metrics are process-wide: the test that asserts an exact gauge value takes this for writing,
/// every other test of this binary for reading, so no foreign socket is counted meanwhile.
static METRICS: RwLock<()> = RwLock::const_new(());

const PING_INTERVAL_MS: u64 = 200;
const PONG_TIMEOUT_MS: u64 = 1_000;

async fn spawn_fast_keepalive_app() -> TestApp {
    spawn_app_with(
        |settings| {
            settings.ping_interval_ms = PING_INTERVAL_MS;
            settings.pong_timeout_ms = PONG_TIMEOUT_MS;
        },
        Default::default(),
    )
    .await
}

async fn ready_gauge(app: &TestApp) -> f64 {
    metric(&app.metrics().await, "pam_ws_connections{state=\"ready\"}").unwrap_or(0.0)
}

/// Sends a client ping and expects its pong: proof the socket is still open.
async fn assert_still_open(client: &mut WsClient, timestamp: Value) {
    client.send_json(json!({"type": "ping", "timestamp": timestamp})).await;
    let pong = client.recv_non_ping().await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": timestamp}));
}

#[tokio::test]
async fn the_server_sends_a_json_ping_and_an_rfc6455_ping_every_interval() {
    let _shared = METRICS.read().await;
    let app = spawn_fast_keepalive_app().await;
    let mut client = app.connect_ready().await;
    let (mut json_pings, mut ws_pings) = (Vec::new(), 0);
    while json_pings.len() < 2 || ws_pings < 2 {
        let message = tokio::time::timeout(WAIT, client.ws.next()).await.expect("pings arrive in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["type"], "ping", "only pings are expected on an idle socket: {frame}");
                json_pings.push(frame);
            }
            Some(Ok(Message::Ping(_))) => ws_pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    for ping in &json_pings {
        let object = ping.as_object().unwrap();
        assert_eq!(object.len(), 2, "a ping is exactly {{type, timestamp}}: {ping}");
        let timestamp = ping["timestamp"].as_i64().unwrap_or_else(|| panic!("numeric ms timestamp: {ping}"));
        let now_ms = i64::try_from(unix_now()).unwrap() * 1000;
        assert!((timestamp - now_ms).abs() < 60_000, "timestamp is unix milliseconds: {ping}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_that_answers_server_pings_stays_open_past_three_pong_timeouts() {
    let _shared = METRICS.read().await;
    let app = spawn_fast_keepalive_app().await;
    let mut client = app.connect_ready().await;
    let until = tokio::time::Instant::now() + Duration::from_millis(3 * PONG_TIMEOUT_MS + 500);
    let mut answered = 0;
    loop {
        let Ok(message) = tokio::time::timeout_at(until, client.ws.next()).await else { break };
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["type"], "ping", "unexpected frame: {frame}");
                client.send_json(json!({"type": "pong", "timestamp": frame["timestamp"]})).await;
                answered += 1;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("the socket must stay open while the client answers, got {other:?}"),
        }
    }
    assert!(answered >= 3, "the server kept pinging ({answered} answered)");
    assert_still_open(&mut client, json!(42)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_that_sends_its_own_pings_stays_open_past_three_pong_timeouts() {
    let _shared = METRICS.read().await;
    let app = spawn_fast_keepalive_app().await;
    let mut client = app.connect_ready().await;
    let until = tokio::time::Instant::now() + Duration::from_millis(3 * PONG_TIMEOUT_MS + 500);
    let mut n = 0;
    while tokio::time::Instant::now() < until {
        n += 1;
        // Server pings are read and skipped (never answered with a JSON pong).
        assert_still_open(&mut client, json!(n)).await;
        // Why a fixed pause: the client's own ping interval, well inside the pong timeout.
        tokio::time::sleep(Duration::from_millis(PONG_TIMEOUT_MS / 3)).await;
    }
    assert_still_open(&mut client, json!("last")).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_gets_a_timeout_error_and_close_1001_with_a_reason() {
    let _shared = METRICS.read().await;
    let app = spawn_fast_keepalive_app().await;
    let mut client = app.connect_ready().await;
    // Why a fixed wait: silent past the pong timeout on purpose. Neither read (tungstenite answers
    // RFC 6455 pings only while reading) nor write.
    tokio::time::sleep(Duration::from_millis(PONG_TIMEOUT_MS * 3 / 2)).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1001, "{closed:?}; frames: {frames:?}");
    assert!(!closed.reason.is_empty(), "the close carries a reason");
    let reason = closed.reason.to_lowercase();
    assert!(
        reason.contains("pong")
            || reason.contains("timeout")
            || reason.contains("timed out")
            || reason.contains(&PONG_TIMEOUT_MS.to_string()),
        "the reason mentions the timeout: {closed:?}"
    );
    let error = frames.last().unwrap_or_else(|| panic!("an error frame precedes the close; frames: {frames:?}"));
    assert_eq!(error["type"], "error", "{frames:?}");
    assert_eq!(error["error_code"], "TIMEOUT", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    assert!(frames[..frames.len() - 1].iter().all(|f| f["type"] == "ping"), "only pings before the error: {frames:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_ping_gets_a_pong_echoing_its_numeric_timestamp_exactly() {
    let _shared = METRICS.read().await;
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    for timestamp in [json!(1_700_000_000_123_u64), json!(0), json!(-5), json!(1.5), json!(u64::MAX)] {
        client.send_json(json!({"type": "ping", "timestamp": timestamp})).await;
        let pong = client.recv_non_ping().await;
        assert_eq!(pong["type"], "pong", "{pong}");
        assert_eq!(pong["timestamp"], timestamp, "{pong}");
    }
    // The raw text keeps the exact number (no float rounding of a 13-digit ms timestamp).
    client.send_text(r#"{"type":"ping","timestamp":1712345678901}"#).await;
    let pong = client.recv_non_ping().await;
    assert_eq!(pong["timestamp"].as_u64(), Some(1_712_345_678_901), "{pong}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_ping_gets_a_pong_echoing_its_string_timestamp() {
    let _shared = METRICS.read().await;
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    for timestamp in ["2024-04-05T10:11:12.345Z", "1712345678901", ""] {
        client.send_json(json!({"type": "ping", "timestamp": timestamp})).await;
        let pong = client.recv_non_ping().await;
        assert_eq!(pong, json!({"type": "pong", "timestamp": timestamp}));
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_ready_gauge_counts_the_socket_while_open_and_drops_after_the_close() {
    let _exclusive = METRICS.write().await;
    let app = spawn_app().await;
    // Sockets of tests that just finished may still be closing.
    wait_until("no ready socket is counted", || async { ready_gauge(&app).await == 0.0 }).await;
    let mut client = app.connect_ready().await;
    wait_until("the ready gauge is 1", || async { ready_gauge(&app).await == 1.0 }).await;
    assert_still_open(&mut client, json!(1)).await;
    assert_eq!(ready_gauge(&app).await, 1.0);
    client.ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, client.ws.next()).await {}
    wait_until("the ready gauge is back to 0", || async { ready_gauge(&app).await == 0.0 }).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_ready_gauge_drops_after_a_server_side_timeout_close() {
    let _exclusive = METRICS.write().await;
    let app = spawn_fast_keepalive_app().await;
    wait_until("no ready socket is counted", || async { ready_gauge(&app).await == 0.0 }).await;
    let mut client = app.connect_ready().await;
    wait_until("the ready gauge is 1", || async { ready_gauge(&app).await == 1.0 }).await;
    // Why a fixed wait: silent past the pong timeout on purpose, so the server closes the socket.
    tokio::time::sleep(Duration::from_millis(PONG_TIMEOUT_MS * 3 / 2)).await;
    let (closed, _) = client.recv_close().await;
    assert_eq!(closed.code, 1001);
    wait_until("the ready gauge is back to 0", || async { ready_gauge(&app).await == 0.0 }).await;
    app.shutdown().await;
}
