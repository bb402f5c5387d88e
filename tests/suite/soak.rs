//! The "nothing lost" soak: 1 000 chats — legacy, v2 and REST mixed, 50 at a time — each client
//! going away at a random moment 0–50 ms after sending. Afterwards every chat the server read
//! (`pam_turns_accepted_total`) is stored exactly once with exactly one answer, and nothing
//! waits in the outbox — on SQLite and on Postgres. Prints its figures (run with --no-capture).

use std::time::Duration;

use crate::common::turns::*;
use crate::common::v2::*;
use crate::common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

const CHATS: usize = 1_000;
const CONCURRENCY: usize = 50;
const USERS: usize = 20;

async fn one_chat(app: &TestApp, n: usize, users: &[String]) {
    let user = &users[n % users.len()];
    let token = token_for(user);
    match n % 3 {
        0 => {
            let mut client = WsClient::connect(&app.ws_url(user, Some(&token))).await;
            client.recv_json().await;
            client.send_json(json!({"type":"chat","message":format!("legacy {n}")})).await;
        }
        1 => {
            let (mut client, _) = connect_welcomed(app, &token).await;
            client.send_json(json!({"type":"chat","id":format!("soak-{n}"),"message":format!("v2 {n}")})).await;
            // Why a fixed (random) pause: the socket closes at a random point of its chat, on purpose.
            tokio::time::sleep(jitter(50)).await;
        }
        _ => {
            let request = crate::common::rest::client()
                .post(app.http("/api/v1/pam/chat"))
                .bearer_auth(&token)
                .json(&json!({"message": format!("rest {n}")}))
                .timeout(Duration::from_millis(1) + jitter(50))
                .send();
            let _ = request.await;
            return;
        }
    }
    // Why a fixed (random) pause: the socket stays a random while after its chat, on purpose.
    tokio::time::sleep(jitter(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_chats_whose_clients_vanish_are_each_stored_exactly_once() {
    for postgres in both_backends() {
        let url = postgres.clone();
        let app = spawn_app_with(
            move |s| {
                s.database_url = url.unwrap_or(s.database_url.clone());
                s.rate_limit_per_minute = 1_000_000;
                s.max_connections_per_user = 10_000;
            },
            Default::default(),
        )
        .await;
        let db = database_url(&app, &postgres);
        let users: Vec<String> = (0..USERS).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let accepted_before = metric_value(&app, "pam_turns_accepted_total").await;
        let started = Instant::now();
        futures_util::stream::iter(0..CHATS).for_each_concurrent(CONCURRENCY, |n| one_chat(&app, n, &users)).await;
        let sent = started.elapsed();
        settled(&app).await;
        let settled_after = started.elapsed();
        let accepted = (metric_value(&app, "pam_turns_accepted_total").await - accepted_before) as usize;
        let mut stored = 0;
        for user in &users {
            stored += assert_each_turn_stored_once(&rows(&db, user).await, &db);
        }
        eprintln!(
            "soak {}: {CHATS} chats sent in {:.1} s, {accepted} read by the server, {stored} stored exactly once, settled after {:.1} s, pending 0",
            if postgres.is_some() { "postgres" } else { "sqlite" },
            sent.as_secs_f64(),
            settled_after.as_secs_f64()
        );
        assert_eq!(stored, accepted, "{db}: stored turns == chats read by the server");
        assert!(accepted >= CHATS / 2, "{db}: most chats reached the server ({accepted})");
        app.shutdown().await;
    }
}
