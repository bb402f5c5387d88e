//! The test Redis: its URL, a client that fails with how to start it, a key prefix per test, and
//! a `redis-server` of a test's own for tests that stop or hang Redis.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config};

use super::wait_until_within;

/// The shared test Redis (`PAM_TEST_REDIS_URL`, default 127.0.0.1:6379).
pub fn redis_url() -> String {
    std::env::var("PAM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A client of the test Redis, or a failure that says Redis is down and how to start it.
pub async fn redis() -> fred::prelude::Client {
    let url = redis_url();
    let client = Builder::from_config(Config::from_url(&url).unwrap()).build().unwrap();
    client.init().await.unwrap_or_else(|e| {
        panic!(
            "Redis is required for this test and is not reachable at {url} ({e}).\n\
             Start it with ./scripts/test.sh (by hand: `redis-server --daemonize yes`) or set PAM_TEST_REDIS_URL."
        )
    });
    client
}

/// A Redis key prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("pamtest{}", uuid::Uuid::new_v4().simple())
}

/// A `redis-server` of the test's own on a spare loopback port (no persistence), killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = super::process::free_port();
        let mut server = RedisServer { child: None, port };
        server.restart().await;
        server
    }

    /// The server's process id (to stop it with SIGSTOP: a hanging Redis).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install it, e.g. `apt-get install redis-server`, for the scale-out tests)");
        self.child = Some(child);
        let port = self.port;
        wait_until_within(Duration::from_secs(10), "redis-server accepts connections", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
    }

    /// Kills it (SIGKILL: Redis is gone at once, like a crashed host).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
