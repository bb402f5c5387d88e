//! Liveness: a killed node (the real binary, SIGKILL) disappears from `/api/v1/monitoring/nodes`
//! and from every user's presence within `PAM_NODE_TTL_MS`; a drained one at once.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::nodes::{TTL_MS, listed_nodes, presence, short_ttl, spawn_node};
use crate::common::process::{KillOnDrop, free_port};
use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::*;
use pam_gateway::Overrides;
use tokio::time::Instant;

/// The real binary as node `id`, on its own port, SQLite file and log.
fn start_binary(id: &str, prefix: &str, port: u16, files: &[TempFile; 3]) -> std::process::Child {
    let log = File::create(&files[2].0).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pam-gateway"));
    for var in ["SUPABASE_URL", "PAM_JWKS_URL", "PAM_JWT_ISSUER", "PAM_LOG_FORMAT", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"] {
        command.env_remove(var);
    }
    command
        .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", format!("sqlite://{}", files[0].0.display()))
        .env("PAM_OUTBOX_JOURNAL", files[1].0.display().to_string())
        .env("SUPABASE_JWT_SECRET", TEST_SECRET)
        .env("PAM_DEV_AUTH", "false")
        .env("REDIS_URL", redis_url())
        .env("PAM_CACHE_PREFIX", prefix)
        .env("PAM_NODE_ID", id)
        .env("PAM_NODE_TTL_MS", TTL_MS.to_string())
        .env("PAM_MAX_CONNECTIONS_PER_USER", "2")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the binary starts")
}

#[tokio::test]
async fn a_killed_node_disappears_from_the_node_list_and_from_presence_within_its_ttl() {
    let _redis = redis().await;
    let prefix = fresh_prefix();
    let a = spawn_node("node-a", &redis_url(), &prefix, short_ttl, Overrides::default()).await;
    let port = free_port();
    let files =
        ["db", "outbox", "log"].map(|what| TempFile(std::env::temp_dir().join(format!("pam-node-b-{what}-{}", uuid::Uuid::new_v4()))));
    let mut b = KillOnDrop(start_binary("node-b", &prefix, port, &files));
    let b_url = |user: &str| format!("ws://127.0.0.1:{port}/api/v1/pam/ws/{user}?token={}", token_for(user));
    wait_until_within(Duration::from_secs(30), "node B lists itself and A", || async {
        listed_nodes(&a.app).await == ["node-a", "node-b"]
    })
    .await;
    let mut on_b = Vec::new();
    for _ in 0..2 {
        let mut socket = WsClient::connect(&b_url(USER)).await;
        assert_eq!(socket.recv_json().await["type"], "connection");
        on_b.push(socket);
    }
    let mut over = WsClient::connect(&a.app.ws_url(USER, Some(&token_for(USER)))).await;
    assert_eq!(over.recv_close().await.0.code, 4504, "B's sockets count on A");

    b.0.kill().unwrap();
    let killed = Instant::now();
    wait_until_within(Duration::from_millis(TTL_MS * 3), "the killed node is gone from the list", || async {
        listed_nodes(&a.app).await == ["node-a"]
    })
    .await;
    // The registration expires at most TTL after the last heartbeat; the rest is polling and a loaded machine.
    assert!(killed.elapsed() <= Duration::from_millis(TTL_MS + 1_000), "gone within the TTL: {:?}", killed.elapsed());
    assert_eq!(presence(&a.app, USER).await["sockets"], 0, "its sockets no longer count");
    let _both_on_a = [connect_user(&a.app, USER).await, connect_user(&a.app, USER).await];

    // A drained node deregisters itself at once.
    let c = spawn_node("node-c", &redis_url(), &prefix, short_ttl, Overrides::default()).await;
    wait_until("C is listed", || async { listed_nodes(&a.app).await == ["node-a", "node-c"] }).await;
    c.app.shutdown().await;
    assert_eq!(listed_nodes(&a.app).await, ["node-a"]);
}
