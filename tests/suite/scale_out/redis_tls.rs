//! Redis over TLS, as the hosted ones (Upstash, Redis Cloud, ElastiCache) require: `rediss://`
//! with `PAM_REDIS_CA_FILE` (a CA the system does not trust) and an ACL password carries pushes between nodes, an ACL
//! `user:password@` is what the nodes log in as, and a plain `redis://` pointed at the TLS port is
//! called out in the log and in health instead of looking like a Redis that is down.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::common::nodes::{listed_nodes, spawn_node, spawn_with, wait_subscribed};
use crate::common::process::{KillOnDrop, free_port, gateway, temp_db};
use crate::common::redis::fresh_prefix;
use crate::common::redis_tls::TlsRedisServer;
use crate::common::*;
use pam_gateway::Overrides;
use pam_protocol::UserId;

/// A TLS-only Redis with an ACL user `pam` / `pam-s3cret` and the default user off (only the
/// URL's credentials get in, as on a managed Redis), and a client logged in as that user.
async fn password_only_server() -> (TlsRedisServer, fred::prelude::Client) {
    let server = TlsRedisServer::start().await;
    let admin = server.client("").await;
    TlsRedisServer::acl(&admin, &["SETUSER", "pam", "on", ">pam-s3cret", "~*", "&*", "+@all"]).await;
    TlsRedisServer::acl(&admin, &["SETUSER", "default", "off"]).await;
    let redis = server.client("pam:pam-s3cret@").await;
    (server, redis)
}

#[tokio::test]
async fn two_nodes_on_rediss_with_a_password_and_the_ca_file_share_a_push() {
    let (server, redis) = password_only_server().await;
    let prefix = fresh_prefix();
    let ca = server.ca_file.clone();
    let url = server.tls_url("pam:pam-s3cret@");
    let a = spawn_node("node-a", &url, &prefix, |s| s.redis_ca_file = Some(ca.clone()), Overrides::default()).await;
    let b = spawn_node("node-b", &url, &prefix, |s| s.redis_ca_file = Some(ca.clone()), Overrides::default()).await;
    for node in [&a, &b] {
        wait_subscribed(&redis, &prefix, &node.id).await;
    }
    let mut on_b = connect_user(&b.app, USER).await;

    let alert = json!({"type": "proactive_alert", "id": "tls-1", "content": {"message": "Pushed over TLS"}});
    let outcome = a.push.publish(&UserId::parse(USER).unwrap(), &alert.to_string()).await;
    assert_eq!((outcome.local_sockets, outcome.remote_nodes, outcome.degraded), (0, 1, false));
    assert_eq!(on_b.recv_non_ping().await, alert);
}

#[tokio::test]
async fn a_node_logs_in_with_the_acl_user_and_password_of_its_rediss_url() {
    let (server, redis) = password_only_server().await;
    let prefix = fresh_prefix();
    let ca = server.ca_file.clone();
    let node =
        spawn_node("node-acl", &server.tls_url("pam:pam-s3cret@"), &prefix, |s| s.redis_ca_file = Some(ca), Overrides::default()).await;
    wait_subscribed(&redis, &prefix, &node.id).await;
    wait_until("the node registered itself in Redis", || async { listed_nodes(&node.app).await.contains(&node.id) }).await;
}

#[tokio::test]
async fn a_rediss_server_whose_ca_is_not_trusted_is_shown_in_health_pointing_at_pam_redis_ca_file() {
    let server = TlsRedisServer::start().await;
    let node = spawn_with("node-untrusted", Some(&server.tls_url("")), &fresh_prefix(), |_| {}, Overrides::default()).await;
    let health: Value = rest::client().get(node.app.http("/api/v1/pam/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["cache"]["status"].as_str()), (Some("degraded"), Some("unreachable")), "{health}");
    let error = health["cache"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("certificate") && error.contains("set PAM_REDIS_CA_FILE"), "{health}");
}

#[tokio::test]
async fn a_plain_redis_url_at_a_tls_port_is_logged_and_shown_in_health_as_needing_rediss() {
    let server = TlsRedisServer::start().await;
    let port = free_port();
    let db = temp_db();
    let log_path = std::env::temp_dir().join(format!("pam-redis-plain-{}.log", uuid::Uuid::new_v4().simple()));
    let _log_cleanup = TempFile(log_path.clone());
    let log = std::fs::File::create(&log_path).unwrap();
    let plain = server.plain_url();
    let child = gateway(port, &db, &[("REDIS_URL", &plain), ("RUST_LOG", "info")])
        .stdout(log.try_clone().unwrap())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(child);
    rustls::crypto::ring::default_provider().install_default().ok();
    let health_url = format!("http://127.0.0.1:{port}/api/v1/pam/health");
    wait_until("the gateway serves health", || {
        let exited = child.0.try_wait().unwrap();
        assert!(exited.is_none(), "the gateway exited ({exited:?}): {}", std::fs::read_to_string(&log_path).unwrap_or_default());
        let health_url = health_url.clone();
        async move { reqwest::get(&health_url).await.is_ok() }
    })
    .await;

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let said: Vec<&str> = logs.lines().filter(|l| l.contains("REDIS_URL is unreachable at startup")).collect();
    assert_eq!(said.len(), 1, "logged once: {logs}");
    assert!(said[0].contains("\"level\":\"ERROR\""), "{}", said[0]);
    assert!(said[0].contains("speaks TLS but REDIS_URL is redis://") && said[0].contains("use rediss://"), "{}", said[0]);
    let health: Value = reqwest::get(&health_url).await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["cache"]["status"].as_str()), (Some("degraded"), Some("unreachable")), "{health}");
    let error = health["cache"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("speaks TLS") && error.contains("rediss://"), "{health}");
}
