//! The real `pam-gateway` binary in a test: a spare port for it, a child killed if the test ends
//! first, and waits for the process to be live or to exit (failing with its log).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{TEST_SECRET, TempFile, WAIT, poll, poll_until};

/// A loopback port nothing listens on (the OS picked it; the probe is closed again).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child on drop unless it already exited (a failing test must not leave it running).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits (up to 30 s: a cold start on a loaded machine) until the gateway on `port` answers
/// `GET /health/live`; fails with its log at `log` if it exits first or never answers.
pub async fn wait_live(child: &mut Child, port: u16, log: &Path) {
    // reqwest is built without a default rustls provider; the gateway installs ring, so do we.
    rustls::crypto::ring::default_provider().install_default().ok();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/health/live");
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    poll_until(Duration::from_secs(30), Duration::from_millis(50), "the gateway answers /health/live", async || {
        if client.get(&url).send().await.is_ok_and(|response| response.status() == 200) {
            return Ok(());
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the gateway exited ({status}) before it was live; log:\n{}", read_log());
        }
        Err(format!("log:\n{}", read_log()))
    })
    .await;
}

/// The child's exit status, if it exits within `limit`.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll(limit, Duration::from_millis(25), async || child.try_wait().unwrap().ok_or_else(String::new)).await.ok()
}

/// The gateway binary with a clean environment: loopback on port `port`, a temp SQLite file,
/// the test HS256 secret, then `env` on top (an empty value is passed as set-but-empty).
pub fn gateway(port: u16, db: &TempFile, env: &[(&str, &str)]) -> Command {
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

pub fn temp_db() -> TempFile {
    TempFile(std::env::temp_dir().join(format!("pam-settings-{}.db", uuid::Uuid::new_v4().simple())))
}

/// Runs the binary with `env` and expects it to refuse: its exit status and stderr.
pub fn refused_start(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let db = temp_db();
    let child = gateway(0, &db, env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway started with {env:?} instead of refusing");
        // Why a hand-made poll: this runs in a plain #[test] (no runtime for `poll`).
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}
