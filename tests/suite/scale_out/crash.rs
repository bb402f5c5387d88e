//! A node killed for real (SIGKILL of the gateway binary) with 30 v2 chats acknowledged and
//! mid-answer: every client comes back on the other node, and each chat is answered or ends with a
//! retryable error within 30 s of the client's return, then is answered exactly once when the client
//! re-sends its id (what the SDK does) — none silent, none answered twice, none stored twice.
//! The same when the killed node is started again at once under the same `PAM_NODE_ID`; and the
//! turn a killed node left open is counted as abandoned by the node that ends it.

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

/// Node A, a real process whose model answers slowly (every chat is acknowledged and mid-answer
/// when it dies), beside node B in this process answering whole, both listed; `env` adds to A's.
struct SlowABesideB {
    /// Kept while A runs: dropping it would fail A's model calls.
    model: FakeLlm,
    a: NodeProcess,
    b: crate::common::nodes::Node,
}

async fn slow_a_beside_b(db_url: &str, prefix: &str, env: &[(&str, &str)]) -> SlowABesideB {
    let mut slow = Script::answer("one two three four five six seven eight nine ten eleven twelve");
    slow.tokens_per_second = Some(2.0);
    let model = FakeLlm::start(slow).await;
    let model_url = model.url();
    let mut a_env = vec![("ANTHROPIC_API_KEY", "test-key"), ("ANTHROPIC_BASE_URL", model_url.as_str())];
    a_env.extend_from_slice(env);
    let a = NodeProcess::start_with("node-a", db_url, &redis_url(), prefix, &a_env).await;
    let database = db_url.to_string();
    let on_db = move |s: &mut Settings| {
        short_ttl(s);
        s.max_connections_per_user = 4;
        s.database_url = database.clone();
    };
    let whole = StreamingModel::new(vec!["Answered ", "on B"], "Answered on B");
    let b = spawn_node("node-b", &redis_url(), prefix, on_db, Overrides { llm: Some(whole), ..Default::default() }).await;
    wait_until_within(Duration::from_secs(30), "both nodes are listed", || async { listed_nodes(&b.app).await == ["node-a", "node-b"] })
        .await;
    SlowABesideB { model, a, b }
}

