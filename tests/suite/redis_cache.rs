//! Redis between the in-process L1 and the database: context lands in `{prefix}:{kind}:{uid}` with
//! the kind's TTL and is served to another node from there; a refused or hanging Redis opens the
//! breaker, counts `pam_cache_errors_total`, and chats still answer from the database.

use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::*;
use fred::prelude::KeysInterface;
use pam_gateway::Overrides;
use serde_json::{Value, json};

const DEMO: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1";

async fn dev_app(redis_url: String, prefix: String) -> TestApp {
    spawn_app_with(
        move |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
            s.redis_url = Some(redis_url);
            s.cache_prefix = prefix;
        },
        Overrides::default(),
    )
    .await
}

async fn ask_fuel(app: &TestApp, token: &str) -> String {
    let mut client = WsClient::connect(&app.ws_url(DEMO, Some(token))).await;
    client.recv_json().await;
    client.send_json(json!({"type":"chat","message":"how much have I spent on fuel this month?"})).await;
    client.recv_non_ping().await["message"].as_str().unwrap().to_string()
}

async fn dev_token(app: &TestApp) -> String {
    let token: Value = reqwest::Client::new().post(app.http("/dev/token")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    token["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn context_is_cached_in_redis_with_each_kinds_ttl_and_serves_another_node() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let seeded = dev_app(redis_url(), prefix.clone()).await;
    let answer = ask_fuel(&seeded, &dev_token(&seeded).await).await;
    assert!(answer.contains("$251.85 on fuel"), "{answer}");
    let financial_ttl: i64 = redis.ttl(format!("{prefix}:financial:{DEMO}")).await.unwrap();
    let profile_ttl: i64 = redis.ttl(format!("{prefix}:profile:{DEMO}")).await.unwrap();
    assert!((1..=300).contains(&financial_ttl), "financial TTL {financial_ttl}");
    assert!((301..=600).contains(&profile_ttl), "profile TTL {profile_ttl}");

    // Another node (its own empty database, same Redis) answers from the cached context.
    let other = spawn_app_with(
        |s| {
            s.redis_url = Some(redis_url());
            s.cache_prefix = prefix.clone();
        },
        Overrides::default(),
    )
    .await;
    let answer = ask_fuel(&other, &token_for(DEMO)).await;
    assert!(answer.contains("$251.85 on fuel"), "served from Redis: {answer}");
    let text = other.metrics().await;
    assert!(metric(&text, "pam_cache_requests_total{kind=\"financial\",result=\"hit\"}").unwrap_or(0.0) >= 1.0, "{text}");
    let _: i64 = redis
        .del(vec![format!("{prefix}:financial:{DEMO}"), format!("{prefix}:profile:{DEMO}"), format!("{prefix}:social:{DEMO}")])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_redis_opens_the_breaker_and_chats_still_answer() {
    let app = dev_app("redis://127.0.0.1:1".into(), "pam".into()).await;
    let answer = ask_fuel(&app, &dev_token(&app).await).await;
    assert!(answer.contains("$251.85 on fuel"), "{answer}");
    let errors = metric(&app.metrics().await, "pam_cache_errors_total{op=\"get\"}").unwrap_or(0.0);
    assert!(errors >= 3.0, "each kind's lookup failed: {errors}");
    let health: Value = reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["cache"]["status"], "open", "{health}");
}

#[tokio::test]
async fn a_hanging_redis_is_given_up_on_and_chats_still_answer() {
    // Accepts connections and never answers a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let app = dev_app(format!("redis://127.0.0.1:{port}"), "pam".into()).await;
    let answer = ask_fuel(&app, &dev_token(&app).await).await;
    assert!(answer.contains("$251.85 on fuel"), "{answer}");
    assert!(metric(&app.metrics().await, "pam_cache_errors_total{op=\"get\"}").unwrap_or(0.0) >= 1.0);
}
