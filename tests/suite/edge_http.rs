//! The HTTP edge over real sockets: the header-read deadline closes silent and half-sent
//! connections, every response carries the security headers (HSTS only with TLS, tls.rs),
//! and request ids are accepted or generated, echoed and put in JSON error bodies.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http::HeaderValue};

/// Short enough to observe, far below the 10 s default a broken wiring would fall back to.
const HEADER_TIMEOUT_MS: u64 = 200;

async fn app_with_short_header_timeout() -> TestApp {
    spawn_app_with(|s| s.header_read_timeout_ms = HEADER_TIMEOUT_MS, Default::default()).await
}

/// Reads until the server closes the connection; panics if it is still open after half of `WAIT`
/// (the configured deadline is a small fraction of that, the default deadline is not).
async fn server_closes(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT / 2, read_all).await.expect("the server closes the idle connection");
    received
}

fn client() -> reqwest::Client {
    rustls::crypto::ring::default_provider().install_default().ok();
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    let app = app_with_short_header_timeout().await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    server_closes(&mut silent).await;
    // The server still serves everyone else.
    assert_eq!(client().get(app.http("/health/live")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn half_a_request_line_is_closed_after_the_header_read_timeout() {
    let app = app_with_short_header_timeout().await;
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /health HT").await.unwrap();
    let answer = server_closes(&mut half).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "a half request is never answered");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout_too() {
    let app = app_with_short_header_timeout().await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(format!("GET /health/live HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes()).await.unwrap();
    let answer = server_closes(&mut stream).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"), "the complete request was answered first");
}

#[tokio::test]
async fn a_websocket_outlives_the_header_read_timeout() {
    let app = app_with_short_header_timeout().await;
    let mut client = app.connect_ready().await;
    // Why a fixed wait: several header deadlines pass on purpose while the socket is quiet; it
    // still answers.
    tokio::time::sleep(Duration::from_millis(HEADER_TIMEOUT_MS * 4)).await;
    client.send_json(serde_json::json!({"type": "ping"})).await;
    assert_eq!(client.recv_non_ping().await["type"], "pong");
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_no_hsts_without_tls() {
    let app = spawn_app().await;
    for path in ["/health", "/health/live", "/metrics", "/no-such-endpoint"] {
        let response = client().get(app.http(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"), "{path}");
        assert!(headers.get("strict-transport-security").is_none(), "{path}: HSTS is only sent over TLS");
    }
}

#[tokio::test]
async fn the_demo_page_keeps_its_own_csp_that_allows_same_origin_files_and_sockets_but_nothing_inline() {
    let app = spawn_app_with(|s| s.dev_auth = Some(true), Default::default()).await;
    let response = client().get(app.http("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_lands_in_the_json_error_body() {
    let app = spawn_app().await;
    let response = client().get(app.http("/no-such-endpoint")).header("x-request-id", "trace-42_a.b:c").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "trace-42_a.b:c");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "NOT_FOUND");
    assert_eq!(body["request_id"], "trace-42_a.b:c", "{body}");
}

#[tokio::test]
async fn a_wrong_method_on_any_route_gets_405_with_allow_and_a_json_body() {
    let app = spawn_app().await;
    for (method, path) in [("PUT", "/health"), ("POST", "/metrics"), ("DELETE", "/api/v1/monitoring/errors"), ("POST", "/health/ready")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client().request(method.clone(), app.http(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert!(response.headers()["allow"].to_str().unwrap().contains("GET"), "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "METHOD_NOT_ALLOWED", "{method} {path}: {body}");
        assert!(body["request_id"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_plain_http_get_on_a_socket_route_gets_a_json_error_body() {
    let app = spawn_app().await;
    for path in [format!("/api/v1/pam/ws/{USER}?token=x"), "/api/v2/pam/ws".to_string()] {
        let response = client().get(app.http(&path)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "BAD_REQUEST", "{path}: {body}");
        assert!(body["message"].as_str().unwrap().to_lowercase().contains("upgrade"), "{body}");
        assert!(body["request_id"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one() {
    let app = spawn_app().await;
    let mut seen = Vec::new();
    for incoming in [None, Some("has spaces and <html>"), Some(&*"x".repeat(129))] {
        let mut request = client().get(app.http("/no-such-endpoint"));
        if let Some(incoming) = incoming {
            request = request.header("x-request-id", incoming);
        }
        let response = request.send().await.unwrap();
        let echoed = response.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(echoed.len() == 32 && echoed.bytes().all(|b| b.is_ascii_hexdigit()), "{echoed}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["request_id"], echoed.as_str());
        seen.push(echoed);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "each request gets its own id");
}

#[tokio::test]
async fn a_refused_websocket_upgrade_carries_the_request_id_in_header_and_body() {
    let app = spawn_app_with(|s| s.allowed_origins = Some("https://wheelsandwins.com".into()), Default::default()).await;
    let mut request = app.ws_url(USER, Some(&token_for(USER))).into_client_request().unwrap();
    request.headers_mut().insert("origin", HeaderValue::from_static("https://evil.example"));
    request.headers_mut().insert("x-request-id", HeaderValue::from_static("upgrade-7"));
    let Err(WsError::Http(response)) = tokio_tungstenite::connect_async(request).await else { panic!("the upgrade is refused") };
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-request-id"], "upgrade-7");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"], "ORIGIN_NOT_ALLOWED");
    assert_eq!(body["request_id"], "upgrade-7");
}