#[tokio::test]
async fn thirty_chats_on_a_node_killed_mid_answer_are_each_answered_once_on_the_other() {
    let _redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let SlowABesideB { model: _model, mut a, b } = slow_a_beside_b(&db.url, &prefix, &[]).await;

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
                Some("resume_failed") => {
                    // A client past what the killed holder stored (its last frames reach the
                    // client before the writer's 200 ms round) lost frames; its position existed.
                    assert_ne!(frame["reason"], "ahead", "{frame}");
                    socket.send_json(resend.clone()).await;
                }
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

/// What following one chat like the SDK gave: when its first outcome (a retryable error or its
/// answer) came and when its one answer came, measured from `since`.
struct Followed {
    first_outcome: Duration,
    answered: Duration,
    retries: usize,
}

/// On a socket that just sent `resume`: re-sends chat `id` after a retryable error or a failed
/// resume until its `chat_end`, then checks with a ping round trip that no second answer follows.
async fn follow_until_answered(socket: &mut WsClient, id: &str, message: &str, since: Instant) -> Followed {
    let resend = json!({"type":"chat","id":id,"message":message});
    let (mut first_outcome, mut retries) = (None, 0);
    let answered = loop {
        assert!(since.elapsed() < Duration::from_secs(90), "chat {id} is stuck");
        let frame = socket.recv_non_ping().await;
        let about_this = frame["id"] == id;
        match frame["type"].as_str() {
            Some("chat_end") if about_this => {
                first_outcome.get_or_insert(since.elapsed());
                break since.elapsed();
            }
            Some("error") if about_this => {
                assert_eq!(frame["retryable"], true, "{frame}");
                first_outcome.get_or_insert(since.elapsed());
                retries += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                socket.send_json(resend.clone()).await;
            }
            Some("resume_failed") => socket.send_json(resend.clone()).await,
            _ => {}
        }
    };
    socket.send_json(json!({"type":"ping","timestamp":7})).await;
    loop {
        let frame = socket.recv_non_ping().await;
        assert!(!(frame["type"] == "chat_end" && frame["id"] == id), "answered twice: {frame}");
        if frame["type"] == "pong" {
            break;
        }
    }
    Followed { first_outcome: first_outcome.unwrap(), answered, retries }
}

/// Per id and role, how many rows are stored for the ids starting with `prefix` (an answer names
/// its chat's id in `metadata.client_msg_id`).
async fn stored_rows(url: &str, prefix: &str) -> Vec<(String, String, i64)> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query_as(
        "SELECT id, role, count(*) FROM (SELECT COALESCE(client_msg_id, metadata->>'client_msg_id') AS id, role FROM pam_messages) m
         WHERE id LIKE $1 GROUP BY id, role",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(&pool)
    .await
    .unwrap()
}

/// A v2 socket of a new user on the node process `node`, with chat `id` acknowledged and
/// mid-answer: the chat, with the last seq the client saw.
async fn mid_answer_on(node: &NodeProcess, id: &str) -> (Chat, WsClient) {
    let user = uuid::Uuid::new_v4().to_string();
    let token = token_for(&user);
    let (mut socket, _) = connect_v2(&format!("ws://127.0.0.1:{}/api/v2/pam/ws?token={token}", node.port)).await;
    let welcome = socket.recv_non_ping().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    socket.send_json(json!({"type":"chat","id":id,"message":"tell me something long"})).await;
    let frames = frames_until(&mut socket, "chat_delta").await;
    let last_seq = frames.iter().filter_map(|f| f["seq"].as_u64()).max().unwrap();
    (Chat { id: id.to_string(), token, welcome, last_seq }, socket)
}

/// The `PamTurnsAbandoned` drill for a crash: a node process SIGKILLed mid-answer counts nothing,
/// so the turn is counted by the node that ends it for its client (once, though the client's
/// re-send finds the dead node's turn again), and that node's `/metrics` shows it.
#[tokio::test]
async fn a_turn_of_a_killed_node_shows_on_the_survivors_metrics_once_its_orphan_is_ended() {
    let _redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let SlowABesideB { model: _model, mut a, b } = slow_a_beside_b(&db.url, &prefix, &[]).await;
    let crashed = "pam_turns_abandoned_recent{cause=\"crash\"}";
    assert_eq!(metric(&b.app.metrics().await, crashed), Some(0.0));

    let (chat, socket) = mid_answer_on(&a, "orphan-1").await;
    // The frames the client saw reach the store (the writer's round is 200 ms), so the resume
    // finds the turn open rather than the client ahead of a dead holder.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    drop(socket);
    let returned = Instant::now();
    let (mut back, _) = connect_welcomed(&b.app, &chat.token).await;
    back.send_json(json!({"type":"resume","stream_id":chat.welcome["stream_id"],"epoch":chat.welcome["epoch"],"last_seq":chat.last_seq}))
        .await;
    let followed = follow_until_answered(&mut back, "orphan-1", "tell me something long", returned).await;
    assert!(followed.retries >= 1, "the orphan ended with a retryable error before its answer");

    let seen = poll_until(Duration::from_secs(15), Duration::from_millis(250), "node-b exports the crashed turn", async || {
        match metric(&b.app.metrics().await, crashed) {
            Some(n) if n >= 1.0 => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(seen, 1.0, "counted once, though both the resume and the re-send found the dead node's turn");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT client_msg_id, node, cause FROM pam_abandoned_turns").fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [("orphan-1".to_string(), "node-a".to_string(), "crash".to_string())]);
    let series = [("pam_turns_abandoned_recent{cause=\"crash\",instance=\"node-b\"}".to_string(), seen)];
    assert!(crate::common::prometheus::alert_fires("PamTurnsAbandoned", &series), "the deployed rule fires on the scraped value");
}

/// A node process SIGKILLed mid-answer and started again at once under the same `PAM_NODE_ID`:
/// with a registration TTL far longer than the restart, the id never stops being registered, so
/// only the incarnation (boot id) tells the new process from the one that accepted the chats.
/// Clients come back on the other node or on the new process: each open chat ends with a
/// retryable error (or its answer) and, re-sent, is answered exactly once, all within 30 s of the
/// client's return; nothing is stored twice.
#[tokio::test]
async fn a_node_killed_and_restarted_at_once_under_the_same_id_is_not_taken_for_its_predecessor() {
    const RESTARTED_CHATS: usize = 4;
    let _redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    // Far beyond the restart: the old registration is replaced, never expired.
    let long_ttl = ("PAM_NODE_TTL_MS", "60000");
    let SlowABesideB { model: _model, mut a, b } = slow_a_beside_b(&db.url, &prefix, &[long_ttl]).await;
    let boot_of_a = || async {
        let nodes = crate::common::nodes::admin_get(&b.app, "/api/v1/monitoring/nodes").await;
        nodes["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "node-a").map(|n| n["boot"].clone())
    };
    let first_boot = boot_of_a().await.expect("node-a is listed");

    let mut chats = Vec::new();
    let mut sockets = Vec::new();
    for n in 0..RESTARTED_CHATS {
        let (chat, socket) = mid_answer_on(&a, &format!("again-{n}")).await;
        chats.push(chat);
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    a.kill();
    drop(sockets);
    let fast = FakeLlm::start(Script::answer("Answered on the new node-a")).await;
    let fast_url = fast.url();
    let env = [("ANTHROPIC_API_KEY", "test-key"), ("ANTHROPIC_BASE_URL", fast_url.as_str()), long_ttl];
    let again = NodeProcess::start_with("node-a", &db.url, &redis_url(), &prefix, &env).await;
    wait_until("the new node-a replaced the registration", || async { boot_of_a().await.is_some_and(|boot| boot != first_boot) }).await;
    assert_eq!(listed_nodes(&b.app).await, ["node-a", "node-b"], "node-a never stopped being registered");

    let returned = Instant::now();
    for (n, chat) in chats.iter().enumerate() {
        // Every other client comes back on the new process under the old id.
        let (mut back, _) = if n % 2 == 0 {
            connect_welcomed(&b.app, &chat.token).await
        } else {
            let (mut socket, _) = connect_v2(&format!("ws://127.0.0.1:{}/api/v2/pam/ws?token={}", again.port, chat.token)).await;
            let welcome = socket.recv_non_ping().await;
            (socket, welcome)
        };
        back.send_json(
            json!({"type":"resume","stream_id":chat.welcome["stream_id"],"epoch":chat.welcome["epoch"],"last_seq":chat.last_seq}),
        )
        .await;
        let followed = follow_until_answered(&mut back, &chat.id, "tell me something long", returned).await;
        assert!(followed.first_outcome < Duration::from_secs(30), "{}: nothing for {:?}", chat.id, followed.first_outcome);
        assert!(followed.answered < Duration::from_secs(30), "{}: answered only after {:?}", chat.id, followed.answered);
    }

    wait_until("every answer is stored", || async {
        stored_rows(&db.url, "again-").await.iter().filter(|(_, role, _)| role == "assistant").count() == RESTARTED_CHATS
    })
    .await;
    let counts = stored_rows(&db.url, "again-").await;
    assert_eq!(counts.len(), 2 * RESTARTED_CHATS, "a user message and an answer per chat: {counts:?}");
    assert!(counts.iter().all(|(_, _, n)| *n == 1), "stored twice: {counts:?}");
    drop(again);
}
