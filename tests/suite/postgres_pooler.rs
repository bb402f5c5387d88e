//! The gateway behind a real PgBouncer 1.18 in `pool_mode = transaction` (Supabase's port 6543):
//! with `DATABASE_URL` through it (with and without `?pgbouncer=true`) and `DATABASE_DIRECT_URL`
//! direct, every turn of 30 concurrent chats from 10 users is stored once with nothing left in the
//! outbox, context loads and a context change reaches the next chat, a 2 s timer is claimed and
//! fired, nothing logs a prepared-statement error, and health is healthy. Through it without `DATABASE_DIRECT_URL` the start is refused in one line naming that
//! setting; through a session pooler none is needed.

use std::sync::OnceLock;
use std::time::Duration;

use pam_gateway::{Application, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::db::{private_postgres_url, require_postgres};
use crate::common::logs::{LogBuffer, capturing_subscriber};
use crate::common::pgbouncer::{PgBouncer, PoolMode};
use crate::common::push::{create_timer, next_frame};
use crate::common::v2::connect_welcomed;
use crate::common::*;

const CHATTERS: usize = 10;
const CHATS_EACH: usize = 3;

async fn health(app: &TestApp) -> Value {
    reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap()
}

async fn fuel_answer(client: &mut WsClient) -> String {
    client.send_json(json!({"type":"chat","message":"how much have I spent on fuel this month?"})).await;
    client.recv_non_ping().await["message"].as_str().unwrap().to_string()
}

/// Sends `CHATS_EACH` chats on a socket of its own as `user` in `session`; every answer arrives.
async fn chat(app: &TestApp, user: String, session: String) {
    let mut client = WsClient::connect(&app.ws_url(&user, Some(&token_for(&user)))).await;
    client.recv_json().await;
    for n in 0..CHATS_EACH {
        client.send_json(json!({"type":"chat","message":format!("hello {n}"),"session_id":session})).await;
        let reply = client.recv_non_ping().await;
        assert_eq!((reply["type"].as_str(), reply["error"].as_bool()), (Some("chat_response"), Some(false)), "{reply}");
    }
}

/// Every log line of this test process (warnings and up).
fn captured_logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let (subscriber, buffer) = capturing_subscriber(tracing::Level::WARN);
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in this test process");
        buffer
    })
    .clone()
}

#[tokio::test]
async fn behind_a_transaction_pooler_every_turn_context_change_and_timer_is_stored() {
    every_turn_context_change_and_timer_is_stored("").await;
}

#[tokio::test]
async fn behind_a_transaction_pooler_named_by_pgbouncer_true_every_turn_context_change_and_timer_is_stored() {
    every_turn_context_change_and_timer_is_stored("?pgbouncer=true").await;
}

