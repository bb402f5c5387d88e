//! Shutdown and startup of the real `pam-gateway` binary: SIGTERM drains every socket with an
//! error frame and close 1012 and exits 0 within the grace period; readiness and new upgrades
//! are refused while draining, and the port is free for a new process as soon as it starts; a non-loopback bind without JWT settings refuses to start;
//! a turn the drain abandons is still on another node's `/metrics` once the process is gone. One
//! test runs in-process (the same `run_until_stopped` path the binary's SIGTERM takes) to race
//! a connect storm against the start of the drain.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::common::db::{Backend, test_db};
use crate::common::fake_llm::{FakeLlm, Script, TEST_ANTHROPIC_KEY};
use crate::common::node_process::NodeProcess;
use crate::common::process::{free_port, wait_exit, wait_live};
use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::v2::{connect_v2, frames_until};
use crate::common::*;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const GRACE_MS: u64 = 3_000;

/// A running gateway process, killed (by its pid) if a test fails before it exits.
struct Gateway {
    child: Child,
    port: u16,
    log: TempFile,
    _db: TempFile,
}

/// An HTTP client (reqwest is built without a default rustls provider).
fn http_client(timeout: Duration) -> reqwest::Client {
    rustls::crypto::ring::default_provider().install_default().ok();
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pam-shutdown-{what}-{}", uuid::Uuid::new_v4().simple()))
}

/// The binary with a clean auth environment, a fresh SQLite file and output to a log file.
fn command(listen: &str, db: &TempFile, log: &TempFile) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pam-gateway"));
    for var in ["SUPABASE_JWT_SECRET", "SUPABASE_URL", "PAM_JWKS_URL", "PAM_JWT_ISSUER", "PAM_DEV_AUTH", "REDIS_URL", "PAM_LOG_FORMAT"] {
        command.env_remove(var);
    }
    let out = File::create(&log.0).unwrap();
    command
        .env("PAM_LISTEN", listen)
        .env("DATABASE_URL", format!("sqlite://{}", db.0.display()))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    command
}

impl Gateway {
    async fn start() -> Gateway {
        Gateway::start_with(&[]).await
    }

    /// Started with `env` on top of the usual environment.
    async fn start_with(env: &[(&str, &str)]) -> Gateway {
        let port = free_port();
        let (db, log) = (TempFile(temp_path("db")), TempFile(temp_path("log")));
        let child = command(&format!("127.0.0.1:{port}"), &db, &log)
            .env("SUPABASE_JWT_SECRET", TEST_SECRET)
            .env("PAM_DEV_AUTH", "false")
            .env("PAM_SHUTDOWN_GRACE_MS", GRACE_MS.to_string())
            .envs(env.iter().copied())
            .spawn()
            .expect("the binary starts");
        let mut gateway = Gateway { child, port, log, _db: db };
        gateway.wait_live().await;
        gateway
    }

    fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/api/v1/pam/ws/{USER}?token={token}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log.0).unwrap_or_default()
    }

    async fn wait_live(&mut self) {
        wait_live(&mut self.child, self.port, &self.log.0).await;
    }

    async fn connect_ready(&self) -> WsClient {
        let mut client = WsClient::connect(&self.ws_url(&token_for(USER))).await;
        let welcome = client.recv_json().await;
        assert_eq!(welcome["type"], "connection", "{welcome}");
        client
    }

    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM worked");
    }

    /// The exit status, if the process ends within `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, limit).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn sigterm_closes_every_socket_with_service_restart_and_1012_then_exits_zero() {
    let mut gateway = Gateway::start().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(gateway.connect_ready().await);
    }
    let signalled = Instant::now();
    gateway.sigterm();
    for (n, client) in clients.iter_mut().enumerate() {
        let (closed, frames) = client.recv_close().await;
        let context = format!("socket {n}: {closed:?}; frames: {frames:?}; log:\n{}", gateway.log());
        assert_eq!(closed.code, 1012, "{context}");
        assert!(!closed.reason.is_empty(), "{context}");
        let error = frames.iter().rev().find(|f| f["type"] != "ping").unwrap_or_else(|| panic!("an error frame precedes 1012; {context}"));
        assert_eq!(error["type"], "error", "{context}");
        assert_eq!(error["error_code"], "SERVICE_RESTART", "{context}");
    }
    let limit = Duration::from_millis(GRACE_MS + 2_000);
    let status = gateway.wait_exit(limit.saturating_sub(signalled.elapsed())).await;
    let log = gateway.log();
    let status = status.unwrap_or_else(|| panic!("the gateway did not exit within grace + 2 s; log:\n{log}"));
    assert!(status.success(), "the gateway exits 0 after a drain, got {status}; log:\n{log}");
}

