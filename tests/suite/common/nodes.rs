//! Several gateway nodes in one test: each with its own SQLite file (unless the test names one
//! database for all), sharing one Redis under one key prefix, with the admin token set; and what
//! the tests ask the nodes (node list, presence, push-channel subscribers).

use std::sync::Arc;

use fred::prelude::PubsubInterface;
use pam_actors::PushBus;
use pam_gateway::{Application, Overrides, Settings};
use serde_json::Value;

use super::redis::{fresh_prefix, redis, redis_url};
use super::{ADMIN_TOKEN, TestApp, build_app, rest, run_app, test_settings, wait_until};

/// A short node registration TTL for the liveness tests (`PAM_NODE_TTL_MS`).
pub const TTL_MS: u64 = 1_500;

/// Settings of a node whose registration expires within `TTL_MS`, with a per-user cap of 2.
pub fn short_ttl(settings: &mut Settings) {
    settings.node_ttl_ms = TTL_MS;
    settings.max_connections_per_user = 2;
}

/// One gateway node: the app, its push bus, its id and its Redis key prefix.
pub struct Node {
    pub app: TestApp,
    pub push: Arc<dyn PushBus>,
    pub id: String,
    pub prefix: String,
}

/// Nodes `node-a` and `node-b` of one deployment: the test Redis (which must answer) under a
/// fresh prefix, `adjust` and `overrides` applied to both (e.g. one database for both).
pub async fn two_nodes(adjust: impl Fn(&mut Settings), overrides: Overrides) -> [Node; 2] {
    let prefix = fresh_prefix();
    let a = spawn_node("node-a", &redis_url(), &prefix, &adjust, overrides.clone()).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, &adjust, overrides).await;
    [a, b]
}

/// Starts a node named `id` on `redis_url` under `prefix`, with the admin token set. On the shared
/// test Redis, which must answer (a node would start without it, degraded, and fail the test
/// somewhere less clear).
pub async fn spawn_node(id: &str, redis_url: &str, prefix: &str, adjust: impl FnOnce(&mut Settings), overrides: Overrides) -> Node {
    if redis_url == self::redis_url() {
        let _required = redis().await;
    }
    spawn_with(id, Some(redis_url), prefix, adjust, overrides).await
}

/// Like `spawn_node`; `None` runs it without Redis (the single-node default).
pub async fn spawn_with(id: &str, redis_url: Option<&str>, prefix: &str, adjust: impl FnOnce(&mut Settings), overrides: Overrides) -> Node {
    let (mut settings, db) = test_settings();
    settings.node_id = Some(id.to_string());
    settings.redis_url = redis_url.map(str::to_string);
    settings.cache_prefix = prefix.to_string();
    settings.admin_token = Some(ADMIN_TOKEN.to_string());
    adjust(&mut settings);
    let app: Application = build_app(settings, overrides).await;
    let push = app.push_bus();
    Node { app: run_app(app, db), push, id: id.to_string(), prefix: prefix.to_string() }
}

/// `GET` an admin route; the JSON body.
pub async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = rest::client().get(app.http(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("the gateway answers");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The ids `GET /api/v1/monitoring/nodes` lists.
pub async fn listed_nodes(app: &TestApp) -> Vec<String> {
    let body = admin_get(app, "/api/v1/monitoring/nodes").await;
    body["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

/// `GET /api/v1/pam/presence/{user}`.
pub async fn presence(app: &TestApp, user: &str) -> Value {
    admin_get(app, &format!("/api/v1/pam/presence/{user}")).await
}

/// Waits until Redis has a subscriber on `node`'s push channel (pushes and forwarded frames
/// travel on it).
pub async fn wait_subscribed(redis: &fred::prelude::Client, prefix: &str, node: &str) {
    let channel = format!("{prefix}:node:{node}:push");
    wait_until(&format!("{node} listens on its push channel"), || {
        let (redis, channel) = (redis.clone(), channel.clone());
        async move {
            let counts: Vec<fred::types::Value> = redis.pubsub_numsub(channel).await.unwrap();
            counts.get(1).and_then(fred::types::Value::as_i64) == Some(1)
        }
    })
    .await;
}
