//! Helpers for the REST tests: a reqwest client (with the rustls provider installed before any
//! app exists), chat posts (and one whose client hangs up), and direct access to the test app's
//! SQLite file.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::TestApp;

/// A plain HTTP client.
pub fn client() -> reqwest::Client {
    rustls::crypto::ring::default_provider().install_default().ok();
    reqwest::Client::new()
}

/// `POST /api/v1/pam/chat` with a bearer token, JSON body and optional `Idempotency-Key`.
pub async fn post_chat(app: &TestApp, token: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = client()
        .post(app.http("/api/v1/pam/chat"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got {status}: {text:?}")))
}

/// `POST /api/v1/pam/chat` over a plain TCP socket that is closed `after` the whole request was
/// written, without reading anything: a client that goes away mid-request.
pub async fn post_chat_and_hang_up(app: &TestApp, token: &str, body: &Value, key: Option<&str>, after: Duration) {
    let body = body.to_string();
    let key = key.map(|key| format!("Idempotency-Key: {key}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /api/v1/pam/chat HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n{key}Content-Length: {}\r\n\r\n{body}",
        app.addr,
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.expect("the gateway accepts");
    socket.write_all(request.as_bytes()).await.expect("the request is sent");
    tokio::time::sleep(after).await;
    drop(socket);
}

/// A pool on the app's SQLite file (to seed data or count stored rows).
pub async fn sqlite(app: &TestApp) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db.0.display())).await.expect("the app's SQLite file opens")
}

/// Stored messages of `user` (both roles).
pub async fn stored_messages(app: &TestApp, user: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id WHERE c.user_id = ?1")
        .bind(user)
        .fetch_one(&sqlite(app).await)
        .await
        .unwrap()
}

/// Asserts the protocol's error shape: `{"error": CODE, "message": text}`.
pub fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}
