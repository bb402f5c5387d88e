//! Helpers for the push and timer tests: a gateway on a test database, the push and timer REST
//! calls, what a socket received before a ping's pong, and what the store recorded as delivered.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::db::TestDb;
use super::{ADMIN_TOKEN, TestApp, WsClient, rest, spawn_app_with, token_for, wait_until};

/// Starts a gateway on `db`, with the admin token set.
pub async fn start(db: &TestDb) -> TestApp {
    let url = db.url.clone();
    spawn_app_with(
        |s| {
            s.database_url = url;
            s.admin_token = Some(ADMIN_TOKEN.into());
        },
        Default::default(),
    )
    .await
}

/// A user id no other test uses.
pub fn fresh_user() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Sends `request`; its status and JSON body (`Null` when empty).
pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON, got {status}: {text}")) },
    )
}

/// `POST /api/v1/pam/timers` as `user`.
pub async fn create_timer(app: &TestApp, user: &str, body: Value) -> (StatusCode, Value) {
    send(rest::client().post(app.http("/api/v1/pam/timers")).bearer_auth(token_for(user)).json(&body)).await
}

/// `GET /api/v1/pam/timers` as `user`: the pending timers.
pub async fn list_timers(app: &TestApp, user: &str) -> Vec<Value> {
    let (status, body) = send(rest::client().get(app.http("/api/v1/pam/timers")).bearer_auth(token_for(user))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["timers"].as_array().unwrap().clone()
}

/// The next frame that is neither a keepalive ping nor a pong.
pub async fn next_frame(client: &mut WsClient) -> Value {
    loop {
        let frame = client.recv_json().await;
        if frame["type"] != "ping" && frame["type"] != "pong" {
            return frame;
        }
    }
}

/// Sends a ping and reads up to its pong: every frame in between (what was queued before it).
pub async fn frames_before_pong(client: &mut WsClient) -> Vec<Value> {
    // Why a fixed pause: callers assert what did NOT come (a second firing, a push held behind a
    // chat, a stored push read again on connect), and absence has no event to wait for. This is
    // the window anything wrongly queued gets to arrive before the pong closes the read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.send_json(json!({"type": "ping", "timestamp": 4242})).await;
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_json().await;
        if frame["type"] == "pong" && frame["timestamp"] == 4242 {
            return frames;
        }
        if frame["type"] != "ping" {
            frames.push(frame);
        }
    }
}

/// Waits until the store of `db_url` (SQLite or Postgres) records the push `id` as delivered.
pub async fn wait_delivered(db_url: &str, id: &str) {
    wait_until(&format!("push {id} is marked delivered"), async || {
        let delivered: i64 = if db_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
            let sql = "SELECT count(*) FROM pam_notifications WHERE id = ?1 AND delivered_at IS NOT NULL";
            let count = sqlx::query_scalar(sql).bind(id).fetch_one(&pool).await.unwrap();
            pool.close().await;
            count
        } else {
            let pool = sqlx::PgPool::connect(db_url).await.unwrap();
            let sql = "SELECT count(*) FROM pam_notifications WHERE id = $1::uuid AND delivered_at IS NOT NULL";
            let count = sqlx::query_scalar(sql).bind(id).fetch_one(&pool).await.unwrap();
            pool.close().await;
            count
        };
        delivered == 1
    })
    .await;
}

/// Every `pam_push_total` sample of `kind`, summed (both nodes of a test share one recorder).
pub fn pushes_of(metrics: &str, kind: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("pam_push_total{") && line.contains(&format!("kind=\"{kind}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
