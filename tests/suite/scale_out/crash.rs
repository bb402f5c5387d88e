//! A node killed for real (SIGKILL of the gateway binary) with 30 v2 chats acknowledged and
//! mid-answer: every client comes back on the other node, and each chat is answered or ends with a
//! retryable error within 30 s of the client's return, then is answered exactly once when the client
//! re-sends its id (what the SDK does) — none silent, none answered twice, none stored twice.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::db::{Backend, test_db};
use crate::common::fake_llm::{FakeLlm, Script};
use crate::common::node_process::NodeProcess;
use crate::common::nodes::{listed_nodes, short_ttl, spawn_node};
use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::v2::*;
use crate::common::*;
use pam_gateway::{Overrides, Settings};

const CHATS: usize = 30;

/// One client's chat, followed like the SDK: resume, re-send its id after a retryable error or a
/// failed resume, until its one `chat_end`.
struct Chat {
    id: String,
    token: String,
    welcome: Value,
    last_seq: u64,
}

#[tokio::test]
async fn thirty_chats_on_a_node_killed_mid_answer_are_each_answered_once_on_the_other() {
    let _redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    // A's model answers slowly: every chat is acknowledged and mid-answer when A dies.
    let mut slow = Script::answer("one two three four five six seven eight nine ten eleven twelve");
    slow.tokens_per_second = Some(2.0);
    let model = FakeLlm::start(slow).await;
    let model_url = model.url();
    let model_env = [("ANTHROPIC_API_KEY", "test-key"), ("ANTHROPIC_BASE_URL", model_url.as_str())];
    let mut a = NodeProcess::start_with("node-a", &db.url, &redis_url(), &prefix, &model_env).await;
    let database = db.url.clone();
    let on_db = move |s: &mut Settings| {
        short_ttl(s);
        s.max_connections_per_user = 4;
        s.database_url = database.clone();
    };
    let whole = StreamingModel::new(vec!["Answered ", "on B"], "Answered on B");
    let b = spawn_node("node-b", &redis_url(), &prefix, on_db, Overrides { llm: Some(whole), ..Default::default() }).await;
    wait_until_within(Duration::from_secs(30), "both nodes are listed", || async { listed_nodes(&b.app).await == ["node-a", "node-b"] })
        .await;

    let a_url = format!("ws://127.0.0.1:{}/api/v2/pam/ws", a.port);
    let mut chats = Vec::new();
    let mut sockets = Vec::new();
    for n in 0..CHATS {
        let user = uuid::Uuid::new_v4().to_string();
        let token = token_for(&user);
        let (mut socket, _) = connect_v2(&format!("{a_url}?token={token}")).await;
        let welcome = socket.recv_non_ping().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let id = format!("k-{n}");
        socket.send_json(json!({"type":"chat","id":id,"message":"tell me something long"})).await;
        chats.push(Chat { id, token, welcome, last_seq: 0 });
        sockets.push(socket);
    }
    for (chat, socket) in chats.iter_mut().zip(sockets.iter_mut()) {
        let frames = frames_until(socket, "chat_delta").await;
        chat.last_seq = frames.iter().filter_map(|f| f["seq"].as_u64()).max().unwrap();
    }

    // SIGKILL: no drain, no flush, its heartbeat just stops.
    a.kill();
    drop(sockets);
    let returned = Instant::now();

    let mut ends: HashMap<String, usize> = HashMap::new();
    let mut retries = 0;
    for chat in &chats {
        let (mut socket, _) = connect_welcomed(&b.app, &chat.token).await;
        let resume = json!({"type":"resume","stream_id":chat.welcome["stream_id"],"epoch":chat.welcome["epoch"],"last_seq":chat.last_seq});
        socket.send_json(resume).await;
        let resend = json!({"type":"chat","id":chat.id,"message":"tell me something long"});
        loop {
            assert!(returned.elapsed() < Duration::from_secs(30) * CHATS as u32, "the run is stuck");
            let frame = socket.recv_non_ping().await;
            let about_this = frame["id"] == chat.id.as_str();
            match frame["type"].as_str() {
                Some("chat_end") if about_this => {
                    *ends.entry(chat.id.clone()).or_default() += 1;
                    break;
                }
                Some("error") if about_this => {
                    assert_eq!(frame["retryable"], true, "{frame}");
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    socket.send_json(resend.clone()).await;
                }
                Some("resume_failed") => socket.send_json(resend.clone()).await,
                _ => {}
            }
        }
        // Nothing more for this chat: one answer.
        socket.send_json(json!({"type":"ping","timestamp":7})).await;
        loop {
            let frame = socket.recv_non_ping().await;
            assert!(!(frame["type"] == "chat_end" && frame["id"] == chat.id.as_str()), "answered twice: {frame}");
            if frame["type"] == "pong" {
                break;
            }
        }
    }
    assert_eq!(ends.len(), CHATS, "every chat answered");
    assert!(ends.values().all(|n| *n == 1), "{ends:?}");
    assert!(returned.elapsed() < Duration::from_secs(30) + Duration::from_secs(2) * CHATS as u32, "{:?}", returned.elapsed());

    // Stored once each: one user message, at most one answer per id.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let counts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT client_msg_id, role, count(*) FROM pam_messages WHERE client_msg_id LIKE 'k-%' GROUP BY client_msg_id, role",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let users = counts.iter().filter(|(_, role, _)| role == "user").count();
    assert_eq!(users, CHATS, "{counts:?}");
    assert!(counts.iter().all(|(_, _, n)| *n == 1), "stored twice: {counts:?}");
    eprintln!("{CHATS} chats on a killed node: all answered once; {retries} retryable errors re-sent");
}
