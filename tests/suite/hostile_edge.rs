//! Bounded under hostile input: request heads over `PAM_MAX_HEADER_BYTES` get 431 and are cut
//! off as soon as that much arrived (not at the header deadline); client-chosen close codes
//! never become metric series or monitor keys one for one; the conformance echo exists only
//! when asked for and speaks the production edge.

use futures_util::{SinkExt, StreamExt};
use pam_gateway::Settings;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use crate::common::raw_ws::*;
use crate::common::rest::client;
use crate::common::*;

const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// Writes `bytes` (the server may close before taking them all) and reads until the server ends
/// the connection; panics if it is still open after `WAIT`.
async fn send_and_read_to_the_end(app: &TestApp, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read_all).await.expect("the server ends the connection");
    String::from_utf8_lossy(&received).into_owned()
}

fn head_with_header_of(bytes: usize) -> String {
    format!("GET /health/live HTTP/1.1\r\nHost: pam\r\nConnection: close\r\nX-Padding: {}\r\n\r\n", "a".repeat(bytes))
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_gets_431_and_one_just_under_is_served() {
    let app = spawn_app().await;
    assert_eq!(Settings::defaults().max_header_bytes, 16_384);
    let refused = send_and_read_to_the_end(&app, head_with_header_of(20 * 1024).as_bytes()).await;
    assert!(refused.starts_with("HTTP/1.1 431 "), "{refused}");
    let served = send_and_read_to_the_end(&app, head_with_header_of(15 * 1024).as_bytes()).await;
    assert!(served.starts_with("HTTP/1.1 200 "), "{served}");
}

#[tokio::test]
async fn a_half_sent_oversized_head_is_cut_off_at_once_not_at_the_header_deadline() {
    // A deadline far beyond the test's patience: only the size cap can end this connection.
    let app = spawn_app_with(|s| s.header_read_timeout_ms = 3_600_000, Default::default()).await;
    let half = format!("GET /health/live HTTP/1.1\r\nHost: pam\r\nX-Padding: {}", "a".repeat(390 * 1024));
    let answer = send_and_read_to_the_end(&app, half.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert_eq!(client().get(app.http("/health/live")).send().await.unwrap().status(), 200, "everyone else is still served");
}

#[tokio::test]
async fn two_thousand_distinct_client_close_codes_make_a_bounded_set_of_series_and_monitor_keys() {
    let app = spawn_app_with(|s| s.admin_token = Some(ADMIN_TOKEN.into()), Default::default()).await;
    let url = format!("ws://{}/api/v2/pam/ws", app.addr);
    // Unauthenticated v2 sockets (waiting for their `auth` frame) closed by the client with every
    // code 3000–4999 allows on the wire.
    futures_util::stream::iter(3000u16..=4999)
        .for_each_concurrent(32, |code| {
            let url = url.clone();
            async move {
                let mut client = WsClient::connect(&url).await;
                let close = CloseFrame { code: WsCloseCode::from(code), reason: "bye".into() };
                client.ws.send(Message::Close(Some(close))).await.unwrap();
                while let Some(Ok(_)) = client.ws.next().await {}
            }
        })
        .await;
    let total = |text: &str| -> f64 {
        text.lines().filter(|l| l.starts_with("pam_ws_closed_total{")).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
    };
    wait_until("every close is counted", || async { total(&app.metrics().await) == 2000.0 }).await;
    let metrics = app.metrics().await;
    let series: Vec<&str> = metrics.lines().filter(|l| l.starts_with("pam_ws_closed_total{")).collect();
    // The table's 4xxx codes (4401 … 4508) keep their own label; the other 1993 share `other`.
    let table_codes_in_range = pam_protocol::CloseCode::ALL.iter().filter(|c| (3000..=4999).contains(&c.code())).count();
    assert_eq!(series.len(), table_codes_in_range + 1, "{series:#?}");
    assert_eq!(metric(&metrics, "pam_ws_closed_total{code=\"other\"}"), Some((2000 - table_codes_in_range) as f64));
    let response = client().get(app.http("/api/v1/monitoring/websockets")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let report: Value = response.json().await.unwrap();
    let by_code = report["last_5_minutes"]["closes_by_code"].as_object().unwrap();
    assert_eq!(by_code.len(), table_codes_in_range + 1, "{report}");
    assert_eq!(by_code["other"], (2000 - table_codes_in_range) as u64, "{report}");
}

#[tokio::test]
async fn the_conformance_echo_is_not_mounted_unless_asked_for() {
    let app = spawn_app().await;
    let response = client().get(app.http("/conformance/echo")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_conformance_echo_returns_text_and_binary_and_fails_violations_like_the_chat_sockets() {
    let app = spawn_app_with(|s| s.conformance_echo = true, Default::default()).await;
    let mut ws = RawWs::connect(app.addr, "/conformance/echo").await;
    ws.send(false, TEXT, "héllo ".as_bytes()).await;
    ws.send(true, CONTINUATION, "wörld".as_bytes()).await;
    let echoed = ws.recv().await.unwrap();
    assert_eq!((echoed.opcode, echoed.payload.as_slice()), (TEXT, "héllo wörld".as_bytes()));
    ws.send(true, BINARY, &[0, 159, 146, 150]).await;
    let echoed = ws.recv().await.unwrap();
    assert_eq!((echoed.opcode, echoed.payload.as_slice()), (BINARY, &[0u8, 159, 146, 150][..]));
    ws.send(true, TEXT, &[0xff]).await;
    let closed = ws.recv_close().await;
    assert_eq!((closed.code, closed.texts.len()), (1007, 0), "a raw echo sends no JSON error frame: {closed:?}");
    assert!(ws.ends().await);
}

#[tokio::test]
async fn the_conformance_echo_keeps_the_frame_limit_of_the_chat_sockets() {
    let app = spawn_app_with(
        |s| {
            s.conformance_echo = true;
            s.max_frame_bytes = 4096;
        },
        Default::default(),
    )
    .await;
    let mut ws = RawWs::connect(app.addr, "/conformance/echo").await;
    ws.send(true, BINARY, &[7u8; 4096]).await;
    assert_eq!(ws.recv().await.unwrap().payload.len(), 4096);
    ws.send(true, BINARY, &[7u8; 4097]).await;
    assert_eq!(ws.recv_close().await.code, 1009);
}

#[tokio::test]
async fn the_gateway_refuses_to_start_with_the_conformance_echo_on_a_non_loopback_bind() {
    let (mut settings, _db) = test_settings();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    settings.conformance_echo = true;
    let error = match pam_gateway::Application::build_with(settings, Default::default()).await {
        Ok(_) => panic!("the gateway started with the echo on 0.0.0.0"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("PAM_CONFORMANCE_ECHO") && error.contains("loopback"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}
