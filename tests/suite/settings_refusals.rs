//! Settings are validated as a whole before anything starts: the real binary, given one setting
//! that cannot work, exits non-zero with one line naming it. An optional dependency that is down
//! at startup (Redis) does not stop the start: it is logged once at error level and shown in
//! `/api/v1/pam/health`.

use serde_json::Value;

use crate::common::process::{KillOnDrop, free_port, gateway, refused_start, temp_db};
use crate::common::*;

#[test]
fn each_unworkable_setting_stops_the_binary_with_one_line_naming_it() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("SUPABASE_JWT_SECRET", &[("SUPABASE_JWT_SECRET", "")]),
        ("SUPABASE_URL", &[("SUPABASE_URL", "not a url")]),
        ("PAM_JWKS_URL", &[("PAM_JWKS_URL", "ftp://keys.example/jwks.json")]),
        ("PAM_MAX_CONNECTIONS", &[("PAM_MAX_CONNECTIONS", "0")]),
        ("PAM_MAX_CONNECTIONS_PER_USER", &[("PAM_MAX_CONNECTIONS_PER_USER", "0")]),
        ("PAM_RATE_LIMIT_PER_MINUTE", &[("PAM_RATE_LIMIT_PER_MINUTE", "0")]),
        ("PAM_PROFILE_TTL_S", &[("PAM_PROFILE_TTL_S", "0")]),
        ("PAM_LLM_FIRST_TOKEN_TIMEOUT_MS", &[("PAM_LLM_FIRST_TOKEN_TIMEOUT_MS", "20000"), ("PAM_LLM_TIMEOUT_MS", "10000")]),
        ("PAM_TRUSTED_PROXIES", &[("PAM_TRUSTED_PROXIES", "10.0.0.0/8, 10.1.0.0/99")]),
        ("PORT", &[("PORT", "eighty")]),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel collector/v1/traces")]),
    ];
    for (name, env) in cases {
        let (status, stderr) = refused_start(env);
        assert!(!status.success(), "{name}: exit {status}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: one line, got {stderr:?}");
        assert!(lines[0].starts_with(&format!("pam-gateway: {name}")), "{name} is named first: {:?}", lines[0]);
    }
}

#[test]
fn a_redis_url_or_ca_file_that_cannot_work_stops_the_binary_with_one_line_naming_it() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("REDIS_URL", &[("REDIS_URL", "localhost:6379")]),
        ("PAM_REDIS_CA_FILE", &[("REDIS_URL", "rediss://127.0.0.1:1"), ("PAM_REDIS_CA_FILE", "/nonexistent/redis-ca.pem")]),
        // A file that is there but holds no PEM certificate.
        (
            "PAM_REDIS_CA_FILE",
            &[("REDIS_URL", "rediss://127.0.0.1:1"), ("PAM_REDIS_CA_FILE", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))],
        ),
    ];
    for (name, env) in cases {
        let (status, stderr) = refused_start(env);
        assert!(!status.success(), "{name}: exit {status}");
        // Found while building (after logging started), so the refusal follows the log lines.
        let refusals: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pam-gateway: ")).collect();
        assert_eq!(refusals.len(), 1, "{name}: one refusal, got {stderr:?}");
        assert!(refusals[0].starts_with(&format!("pam-gateway: {name}")), "{name} is named first: {:?}", refusals[0]);
    }
}

#[tokio::test]
async fn an_unreachable_redis_at_startup_is_logged_once_loudly_and_shown_in_health() {
    let port = free_port();
    let db = temp_db();
    let log_path = std::env::temp_dir().join(format!("pam-settings-{}.log", uuid::Uuid::new_v4().simple()));
    let _log_cleanup = TempFile(log_path.clone());
    let log = std::fs::File::create(&log_path).unwrap();
    let child = gateway(port, &db, &[("REDIS_URL", "redis://:hunter2@127.0.0.1:1"), ("RUST_LOG", "info")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
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
    let health: Value = reqwest::get(&health_url).await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["cache"]["status"].as_str()), (Some("degraded"), Some("unreachable")), "{health}");
    assert!(health["cache"]["error"].as_str().is_some_and(|e| e.starts_with("unreachable since startup")), "{health}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let loud: Vec<&str> = logs.lines().filter(|l| l.contains("REDIS_URL is unreachable at startup")).collect();
    assert_eq!(loud.len(), 1, "logged once: {logs}");
    assert!(loud[0].contains("\"level\":\"ERROR\""), "{}", loud[0]);
    // One coherent story: the URL (password redacted), starting anyway, and what is not shared.
    assert!(loud[0].contains("(redis://:***@127.0.0.1:1): starting anyway"), "{}", loud[0]);
    assert!(loud[0].contains("are this node's alone"), "{}", loud[0]);
    assert!(!logs.contains("shared across nodes"), "no claim that state is shared while Redis is down: {logs}");
    assert!(!logs.contains("hunter2"), "the Redis password is never logged: {logs}");
}
