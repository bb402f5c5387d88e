//! Helpers for the push and timer tests: a gateway on a test database, the push and timer REST
//! calls, what a socket received before a ping's pong, what the store recorded as delivered, and
//! rows written straight into `pam_notifications` (hundreds at once, with chosen times).

use std::time::Duration;

use chrono::{DateTime, Utc};
use pam_gateway::storage::database::Database;
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

/// On a fresh v2 socket: the frames up to a ping's pong sent once its stored pushes are due (they
/// wait up to 1 s after the welcome for a `resume`; a ping does not end that wait).
pub async fn frames_after_the_stored_hold(client: &mut WsClient) -> Vec<Value> {
    // Why a fixed pause: the stored pushes of a socket that never resumes are due 1 s after its
    // welcome; what must not come has no event to wait for past that.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    frames_before_pong(client).await
}

/// Whether the store of `db_url` (SQLite or Postgres) records the push `id` as delivered.
pub async fn is_delivered(db_url: &str, id: &str) -> bool {
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
}

/// Waits until the store of `db_url` (SQLite or Postgres) records the push `id` as delivered.
pub async fn wait_delivered(db_url: &str, id: &str) {
    wait_until(&format!("push {id} is marked delivered"), async || is_delivered(db_url, id).await).await;
}

/// Every `pam_push_total` sample of `kind`, summed (both nodes of a test share one recorder).
pub fn pushes_of(metrics: &str, kind: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("pam_push_total{") && line.contains(&format!("kind=\"{kind}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A row that waits for a user's next connect, written straight into the database: a fired,
/// undismissed `timer_expired` or an undelivered `proactive_alert`.
pub struct Waiting {
    /// `timer_expired` | `proactive_alert`.
    pub kind: &'static str,
    /// The frame's own fields, as the gateway stores them.
    pub payload: Value,
    /// When it fired (also its `fire_at` and `created_at`).
    pub fired_at: DateTime<Utc>,
    /// After this it is never delivered.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Waiting {
    /// A timer labelled `label` with `message`, fired at `fired_at`.
    pub fn timer(label: &str, message: &str, fired_at: DateTime<Utc>) -> Self {
        Waiting {
            kind: "timer_expired",
            payload: json!({"label": label, "timer_type": "timer", "message": message}),
            fired_at,
            expires_at: None,
        }
    }

    /// An alert saying `message`, raised at `fired_at`, expiring an hour from now.
    pub fn alert(message: &str, fired_at: DateTime<Utc>) -> Self {
        let content = json!({"type": "proactive_alert", "category": "financial_guidance", "alert_type": "budget_alert",
                             "message": message, "priority": "high", "actions": []});
        Waiting {
            kind: "proactive_alert",
            payload: json!({"content": content}),
            fired_at,
            expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
        }
    }
}

/// Writes `rows` for `user` into the (migrated) database at `db_url` in one transaction, as the
/// gateway would have stored them; their ids, in the same order.
pub async fn store_waiting(db_url: &str, user: &str, rows: &[Waiting]) -> Vec<String> {
    let ids: Vec<String> = rows.iter().map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let db = Database::connect(db_url, false).await.expect("the test opens the database");
    match &db {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for (id, row) in ids.iter().zip(rows) {
                sqlx::query(
                    "INSERT INTO pam_notifications (id, user_id, kind, payload, fire_at, fired_at, expires_at, created_at)
                     VALUES ($1::uuid, $2::uuid, $3, $4, $5, $5, $6, $5)",
                )
                .bind(id)
                .bind(user)
                .bind(row.kind)
                .bind(&row.payload)
                .bind(row.fired_at)
                .bind(row.expires_at)
                .execute(&mut *tx)
                .await
                .expect("a waiting row is stored");
            }
            tx.commit().await.unwrap();
        }
        Database::Sqlite(pool) => {
            let time = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            let mut tx = pool.begin().await.unwrap();
            for (id, row) in ids.iter().zip(rows) {
                sqlx::query(
                    "INSERT INTO pam_notifications (id, user_id, kind, payload, fire_at, fired_at, expires_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?5)",
                )
                .bind(id)
                .bind(user)
                .bind(row.kind)
                .bind(row.payload.to_string())
                .bind(time(row.fired_at))
                .bind(row.expires_at.map(time))
                .execute(&mut *tx)
                .await
                .expect("a waiting row is stored");
            }
            tx.commit().await.unwrap();
        }
    }
    db.close().await;
    ids
}

/// Marks these rows delivered in the database at `db_url` directly (as a socket's proof of
/// receipt would).
pub async fn mark_delivered_in_db(db_url: &str, ids: &[String]) {
    let db = Database::connect(db_url, false).await.expect("the test opens the database");
    let ids = Value::from(ids.to_vec()).to_string();
    match &db {
        Database::Postgres(pool) => sqlx::query(
            "UPDATE pam_notifications SET delivered_at = now()
             WHERE delivered_at IS NULL AND id::text IN (SELECT jsonb_array_elements_text($1::jsonb))",
        )
        .bind(ids)
        .execute(pool)
        .await
        .map(drop),
        Database::Sqlite(pool) => sqlx::query(
            "UPDATE pam_notifications SET delivered_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE delivered_at IS NULL AND id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .execute(pool)
        .await
        .map(drop),
    }
    .expect("the rows are marked delivered");
    db.close().await;
}

/// The next `count` frames that are neither pings nor pongs.
pub async fn next_frames(client: &mut WsClient, count: usize) -> Vec<Value> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        frames.push(next_frame(client).await);
    }
    frames
}