async fn every_turn_context_change_and_timer_is_stored(query: &str) {
    let logs = captured_logs();
    let (direct, _cleanup) = private_postgres_url().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction).await;
    let pooled = format!("{}{query}", bouncer.url_for(&direct));
    let app = spawn_app_with(
        |s| {
            s.database_url = pooled;
            s.database_direct_url = Some(direct.clone());
            s.admin_token = Some(ADMIN_TOKEN.into());
        },
        Default::default(),
    )
    .await;
    let at_start = health(&app).await;
    assert_eq!((at_start["status"].as_str(), at_start["database"]["status"].as_str()), (Some("healthy"), Some("healthy")), "{at_start}");

    // 30 chats at once from 10 users: every turn stored once, none waiting in the outbox.
    let users: Vec<String> = (0..CHATTERS).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let session = format!("pooled-{}", uuid::Uuid::new_v4().simple());
    futures_util::future::join_all(users.iter().map(|user| chat(&app, user.clone(), session.clone()))).await;
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "pam_turns_pending").unwrap_or(0.0), 0.0, "nothing waits in the outbox");
    assert_eq!(metric(&metrics, "pam_turns_dropped_total").unwrap_or(0.0), 0.0, "no turn is dropped");
    let pool = require_postgres(&direct).await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id WHERE c.session_id = $1",
    )
    .bind(&session)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, (2 * CHATTERS * CHATS_EACH) as i64, "each chat's message and answer are stored once");

    // Context is loaded through the pooler, and a change reaches the next chat by LISTEN on the
    // direct URL (the cache's TTL is 60 s or more).
    let user = uuid::Uuid::new_v4();
    let insert_fuel = |amount: &'static str| {
        sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES ($1, $2::numeric, 'fuel', CURRENT_DATE)")
            .bind(user)
            .bind(amount)
    };
    insert_fuel("40.00").execute(&pool).await.unwrap();
    let mut client = WsClient::connect(&app.ws_url(&user.to_string(), Some(&token_for(&user.to_string())))).await;
    client.recv_json().await;
    let before = fuel_answer(&mut client).await;
    assert!(before.contains("$40.00 on fuel"), "{before}");
    insert_fuel("2.50").execute(&pool).await.unwrap();
    poll_until(Duration::from_secs(5), Duration::from_millis(100), "the new expense reaches the answer", async || {
        let seen = fuel_answer(&mut client).await;
        if seen.contains("$42.50 on fuel") { Ok(()) } else { Err(seen) }
    })
    .await;

    // A due timer is claimed (a transaction held open until its publish) and fired.
    let timer_user = uuid::Uuid::new_v4().to_string();
    let (mut v2, _) = connect_welcomed(&app, &token_for(&timer_user)).await;
    let (status, body) = create_timer(&app, &timer_user, json!({"label": "Tea", "duration_s": 2, "message": "Tea is ready"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let frame = next_frame(&mut v2).await;
    assert_eq!((frame["type"].as_str(), frame["timer_id"].as_str()), (Some("timer_expired"), body["timer_id"].as_str()), "{frame}");
    // The claim commits just after the publish.
    wait_until("the claim is committed", async || {
        sqlx::query_scalar("SELECT fired_at IS NOT NULL FROM pam_notifications WHERE id = $1::uuid")
            .bind(body["timer_id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap()
    })
    .await;

    let at_end = health(&app).await;
    assert_eq!(at_end["status"], "healthy", "{at_end}");
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(!logged.contains("prepared statement"), "no prepared-statement error: {logged}");
    app.shutdown().await;
    pool.close().await;
    drop(bouncer);
}

/// The error `Application::build` stops with, with `database_url` and no direct URL.
async fn refusal(database_url: String) -> String {
    let (mut settings, _db): (Settings, TempFile) = test_settings();
    settings.database_url = database_url;
    settings.database_direct_url = None;
    let build = tokio::time::timeout(Duration::from_secs(30), Application::build(settings)).await.expect("the start ends in time");
    match build {
        Ok(_) => panic!("a transaction pooler without DATABASE_DIRECT_URL must be refused, not started"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_transaction_pooler_without_a_direct_url_is_refused_in_one_line_naming_it() {
    let (direct, _cleanup) = private_postgres_url().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction).await;
    // Found by asking (a port and URL like any direct server's), and by the URL's own marker.
    for url in [bouncer.url_for(&direct), format!("{}?pgbouncer=true", bouncer.url_for(&direct))] {
        let line = refusal(url.clone()).await;
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains("DATABASE_DIRECT_URL") && line.contains("transaction pooler"), "{url}: {line}");
    }
}

#[tokio::test]
async fn a_session_pooler_needs_no_direct_url() {
    let (direct, _cleanup) = private_postgres_url().await;
    let bouncer = PgBouncer::start(PoolMode::Session).await;
    let pooled = bouncer.url_for(&direct);
    let app = spawn_app_with(|s| s.database_url = pooled, Default::default()).await;
    assert_eq!(health(&app).await["status"], "healthy");
    let user = uuid::Uuid::new_v4().to_string();
    chat(&app, user, "session-pooled".into()).await;
    assert_eq!(metric(&app.metrics().await, "pam_turns_pending").unwrap_or(0.0), 0.0, "nothing waits in the outbox");
    app.shutdown().await;
}
