//! Redis trouble is not the user's trouble: with Redis stopped (and restarted, empty) under two
//! nodes, or hanging, chats keep answering on the node the client is on and the shared cap,
//! presence and node list fall back to each node's own, then come back by themselves (presence
//! re-synced from what each node holds).

use std::process::Command;

use std::time::Duration;

use crate::common::nodes::{admin_get, listed_nodes, presence, short_ttl, spawn_node};
use crate::common::redis::{RedisServer, fresh_prefix};
use crate::common::rest::post_chat;
use crate::common::*;
use pam_gateway::Overrides;
use serde_json::json;
use tokio::time::Instant;

#[tokio::test]
async fn redis_stopped_and_restarted_under_two_nodes_keeps_chats_answering_and_the_shared_state_comes_back() {
    let mut server = RedisServer::start().await;
    let prefix = fresh_prefix();
    let a = spawn_node("node-a", &server.url(), &prefix, short_ttl, Overrides::default()).await;
    let b = spawn_node("node-b", &server.url(), &prefix, short_ttl, Overrides::default()).await;
    wait_until("both nodes are listed", || async { listed_nodes(&a.app).await == ["node-a", "node-b"] }).await;
    let mut on_a = connect_user(&a.app, USER).await;
    let _on_b = connect_user(&b.app, USER).await;
    let mut over = WsClient::connect(&a.app.ws_url(USER, Some(&token_for(USER)))).await;
    assert_eq!(over.recv_close().await.0.code, 4504, "the cap is shared while Redis is up");

    server.stop();
    on_a.send_json(json!({"type": "chat", "message": "is Redis needed to answer?"})).await;
    assert_eq!(on_a.recv_non_ping().await["type"], "chat_response");
    let (status, body) = post_chat(&b.app, &token_for(OTHER_USER), &json!({"message": "hello"}), Some("outage-key")).await;
    assert_eq!(status, 200, "REST with a key answers from this node's own keys: {body}");
    wait_until("the shared state is marked degraded", || async {
        metric(&a.app.metrics().await, "pam_redis_shared_state_degraded") == Some(1.0)
    })
    .await;
    let local = presence(&a.app, USER).await;
    assert_eq!((local["degraded"].as_bool(), local["sockets"].as_u64()), (Some(true), Some(1)), "{local}");
    let nodes = admin_get(&a.app, "/api/v1/monitoring/nodes").await;
    assert_eq!((nodes["degraded"].as_bool(), nodes["source"].as_str()), (Some(true), Some("local")), "{nodes}");

    server.restart().await;
    wait_until_within(Duration::from_secs(30), "both nodes are registered again in the empty Redis", || async {
        listed_nodes(&a.app).await == ["node-a", "node-b"]
    })
    .await;
    wait_until_within(Duration::from_secs(30), "presence is re-synced from what each node holds", || async {
        let seen = presence(&a.app, USER).await;
        seen["degraded"] == false && seen["sockets"] == 2
    })
    .await;
    let mut over = WsClient::connect(&a.app.ws_url(USER, Some(&token_for(USER)))).await;
    assert_eq!(over.recv_close().await.0.code, 4504, "the cap is shared again");
    wait_until_within(Duration::from_secs(10), "the degraded gauge is back to 0", || async {
        metric(&a.app.metrics().await, "pam_redis_shared_state_degraded") == Some(0.0)
    })
    .await;
    on_a.send_json(json!({"type": "chat", "message": "and now?"})).await;
    assert_eq!(on_a.recv_non_ping().await["type"], "chat_response");
}

#[tokio::test]
async fn a_hanging_redis_costs_a_chat_its_short_budgets_and_the_shared_state_returns_when_it_answers() {
    let server = RedisServer::start().await;
    let prefix = fresh_prefix();
    let node = spawn_node("node-a", &server.url(), &prefix, short_ttl, Overrides::default()).await;
    wait_until("the node is listed", || async { listed_nodes(&node.app).await == ["node-a"] }).await;
    let mut socket = connect_user(&node.app, USER).await;
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &server.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let asked = Instant::now();
    socket.send_json(json!({"type": "chat", "message": "still there?"})).await;
    assert_eq!(socket.recv_non_ping().await["type"], "chat_response");
    assert!(asked.elapsed() < Duration::from_secs(3), "answered in {:?}", asked.elapsed());
    let asked = Instant::now();
    let (status, body) = post_chat(&node.app, &token_for(USER), &json!({"message": "and over REST?"}), Some("hang-key")).await;
    assert_eq!(status, 200, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(3), "answered in {:?}", asked.elapsed());
    let _second = connect_user(&node.app, USER).await;
    wait_until("the shared state is marked degraded", || async {
        metric(&node.app.metrics().await, "pam_redis_shared_state_degraded") == Some(1.0)
    })
    .await;
    let seen = health(&node.app).await;
    assert_eq!(seen["status"], "degraded", "{seen}");
    assert!(names_shared_state(&seen), "health names the degraded shared state: {seen}");

    signal("-CONT");
    wait_until_within(Duration::from_secs(30), "presence counts both sockets in Redis again", || async {
        let seen = presence(&node.app, USER).await;
        seen["degraded"] == false && seen["sockets"] == 2
    })
    .await;
    wait_until_within(Duration::from_secs(10), "health no longer names the shared state", || async {
        !names_shared_state(&health(&node.app).await)
    })
    .await;
}

