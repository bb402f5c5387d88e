//! Pushes the bus lost are read again: while Redis is killed (then restarted, empty) or hangs
//! (SIGSTOP) under two real node processes, pushes POSTed to node A for a user whose socket is on
//! node B never reach it by the bus; within seconds of Redis answering again B's socket has every
//! one of them, each exactly once, however many catch-ups run (B's subscription back, B's presence
//! re-synced, A's announcement of the users it could not publish for) and whatever the bus still
//! delivers late; then the bus carries pushes again.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::db::{Backend, test_db};
use crate::common::node_process::{NodeProcess, signal};
use crate::common::push::{frames_before_pong, fresh_user, next_frame, send, wait_delivered};
use crate::common::redis::{RedisServer, fresh_prefix};
use crate::common::wait::POLL;
use crate::common::*;

/// How long Redis is gone.
const OUTAGE: Duration = Duration::from_secs(12);

#[derive(Clone, Copy)]
enum Outage {
    /// SIGKILL, then a new empty `redis-server` on the same port.
    Killed,
    /// SIGSTOP, then SIGCONT: commands sent meanwhile run late, their publishes too.
    Hanging,
}

/// `POST /api/v1/pam/push` of an alert for `user` to `node`; the push id.
async fn push(node: &NodeProcess, user: &str, message: &str) -> String {
    let body = json!({"user_id": user, "type": "proactive_alert", "content": {
        "type": "proactive_alert", "category": "financial_guidance", "alert_type": "budget_alert", "message": message}});
    let (status, body) = send(rest::client().post(node.http("/api/v1/pam/push")).bearer_auth(ADMIN_TOKEN).json(&body)).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Whether `node` logged a push catch-up for `reason`.
fn caught_up_for(node: &NodeProcess, reason: &str) -> bool {
    node.log().lines().any(|line| line.contains("push catch-up") && line.contains(reason))
}

async fn pushes_stored_during_an_outage_reach_the_socket_on_the_other_node_once(outage: Outage) {
    let mut redis = RedisServer::start().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let a = NodeProcess::start("node-a", &db.url, &redis.url(), &prefix).await;
    let b = NodeProcess::start("node-b", &db.url, &redis.url(), &prefix).await;
    let user = fresh_user();
    let mut on_b = b.connect_user(&user).await;
    wait_until("A sees the user's socket on B", || async { a.admin_get(&format!("/api/v1/pam/presence/{user}")).await["sockets"] == 1 })
        .await;
    let before = push(&a, &user, "before the outage").await;
    assert_eq!(next_frame(&mut on_b).await["id"], before.as_str(), "the bus carries it while Redis is up");
    // Reading on answers the ping B sent after it (the proof of receipt); B marks it delivered
    // through the queue that also read the socket's stored pushes on connect: that read is done,
    // and cannot bring pushes of the outage.
    assert_eq!(frames_before_pong(&mut on_b).await, Vec::<Value>::new());
    wait_delivered(&db.url, &before).await;

    match outage {
        Outage::Killed => redis.stop(),
        Outage::Hanging => signal(redis.pid(), "-STOP"),
    }
    let down = Instant::now();
    let mut ids = Vec::new();
    while down.elapsed() < OUTAGE {
        ids.push(push(&a, &user, &format!("during the outage, #{}", ids.len())).await);
        // Why a fixed pause: pushes spread over the outage, not a state to wait for.
        tokio::time::sleep(Duration::from_millis(750)).await;
    }
    let early = frames_before_pong(&mut on_b).await;
    assert_eq!(early, Vec::<Value>::new(), "none reached B by the bus; B's log:\n{}\nA's log:\n{}", b.log(), a.log());

    match outage {
        Outage::Killed => redis.restart().await,
        Outage::Hanging => signal(redis.pid(), "-CONT"),
    }
    let back = Instant::now();
    let mut seen: HashMap<String, usize> = HashMap::new();
    while ids.iter().any(|id| !seen.contains_key(id)) {
        let frame = next_frame(&mut on_b).await;
        assert_eq!(frame["type"], "proactive_alert", "{frame}");
        *seen.entry(frame["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let all_in = back.elapsed();
    assert!(all_in < Duration::from_secs(5), "every push on B within seconds of Redis answering: {all_in:?}");

    // Once each, after every catch-up the outage causes has run.
    let reasons = ["push channel subscription back", "presence re-synced", "another node's unpublished pushes"];
    for reason in &reasons {
        let logged =
            poll(Duration::from_secs(20), POLL, async || if caught_up_for(&b, reason) { Ok(()) } else { Err(String::new()) }).await;
        assert!(logged.is_ok(), "B caught up for: {reason}; its log:\n{}", b.log());
    }
    for frame in frames_before_pong(&mut on_b).await {
        *seen.entry(frame["id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let mut expected: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 1)).collect();
    expected.remove(&before);
    assert_eq!(seen, expected, "every push of the outage exactly once, nothing else");
    let caught_up = metric(&b.metrics().await, "pam_push_catch_up_sockets_total").unwrap_or(0.0);
    assert!(caught_up >= reasons.len() as f64, "one socket per catch-up: {caught_up}");

    // And the bus carries pushes again (B's presence is back in Redis).
    let after = push(&a, &user, "after the outage").await;
    assert_eq!(next_frame(&mut on_b).await["id"], after.as_str());
    eprintln!("{} pushes during a {OUTAGE:?} outage, all on B {all_in:?} after Redis answered; {caught_up} socket catch-ups", ids.len());
}

#[tokio::test]
async fn pushes_stored_while_redis_is_killed_reach_the_socket_on_the_other_node_once_it_is_back() {
    pushes_stored_during_an_outage_reach_the_socket_on_the_other_node_once(Outage::Killed).await;
}

#[tokio::test]
async fn pushes_stored_while_redis_hangs_reach_the_socket_on_the_other_node_once_it_answers() {
    pushes_stored_during_an_outage_reach_the_socket_on_the_other_node_once(Outage::Hanging).await;
}
