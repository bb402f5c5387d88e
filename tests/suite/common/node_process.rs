//! A gateway node as a real process (the binary), for tests that kill it (SIGKILL) or pause it
//! (SIGSTOP): its own port, outbox journal and JSON log, the database and Redis it is given, a
//! short registration TTL and the admin token; and signals for any process (a test's Redis).

use std::fs::File;
use std::process::{Command, Stdio};

use super::nodes::TTL_MS;
use super::process::{KillOnDrop, free_port, wait_live};
use super::{ADMIN_TOKEN, TEST_SECRET, TempFile, WsClient, token_for};

/// One node process, killed when dropped.
pub struct NodeProcess {
    child: KillOnDrop,
    pub id: String,
    pub port: u16,
    files: [TempFile; 2],
}

/// Sends signal `name` (`-STOP`, `-CONT`, `-KILL`) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([name, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {name} {pid}");
}

impl NodeProcess {
    /// Starts node `id` on `database_url` and `redis_url` under `prefix` and waits until it is live.
    pub async fn start(id: &str, database_url: &str, redis_url: &str, prefix: &str) -> Self {
        Self::start_with(id, database_url, redis_url, prefix, &[]).await
    }

    /// [`NodeProcess::start`] with `env` on top (e.g. a model API for it to call).
    pub async fn start_with(id: &str, database_url: &str, redis_url: &str, prefix: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let files = ["outbox", "log"].map(|what| TempFile(std::env::temp_dir().join(format!("pam-{id}-{what}-{}", uuid::Uuid::new_v4()))));
        let log = File::create(&files[1].0).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pam-gateway"));
        command
            .env_clear()
            .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("PAM_OUTBOX_JOURNAL", files[0].0.display().to_string())
            .env("SUPABASE_JWT_SECRET", TEST_SECRET)
            .env("PAM_DEV_AUTH", "false")
            .env("PAM_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("REDIS_URL", redis_url)
            .env("PAM_CACHE_PREFIX", prefix)
            .env("PAM_NODE_ID", id)
            .env("PAM_NODE_TTL_MS", TTL_MS.to_string())
            .env("PAM_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command.spawn().expect("the binary starts");
        let mut node = NodeProcess { child: KillOnDrop(child), id: id.to_string(), port, files };
        wait_live(&mut node.child.0, port, &node.files[1].0).await;
        node
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A legacy socket of `user` on this node, past its welcome.
    pub async fn connect_user(&self, user: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/api/v1/pam/ws/{user}?token={}", self.port, token_for(user));
        let mut client = WsClient::connect(&url).await;
        let welcome = client.recv_json().await;
        assert_eq!(welcome["type"], "connection", "{welcome}");
        client
    }

    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// The process's exit status, if it exits within `limit` (after a SIGTERM: its drain).
    pub async fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        super::process::wait_exit(&mut self.child.0, limit).await
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// `GET` an admin route; the JSON body.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let response = super::rest::client().get(self.http(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("the node answers");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.http("/metrics")).await.unwrap().text().await.unwrap()
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.files[1].0).unwrap_or_default()
    }
}
