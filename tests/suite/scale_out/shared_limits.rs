//! The per-user limits hold across nodes: the connection cap counts sockets on every node (4504
//! on the node that would go over), the chat rate limit is one budget for REST on one node and a
//! socket on another, and an `Idempotency-Key` retry on another node replays (or gets 409 while
//! the first is still being answered there).

use std::time::Duration;

use crate::common::nodes::{presence, spawn_node};
use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::rest::{self, post_chat};
use crate::common::v2::StreamingModel;
use crate::common::*;
use fred::prelude::KeysInterface;
use pam_gateway::Overrides;
use pam_gateway::Settings;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn the_per_user_cap_counts_sockets_on_every_node_and_the_node_that_would_go_over_closes_with_4504() {
    let _redis = redis().await;
    let prefix = fresh_prefix();
    let cap = |s: &mut Settings| s.max_connections_per_user = 3;
    let a = spawn_node("node-a", &redis_url(), &prefix, cap, Overrides::default()).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, cap, Overrides::default()).await;
    let mut first_on_a = connect_user(&a.app, USER).await;
    let _second_on_a = connect_user(&a.app, USER).await;
    let _first_on_b = connect_user(&b.app, USER).await;

    let seen = presence(&b.app, USER).await;
    assert_eq!(seen["sockets"], 3, "{seen}");
    assert_eq!(seen["online"], true);
    assert_eq!(seen["nodes"], json!([{"id": "node-a", "sockets": 2}, {"id": "node-b", "sockets": 1}]), "{seen}");

    let mut over = WsClient::connect(&b.app.ws_url(USER, Some(&token_for(USER)))).await;
    let (closed, _) = over.recv_close().await;
    assert_eq!(closed.code, 4504, "{closed:?}");
    let _other_user = connect_user(&b.app, OTHER_USER).await;

    // A socket closing on A frees a slot for B.
    first_on_a.ws.close(None).await.unwrap();
    wait_until("A's closed socket stops counting", || async { presence(&b.app, USER).await["sockets"] == 2 }).await;
    let _third_again = connect_user(&b.app, USER).await;
}

#[tokio::test]
async fn the_rate_limit_is_one_budget_for_rest_on_one_node_and_a_socket_on_another() {
    let _redis = redis().await;
    let prefix = fresh_prefix();
    let limit = |s: &mut Settings| s.rate_limit_per_minute = 3;
    let a = spawn_node("node-a", &redis_url(), &prefix, limit, Overrides::default()).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, limit, Overrides::default()).await;
    let token = token_for(USER);
    for n in 0..2 {
        let (status, body) = post_chat(&a.app, &token, &json!({"message": format!("hello {n}")}), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut socket = connect_user(&b.app, USER).await;
    socket.send_json(json!({"type": "chat", "message": "third, on the other node"})).await;
    let answer = socket.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    socket.send_json(json!({"type": "chat", "message": "fourth"})).await;
    let refused = socket.recv_non_ping().await;
    assert_eq!(refused["error_code"], "RATE_LIMIT_EXCEEDED", "{refused}");
    let (status, body) = post_chat(&a.app, &token, &json!({"message": "fifth, back on A"}), None).await;
    assert_eq!(status, 429, "{body}");
    let (status, body) = post_chat(&a.app, &token_for(OTHER_USER), &json!({"message": "another user"}), None).await;
    assert_eq!(status, 200, "another user has a budget of their own: {body}");
}

#[tokio::test]
async fn an_idempotent_rest_retry_on_the_other_node_replays_and_one_during_the_first_gets_409() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let (model, gate) = StreamingModel::gated(vec!["Hello ", "there"], "Hello there");
    let overrides = Overrides { llm: Some(model.clone()), ..Overrides::default() };
    let a = spawn_node("node-a", &redis_url(), &prefix, |_| {}, overrides.clone()).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, |_| {}, overrides).await;
    let (token, body, key) = (token_for(USER), json!({"message": "plan my day"}), "retry-key-1");

    let first = {
        let (app, token, body) = (a.app.http(""), token.clone(), body.clone());
        tokio::spawn(async move {
            rest::client()
                .post(format!("{app}/api/v1/pam/chat"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("Idempotency-Key", key)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        })
    };
    let digest: String = Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let claim = format!("{prefix}:idem:{USER}:{digest}");
    wait_until("node A claimed the key in Redis", || {
        let (redis, claim) = (redis.clone(), claim.clone());
        async move { redis.exists::<i64, _>(claim).await.unwrap() == 1 }
    })
    .await;
    let (status, conflict) = post_chat(&b.app, &token, &body, Some(key)).await;
    assert_eq!((status, conflict["error"].as_str()), (409, Some("IDEMPOTENCY_IN_FLIGHT")), "{conflict}");
    // Past the claim's 10 s lease: node A renews it while the turn runs, so still 409.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (status, conflict) = post_chat(&b.app, &token, &body, Some(key)).await;
    assert_eq!((status, conflict["error"].as_str()), (409, Some("IDEMPOTENCY_IN_FLIGHT")), "renewed while running: {conflict}");

    gate.add_permits(1);
    let first = first.await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["response"], "Hello there", "{first}");

    let replay = rest::client()
        .post(b.app.http("/api/v1/pam/chat"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed, first, "the stored response, byte for byte");
    assert_eq!(model.calls(), 1, "the model answered once for both nodes");

    let (status, reused) = post_chat(&b.app, &token, &json!({"message": "something else"}), Some(key)).await;
    assert_eq!((status, reused["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{reused}");
    let ttl: i64 = redis.pttl(&claim).await.unwrap();
    assert!((3_500_000..=3_600_000).contains(&ttl), "the answer is kept an hour, like in process: {ttl} ms");
}
