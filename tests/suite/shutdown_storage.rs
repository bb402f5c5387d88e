//! "Nothing lost" across shutdowns and outages: writes waiting at shutdown are journaled and
//! stored at the next start (SQLite and Postgres), a drain past its grace answers or records every
//! chat it read, and during a write outage v2 chats are acked, answered and stored later.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::turns::*;
use crate::common::v2::*;
use crate::common::*;
use serde_json::{Value, json};

/// Holds SQLite's write lock from outside the gateway, like another process would.
async fn lock_sqlite(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn writes_waiting_at_shutdown_are_journaled_and_stored_at_the_next_start() {
    let mut app = spawn_app().await;
    let path = app.db.0.clone();
    let journal = format!("{}{OUTBOX_JOURNAL_SUFFIX}", path.display());
    let mut lock = lock_sqlite(&path).await;
    let mut client = app.connect_ready().await;
    for n in 0..3 {
        client.send_json(json!({"type":"chat","message":format!("quick question {n}")})).await;
        assert_eq!(client.recv_non_ping().await["type"], "chat_response", "answered while writes fail");
    }
    assert!(metric_value(&app, "pam_outbox_journaled_total").await >= 6.0, "3 user messages and 3 answers journaled");
    // Keep the files: the next start uses them.
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    app.shutdown().await;
    assert!(std::path::Path::new(&journal).exists(), "the journal outlives the process");
    use sqlx::Connection;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    let (db_url, journal_path) = (format!("sqlite://{}", path.display()), journal.clone());
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal_path;
        },
        Default::default(),
    )
    .await;
    let db = format!("sqlite://{}", path.display());
    wait_until("the journal is replayed", || async { rows(&db, USER).await.len() == 6 }).await;
    assert_eq!(assert_each_turn_stored_once(&rows(&db, USER).await, "sqlite"), 3);
    wait_until("the journal is removed once stored", || async { !std::path::Path::new(&journal).exists() }).await;
    assert_eq!(metric_value(&app, "pam_outbox_replayed_total").await, 6.0);
    app.shutdown().await;
    drop(db_file);
}

#[tokio::test]
async fn a_drain_past_its_grace_answers_or_records_every_chat_it_read() {
    let model = SlowModel::new(Duration::from_secs(3));
    let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
    let mut app = spawn_app_with(|s| s.shutdown_grace_ms = 1_000, overrides).await;
    let path = app.db.0.clone();
    let db = format!("sqlite://{}", path.display());
    let mut legacy = Vec::new();
    for n in 0..4 {
        let mut client = app.connect_ready().await;
        client.send_json(json!({"type":"chat","message":format!("slow legacy {n}")})).await;
        legacy.push(client);
    }
    let mut quick = app.connect_ready().await;
    quick.send_json(json!({"type":"chat","message":"quick legacy"})).await;
    assert_eq!(quick.recv_non_ping().await["type"], "chat_response");
    let (mut v2, _) = connect_welcomed(&app, &token_for(USER)).await;
    for n in 0..2 {
        v2.send_json(json!({"type":"chat","id":format!("v2-{n}"),"message":format!("slow v2 {n}")})).await;
    }
    frames_until(&mut v2, "ack").await;
    wait_until("every chat was read", || async { metric_value(&app, "pam_turns_accepted_total").await == 7.0 }).await;
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    app.shutdown().await;

    let metrics = pam_gateway::observability::telemetry::metrics_handle().render();
    let abandoned = metric(&metrics, "pam_turns_abandoned_total").unwrap_or(0.0);
    let stored = rows(&db, USER).await;
    let users: Vec<&Row> = stored.iter().filter(|r| r.role == "user").collect();
    assert_eq!(users.len(), 7, "every chat the server read has its user row: {stored:?}");
    let mut unanswered = 0;
    for user_row in &users {
        let id = user_row.client_msg_id.clone().unwrap();
        let answered = stored.iter().any(|r| r.role == "assistant" && r.metadata["client_msg_id"] == id.as_str());
        if !answered {
            unanswered += 1;
            assert_eq!(user_row.metadata["unanswered"], "shutdown", "{id} is neither answered nor recorded: {stored:?}");
        }
    }
    assert!(unanswered >= 5, "the slow turns outlived the grace ({unanswered})");
    assert_eq!(abandoned, f64::from(unanswered), "each is counted");

    // A client repeating an abandoned v2 id gets a real answer at the next start.
    let (db_url, journal) = (db.clone(), format!("{}{OUTBOX_JOURNAL_SUFFIX}", path.display()));
    let model = SlowModel::new(Duration::from_millis(10));
    let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal;
        },
        overrides,
    )
    .await;
    // The embedded default: the next process on the same database exports what its predecessor
    // abandoned (the process counter above left with it).
    let recent = metric_value(&app, "pam_turns_abandoned_recent{cause=\"shutdown\"}").await;
    assert_eq!(recent, f64::from(unanswered), "the stored count outlives the process");
    let (mut v2, _) = connect_welcomed(&app, &token_for(USER)).await;
    v2.send_json(json!({"type":"chat","id":"v2-0","message":"slow v2 0"})).await;
    let end = frames_until(&mut v2, "chat_end").await.pop().unwrap();
    assert_eq!(end["message"], "answer to slow v2 0", "{end}");
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    settled(&app).await;
    app.shutdown().await;
    drop(db_file);
}