#[tokio::test]
async fn readiness_and_new_upgrades_are_refused_once_sigterm_starts_the_drain() {
    let mut gateway = Gateway::start().await;
    let mut client = gateway.connect_ready().await;
    let http = http_client(Duration::from_secs(2));
    let ready = http.get(gateway.http("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "ready before the signal; log:\n{}", gateway.log());
    gateway.sigterm();
    // Until the signal is handled readiness may still be 200; after that 503, or nothing listens.
    let readiness = poll_until(Duration::from_secs(5), Duration::from_millis(5), "readiness is no longer 200 after SIGTERM", async || {
        match http.get(gateway.http("/health/ready")).send().await {
            Ok(response) if response.status() == 200 => Err(format!("still 200; log:\n{}", gateway.log())),
            Ok(response) => Ok(format!("HTTP {}", response.status().as_u16())),
            Err(_) => Ok("refused".to_string()),
        }
    })
    .await;
    assert!(readiness == "HTTP 503" || readiness == "refused", "readiness while draining: {readiness}; log:\n{}", gateway.log());
    match connect_async(gateway.ws_url(&token_for(USER))).await {
        Ok((_, response)) => panic!("a new upgrade was accepted during the drain ({}); log:\n{}", response.status(), gateway.log()),
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503, "a refused upgrade is 503; log:\n{}", gateway.log()),
        Err(_) => {} // the listener is already gone
    }
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1012, "{closed:?}; frames: {frames:?}");
    let status = gateway.wait_exit(Duration::from_millis(GRACE_MS + 2_000)).await;
    let status = status.unwrap_or_else(|| panic!("the gateway did not exit in time; log:\n{}", gateway.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", gateway.log());
}

#[tokio::test]
async fn the_port_is_free_for_a_new_process_as_soon_as_the_drain_starts() {
    // A chat the model takes its time over keeps the drain going (its legacy socket gets the
    // answer before 1012) while the test binds the port.
    let fake = FakeLlm::start(Script { first_token_delay: Duration::from_millis(1_500), ..Script::answer("the slow answer") }).await;
    let url = fake.url();
    let env = [("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY), ("ANTHROPIC_BASE_URL", url.as_str()), ("PAM_ANTHROPIC_FAST_MODEL", "fake-fast")];
    let mut gateway = Gateway::start_with(&env).await;
    let mut client = gateway.connect_ready().await;
    client.send_json(serde_json::json!({"type": "chat", "message": "hello"})).await;
    wait_until("the model is answering the chat", || async { fake.calls() == 1 }).await;
    gateway.sigterm();
    let signalled = Instant::now();
    let address = format!("127.0.0.1:{}", gateway.port);
    let successor =
        poll_until(Duration::from_secs(1), Duration::from_millis(10), "the port can be bound again after SIGTERM", async || {
            std::net::TcpListener::bind(&address).map_err(|error| format!("{error}; log:\n{}", gateway.log()))
        })
        .await;
    let bound_after = signalled.elapsed();
    assert!(gateway.child.try_wait().unwrap().is_none(), "the first gateway is still draining; log:\n{}", gateway.log());
    // New connections reach the successor, not the draining gateway.
    let _new_client = std::net::TcpStream::connect(&address).expect("a client connects to the port");
    successor.set_nonblocking(true).unwrap();
    poll_until(Duration::from_secs(1), Duration::from_millis(10), "the successor accepts the new connection", async || {
        successor.accept().map(drop).map_err(|error| error.to_string())
    })
    .await;
    // Meanwhile the draining gateway still answers its running chat, then closes with 1012, then exits 0.
    let (closed, frames) = client.recv_close().await;
    let context = format!("{closed:?}; frames: {frames:?}; bound {bound_after:?} after SIGTERM; log:\n{}", gateway.log());
    let answer = frames.iter().find(|f| f["type"] == "chat_response").unwrap_or_else(|| panic!("the chat is answered first; {context}"));
    assert_eq!(answer["message"], "the slow answer", "{context}");
    assert_eq!(closed.code, 1012, "{context}");
    let status = gateway.wait_exit(Duration::from_millis(GRACE_MS + 2_000)).await;
    let status = status.unwrap_or_else(|| panic!("the gateway did not exit in time; log:\n{}", gateway.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", gateway.log());
}

#[tokio::test]
async fn a_non_loopback_bind_without_jwt_settings_refuses_to_start_with_one_line() {
    let port = free_port();
    let (db, log) = (TempFile(temp_path("db")), TempFile(temp_path("log")));
    // stdout and stderr are separate here: the refusal must be on stderr.
    let stderr = TempFile(temp_path("stderr"));
    let mut child =
        command(&format!("0.0.0.0:{port}"), &db, &log).stderr(File::create(&stderr.0).unwrap()).spawn().expect("the binary starts");
    let Some(status) = wait_exit(&mut child, Duration::from_secs(10)).await else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the gateway kept running on 0.0.0.0 without JWT settings; stderr:\n{}",
            std::fs::read_to_string(&stderr.0).unwrap_or_default()
        );
    };
    let errors = std::fs::read_to_string(&stderr.0).unwrap();
    assert!(!status.success(), "exit status {status}; stderr:\n{errors}");
    let refusals: Vec<_> = errors.lines().filter(|line| line.starts_with("pam-gateway: refusing to start")).collect();
    assert_eq!(refusals.len(), 1, "exactly one refusal line; stderr:\n{errors}");
    assert!(refusals[0].contains("JWT") || refusals[0].contains("SUPABASE"), "the line names what is missing: {}", refusals[0]);
}

/// How one storm socket ended: close code and reason (1006 when there was no close frame).
async fn end_of(mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => return (u16::from(frame.code), frame.reason.to_string()),
            Ok(Some(Ok(Message::Close(None)))) => return (1005, String::new()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return (1006, String::new()),
            Err(_) => return (0, "no close within WAIT".into()),
        }
    }
}

/// Opens sockets (each as a fresh user, to stay under the per-user cap) until an upgrade fails.
async fn connect_storm(addr: std::net::SocketAddr) -> Vec<(u16, String)> {
    let mut sockets = Vec::new();
    loop {
        let user = uuid::Uuid::new_v4().to_string();
        let url = format!("ws://{addr}/api/v1/pam/ws/{user}?token={}", token_for(&user));
        match connect_async(&url).await {
            Ok((ws, _)) => sockets.push(tokio::spawn(end_of(ws))),
            Err(_) => break,
        }
    }
    let mut ends = Vec::new();
    for socket in sockets {
        ends.push(socket.await.unwrap());
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_socket_upgraded_while_the_drain_starts_still_gets_1012() {
    // The race is narrow (an upgrade accepted just before the drain, its actor opened just after),
    // so it is tried a number of times; each round takes a fraction of a second.
    for round in 0..20 {
        let app = spawn_app_with(|s| s.shutdown_grace_ms = 1_000, Default::default()).await;
        let storms: Vec<_> = (0..8).map(|_| tokio::spawn(connect_storm(app.addr))).collect();
        // Why a fixed pause: the drain must start in the middle of the storm (the race under test),
        // not after a state the test could wait for.
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.shutdown().await;
        let mut ends = Vec::new();
        for storm in storms {
            ends.extend(storm.await.unwrap());
        }
        let wrong: Vec<_> = ends.iter().filter(|(code, _)| *code != 1012).collect();
        assert!(wrong.is_empty(), "round {round}: of {} sockets open at the drain, these did not get 1012: {wrong:?}", ends.len());
    }
}

/// `pam_turns_abandoned_recent{cause}` on a node's `/metrics` (its scrape reads the database).
async fn abandoned_on(node: &NodeProcess, cause: &str) -> Option<f64> {
    metric(&node.metrics().await, &format!("pam_turns_abandoned_recent{{cause=\"{cause}\"}}"))
}

/// The `PamTurnsAbandoned` drill: a node process with a 2 s grace is drained while a turn waits for
/// a model that never answers. The process counts the turn moments before it exits — no scrape
/// gets it — so the count that Prometheus sees comes from the database, on the node that is left,
/// within one 15 s scrape of the drain's end, and the deployed alert rule fires on it.
#[tokio::test]
async fn a_turn_abandoned_by_a_drain_shows_on_another_nodes_metrics_after_the_process_is_gone() {
    let _redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let model = FakeLlm::start(Script::stall()).await;
    let model_url = model.url();
    let env = [("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY), ("ANTHROPIC_BASE_URL", model_url.as_str()), ("PAM_SHUTDOWN_GRACE_MS", "2000")];
    let mut a = NodeProcess::start_with("node-a", &db.url, &redis_url(), &prefix, &env).await;
    let b = NodeProcess::start("node-b", &db.url, &redis_url(), &prefix).await;
    assert_eq!(abandoned_on(&b, "shutdown").await, Some(0.0), "exported at zero before anything is abandoned");

    let user = uuid::Uuid::new_v4().to_string();
    let (mut socket, _) = connect_v2(&format!("ws://127.0.0.1:{}/api/v2/pam/ws?token={}", a.port, token_for(&user))).await;
    assert_eq!(socket.recv_non_ping().await["type"], "welcome");
    socket.send_json(serde_json::json!({"type":"chat","id":"drained-1","message":"tell me about the route"})).await;
    frames_until(&mut socket, "ack").await;
    wait_until("the turn waits for the model", || async { model.calls() == 1 }).await;

    a.signal("-TERM");
    let drained = Instant::now();
    let status = a.wait_exit(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("node-a did not exit; log:\n{}", a.log()));
    assert!(status.success(), "{status}; log:\n{}", a.log());
    assert!(a.log().contains("recorded as unanswered"), "the grace ended with the turn running; log:\n{}", a.log());

    // What a 15 s scrape of the node that is left sees.
    let seen =
        poll_until(Duration::from_secs(15), Duration::from_millis(250), "node-b exports the abandoned turn", async || match abandoned_on(
            &b, "shutdown",
        )
        .await
        {
            Some(n) if n >= 1.0 => Ok(n),
            other => Err(format!("{other:?}")),
        })
        .await;
    assert_eq!(seen, 1.0);
    assert!(drained.elapsed() < Duration::from_secs(2 + 15), "seen {:?} after SIGTERM", drained.elapsed());
    assert_eq!(abandoned_on(&b, "crash").await, Some(0.0));
    assert_eq!(metric(&b.metrics().await, "pam_turns_abandoned_total"), Some(0.0), "node-b abandoned nothing itself");

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT client_msg_id, node, cause FROM pam_abandoned_turns").fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [("drained-1".to_string(), "node-a".to_string(), "shutdown".to_string())]);

    let series = [("pam_turns_abandoned_recent{cause=\"shutdown\",instance=\"node-b\"}".to_string(), seen)];
    assert!(crate::common::prometheus::alert_fires("PamTurnsAbandoned", &series), "the deployed rule fires on the scraped value");
}
