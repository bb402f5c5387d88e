//! Settings are validated as a whole before anything starts: the real binary, given one setting
//! that cannot work, exits non-zero with one line naming it. An optional dependency that is down
//! at startup (Redis) does not stop the start: it is logged once at error level and shown in
//! `/api/v1/pam/health`. The helpers here (the binary with a clean environment) also serve
//! `startup_refusals.rs`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The gateway binary with a clean environment: loopback on port `port`, a temp SQLite file,
/// the test HS256 secret, then `env` on top (an empty value is passed as set-but-empty).
pub(crate) fn gateway(port: u16, db: &TempFile, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pam-gateway"));
    command
        .env_clear()
        .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", format!("sqlite://{}", db.0.display()))
        .env("SUPABASE_JWT_SECRET", TEST_SECRET)
        .env("PAM_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

pub(crate) fn temp_db() -> TempFile {
    TempFile(std::env::temp_dir().join(format!("pam-settings-{}.db", uuid::Uuid::new_v4().simple())))
}

/// Runs the binary with `env` and expects it to refuse: its exit status and stderr.
pub(crate) fn refused_start(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let db = temp_db();
    let child = gateway(0, &db, env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway started with {env:?} instead of refusing");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

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
    ];
    for (name, env) in cases {
        let (status, stderr) = refused_start(env);
        assert!(!status.success(), "{name}: exit {status}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: one line, got {stderr:?}");
        assert!(lines[0].starts_with(&format!("pam-gateway: {name}")), "{name} is named first: {:?}", lines[0]);
    }
}

#[tokio::test]
async fn an_unreachable_redis_at_startup_is_logged_once_loudly_and_shown_in_health() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