#[tokio::test]
async fn during_a_write_outage_v2_chats_are_acked_answered_and_stored_later() {
    let mut app = spawn_app().await;
    let path = app.db.0.clone();
    let db = format!("sqlite://{}", path.display());
    let mut lock = lock_sqlite(&path).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    for n in 0..3 {
        client.send_json(json!({"type":"chat","id":format!("down-{n}"),"message":format!("hello {n}")})).await;
        let frames = frames_until(&mut client, "chat_end").await;
        assert!(frames.iter().any(|f| f["type"] == "ack"), "durably accepted through the journal: {frames:?}");
    }
    wait_until("health reports the write outage", || async {
        let health: Value = reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap();
        health["status"] == "degraded" && health["storage"]["status"] == "degraded"
    })
    .await;
    assert_eq!(reqwest::get(app.http("/health/ready")).await.unwrap().status(), 200, "readiness is about this node");
    use sqlx::Connection;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    wait_until("the waiting writes are stored", || async { rows(&db, USER).await.len() == 6 }).await;
    assert_eq!(assert_each_turn_stored_once(&rows(&db, USER).await, "sqlite"), 3);
    // A repeat of an id answered during the outage replays it.
    client.send_json(json!({"type":"chat","id":"down-1","message":"hello 1"})).await;
    let replay = frames_until(&mut client, "chat_end").await.pop().unwrap();
    assert_eq!(replay["cached"], true, "{replay}");
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    app.shutdown().await;
    drop(db_file);
}

#[tokio::test]
async fn on_postgres_writes_waiting_at_shutdown_are_journaled_and_stored_at_the_next_start() {
    let cluster = crate::common::cluster::Cluster::create();
    let url = cluster.url();
    let journal = std::env::temp_dir().join(format!("pam-journal-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let journal = journal.display().to_string();
    let (db_url, journal_path) = (url.clone(), journal.clone());
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal_path;
        },
        Default::default(),
    )
    .await;
    let user = uuid::Uuid::new_v4().to_string();
    let mut client = WsClient::connect(&app.ws_url(&user, Some(&token_for(&user)))).await;
    client.recv_json().await;
    cluster.stop();
    for n in 0..3 {
        client.send_json(json!({"type":"chat","message":format!("quick question {n}")})).await;
        assert_eq!(client.recv_non_ping().await["type"], "chat_response", "answered while Postgres is down");
    }
    app.shutdown().await;
    assert!(std::path::Path::new(&journal).exists(), "the journal outlives the process");
    cluster.start();
    let (db_url, journal_path) = (url.clone(), journal.clone());
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal_path;
        },
        Default::default(),
    )
    .await;
    wait_until("the journal is replayed into Postgres", || async { rows(&url, &user).await.len() == 6 }).await;
    assert_eq!(assert_each_turn_stored_once(&rows(&url, &user).await, "postgres"), 3);
    wait_until("the journal is removed once stored", || async { !std::path::Path::new(&journal).exists() }).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_draining_v2_socket_gets_1012_at_once_and_its_running_turn_still_finishes_into_the_stream() {
    let model = SlowModel::new(Duration::from_millis(1_500));
    let overrides = pam_gateway::Overrides { llm: Some(model), ..Default::default() };
    let mut app = spawn_app_with(|s| s.shutdown_grace_ms = 5_000, overrides).await;
    let path = app.db.0.clone();
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"mid","message":"a slow answer"})).await;
    frames_until(&mut client, "ack").await;
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    let _ = app.stop.take().unwrap().send(());
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1012, "{closed:?}");
    assert!(!frames.iter().any(|f| f["type"] == "chat_end"), "at once, before the answer: {frames:?}");
    tokio::time::timeout(Duration::from_secs(15), &mut app.server).await.expect("stops in time").unwrap().unwrap();
    let stored = rows(&format!("sqlite://{}", path.display()), USER).await;
    assert_eq!(assert_each_turn_stored_once(&stored, "sqlite"), 1, "the turn finished and was stored within the grace");
    drop(db_file);
}
