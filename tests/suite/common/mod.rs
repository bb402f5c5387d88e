//! Shared test harness: `spawn_app()` starts the real gateway on port 0 (SQLite in a temp file,
//! builtin assistant, HS256 test secret) and `WsClient` speaks real WebSocket to it.
//!
//! Every helper more than one test file uses lives here (test files import only `common`): the
//! databases (`db`), Redis (`redis`; one that speaks only TLS: `redis_tls`), several nodes (`nodes`; as real processes: `node_process`),
//! pushes and timers (`push`), auth and JWKS (`auth`), the real binary (`process`), captured logs
//! (`logs`), a fake OTLP/HTTP trace collector (`otlp`), a real PgBouncer in front of the test Postgres (`pgbouncer`), the deploy's alert rules run by promtool (`prometheus`), a throwaway Postgres cluster
//! (`cluster`), fake models (`fake_llm`, `v2`, `turns`), raw frames (`raw_ws`), REST (`rest`), and
//! the one way to wait for something to become true (`wait`).
#![allow(dead_code, unreachable_pub)]

pub mod auth;
pub mod cluster;
pub mod db;
pub mod fake_llm;
pub mod logs;
pub mod node_process;
pub mod nodes;
pub mod otlp;
pub mod pgbouncer;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod push;
pub mod raw_ws;
pub mod redis;
pub mod redis_tls;
pub mod rest;
pub mod turns;
pub mod v2;
pub mod wait;

pub use wait::{poll, poll_until, wait_until, wait_until_within};

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header, encode};
use pam_gateway::{Application, Overrides, Settings};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const TEST_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";
pub const USER: &str = "11111111-1111-4111-8111-111111111111";
pub const OTHER_USER: &str = "22222222-2222-4222-8222-222222222222";
/// The admin bearer token of every test gateway that has one (`PAM_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
/// How long any single expectation may wait before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub db: TempFile,
}

/// A temp file removed on drop (with SQLite's -wal/-shm siblings).
pub struct TempFile(pub std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", OUTBOX_JOURNAL_SUFFIX, DEV_KEY_SUFFIX] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// Dev auth keeps its signing key beside the SQLite file: `{db}{DEV_KEY_SUFFIX}`.
pub const DEV_KEY_SUFFIX: &str = ".dev-key";

/// The test's outbox journal sits beside its database file: `{db}{OUTBOX_JOURNAL_SUFFIX}`.
pub const OUTBOX_JOURNAL_SUFFIX: &str = ".outbox.jsonl";

/// Settings for tests: port 0, a fresh SQLite file (and outbox journal beside it), HS256 test
/// secret, no dev auth.
pub fn test_settings() -> (Settings, TempFile) {
    let path = std::env::temp_dir().join(format!("pam-test-{}.db", uuid::Uuid::new_v4().simple()));
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.database_url = format!("sqlite://{}", path.display());
    settings.outbox_journal = format!("{}{OUTBOX_JOURNAL_SUFFIX}", path.display());
    settings.redis_url = None;
    settings.supabase_jwt_secret = Some(TEST_SECRET.into());
    settings.supabase_url = None;
    settings.jwks_url = None;
    settings.jwt_issuer = None;
    settings.dev_auth = Some(false);
    settings.shutdown_grace_ms = 2_000;
    // Many tests fail auth on purpose from 127.0.0.1; the throttle has its own test.
    settings.auth_failures_per_minute = 0;
    // Tests never reach a real model, whatever the developer's environment holds.
    (settings.anthropic_api_key, settings.openai_api_key) = (None, None);
    (settings, TempFile(path))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Overrides::default()).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings), overrides: Overrides) -> TestApp {
    let (mut settings, db) = test_settings();
    adjust(&mut settings);
    run_app(build_app(settings, overrides).await, db)
}

/// Builds the gateway; when the Postgres its settings name does not answer, the failure says how
/// to start it.
pub async fn build_app(settings: Settings, overrides: Overrides) -> Application {
    let database = settings.database_url.clone();
    match Application::build_with(settings, overrides).await {
        Ok(app) => app,
        Err(error) => {
            let unreachable =
                database.starts_with("postgres") && <sqlx::PgConnection as sqlx::Connection>::connect(&database).await.is_err();
            let hint = if unreachable { format!("\n(Postgres does not answer) {}", db::START_POSTGRES) } else { String::new() };
            panic!("the gateway builds: {error:#}{hint}")
        }
    }
}

/// Runs a built gateway until `TestApp::shutdown` (or the drop of its stop sender).
pub fn run_app(app: Application, db: TempFile) -> TestApp {
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp { addr, stop: Some(stop), server, db }
}

impl TestApp {
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, user: &str, token: Option<&str>) -> String {
        match token {
            Some(token) => format!("ws://{}/api/v1/pam/ws/{user}?token={token}", self.addr),
            None => format!("ws://{}/api/v1/pam/ws/{user}", self.addr),
        }
    }

    /// Connects as `USER` with a valid token and reads the welcome frame.
    pub async fn connect_ready(&self) -> WsClient {
        connect_user(self, USER).await
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.http("/metrics")).await.unwrap().text().await.unwrap()
    }

    /// Triggers graceful shutdown and waits for `run_until_stopped` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.server).await.expect("stops in time").unwrap().unwrap();
    }
}

/// A legacy socket of `user` on `app`, past its welcome.
pub async fn connect_user(app: &TestApp, user: &str) -> WsClient {
    let mut client = WsClient::connect(&app.ws_url(user, Some(&token_for(user)))).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection", "{welcome}");
    client
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Claims of a normal signed-in Supabase user.
pub fn user_claims(user: &str) -> Value {
    json!({
        "sub": user, "aud": "authenticated", "role": "authenticated",
        "iss": "https://test.supabase.co/auth/v1", "exp": unix_now() + 3600, "iat": unix_now(),
        "email": "t@example.com", "session_id": "s", "aal": "aal1", "amr": [], "app_metadata": {}, "user_metadata": {}, "is_anonymous": false
    })
}

pub fn sign_hs256(claims: &Value, secret: &str) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

pub fn token_for(user: &str) -> String {
    sign_hs256(&user_claims(user), TEST_SECRET)
}

/// The value of one sample line in Prometheus text, e.g. `metric(&text, "pam_ws_closed_total{code=\"1008\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a socket ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = connect_async(url).await.expect("the upgrade succeeds");
        Self { ws }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.ws.send(Message::Text(value.to_string().into())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_string().into())).await.unwrap();
    }

    /// The next JSON text frame, skipping RFC 6455 control frames.
    pub async fn recv_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame arrives in time");
            match message {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("server frames are JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next JSON frame whose `type` is not a server `ping` (answering it like the client does).
    pub async fn recv_non_ping(&mut self) -> Value {
        loop {
            let frame = self.recv_json().await;
            if frame["type"] != "ping" {
                return frame;
            }
        }
    }

    /// Reads until the close frame; returns it and every JSON frame seen before it.
    pub async fn recv_close(&mut self) -> (Closed, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.expect("the close arrives in time");
            match message {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(Some(frame)))) => {
                    let code: u16 = frame.code.into();
                    return (Closed { code, reason: frame.reason.to_string() }, frames);
                }
                Some(Ok(Message::Close(None))) => return (Closed { code: 1005, reason: String::new() }, frames),
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket failed before a close frame (1006): {error}; frames: {frames:?}"),
                None => panic!("socket ended without a close frame (1006); frames: {frames:?}"),
            }
        }
    }
}