/// A stall just long enough to open the request-path breaker (three heartbeats that time out)
/// ends within a heartbeat of Redis answering again: the heartbeat probes past the open breaker
/// and closes it, instead of the node staying on its own state for the breaker's 5 s.
#[tokio::test]
async fn after_a_redis_stall_the_shared_state_returns_within_a_heartbeat_not_the_breakers_period() {
    let server = RedisServer::start().await;
    let prefix = fresh_prefix();
    let node = spawn_node("node-a", &server.url(), &prefix, short_ttl, Overrides::default()).await;
    wait_until("the node is listed", || async { listed_nodes(&node.app).await == ["node-a"] }).await;
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &server.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    wait_until("the shared state is marked degraded", || async {
        metric(&node.app.metrics().await, "pam_redis_shared_state_degraded") == Some(1.0)
    })
    .await;
    assert!(names_shared_state(&health(&node.app).await));
    signal("-CONT");
    let resumed = Instant::now();
    wait_until_within(Duration::from_secs(10), "the degraded gauge is back to 0", || async {
        metric(&node.app.metrics().await, "pam_redis_shared_state_degraded") == Some(0.0)
    })
    .await;
    let back = resumed.elapsed();
    let seen = health(&node.app).await;
    assert!(!names_shared_state(&seen), "{seen}");
    eprintln!("shared state back {} ms after Redis resumed", back.as_millis());
    // A heartbeat every 500 ms (PAM_NODE_TTL_MS 1500); the breaker alone would hold 5 s.
    assert!(back < Duration::from_millis(2_000), "shared state back only after {back:?}");
}

/// A REST claim whose `SET NX` timed out (Redis held writes past the 100 ms budget) but ran
/// afterwards leaves a running marker no request renews: a retry on another node gets 409 at
/// first, then is served once the marker's lease (10 s) lapsed — not after a turn's lifetime.
#[tokio::test]
async fn an_idempotency_claim_that_timed_out_but_ran_stops_blocking_retries_after_its_lease() {
    let server = RedisServer::start().await;
    let prefix = fresh_prefix();
    let a = spawn_node("node-a", &server.url(), &prefix, short_ttl, Overrides::default()).await;
    let b = spawn_node("node-b", &server.url(), &prefix, short_ttl, Overrides::default()).await;
    wait_until("both nodes are listed", || async { listed_nodes(&a.app).await == ["node-a", "node-b"] }).await;
    let (token, body, key) = (token_for(USER), json!({"message": "plan my day"}), "timed-out-claim");
    let redis_cli = |args: &[&str]| {
        let out = Command::new("redis-cli").args(["-p", &server.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Redis runs no write for 400 ms: node A's SET NX gives up after 100 ms (A answers from its
    // own keys), and Redis runs it once the pause ends.
    assert_eq!(redis_cli(&["CLIENT", "PAUSE", "400", "WRITE"]), "OK");
    let started = Instant::now();
    let (status, answered) = post_chat(&a.app, &token, &body, Some(key)).await;
    assert_eq!(status, 200, "{answered}");
    let pattern = format!("{prefix}:idem:*");
    wait_until("the timed-out SET NX ran after the pause", || async { !redis_cli(&["--scan", "--pattern", &pattern]).is_empty() }).await;
    let (status, conflict) = post_chat(&b.app, &token, &body, Some(key)).await;
    assert_eq!((status, conflict["error"].as_str()), (409, Some("IDEMPOTENCY_IN_FLIGHT")), "the orphaned marker: {conflict}");
    let served = loop {
        let (status, retried) = post_chat(&b.app, &token, &body, Some(key)).await;
        if status == 200 {
            break started.elapsed();
        }
        assert_eq!(status, 409, "{retried}");
        assert!(started.elapsed() < Duration::from_secs(20), "retries still refused after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("retry served {} ms after the first request", served.as_millis());
    assert!(served < Duration::from_secs(13), "served only after {served:?}");
}

async fn health(app: &TestApp) -> serde_json::Value {
    reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap()
}

fn names_shared_state(health: &serde_json::Value) -> bool {
    health["problems"].as_array().is_some_and(|p| p.iter().any(|p| p.as_str().is_some_and(|p| p.contains("shared state degraded"))))
}
