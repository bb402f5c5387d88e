//! Several gateway nodes in one test, sharing one Redis (each test its own `PAM_CACHE_PREFIX`, or
//! its own `redis-server` when it stops Redis) and each with its own SQLite file: what "N nodes
//! behave as one" promises, proved over real sockets and REST.

mod liveness;
mod push;
mod redis_outage;
mod resume;
mod shared_limits;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use pam_actors::PushBus;
use pam_gateway::{Application, Overrides, Settings};
use serde_json::Value;

pub(crate) const ADMIN_TOKEN: &str = "admin-token-for-the-scale-out-tests";

/// A Redis key prefix no other test uses.
pub(crate) fn fresh_prefix() -> String {
    format!("pamtest{}", uuid::Uuid::new_v4().simple())
}

/// One gateway node: the app, its push bus and its id.
pub(crate) struct Node {
    pub(crate) app: TestApp,
    pub(crate) push: Arc<dyn PushBus>,
    pub(crate) id: String,
}

/// Starts a node named `id` on `redis_url` under `prefix`, with the admin token set.
pub(crate) async fn spawn_node(id: &str, redis_url: &str, prefix: &str, adjust: impl FnOnce(&mut Settings), overrides: Overrides) -> Node {
    spawn_with(id, Some(redis_url), prefix, adjust, overrides).await
}

/// Like `spawn_node`; `None` runs it without Redis (the single-node default).
pub(crate) async fn spawn_with(
    id: &str,
    redis_url: Option<&str>,
    prefix: &str,
    adjust: impl FnOnce(&mut Settings),
    overrides: Overrides,
) -> Node {
    let (mut settings, db) = test_settings();
    settings.node_id = Some(id.to_string());
    settings.redis_url = redis_url.map(str::to_string);
    settings.cache_prefix = prefix.to_string();
    settings.admin_token = Some(ADMIN_TOKEN.to_string());
    adjust(&mut settings);
    let app = Application::build_with(settings, overrides).await.expect("the gateway builds");
    let (addr, push) = (app.local_addr(), app.push_bus());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Node { app: TestApp { addr, stop: Some(stop), server, db }, push, id: id.to_string() }
}

/// `GET` an admin route; the JSON body.
pub(crate) async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = rest::client().get(app.http(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("the gateway answers");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The ids `GET /api/v1/monitoring/nodes` lists.
pub(crate) async fn listed_nodes(app: &TestApp) -> Vec<String> {
    let body = admin_get(app, "/api/v1/monitoring/nodes").await;
    body["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

/// `GET /api/v1/pam/presence/{user}`.
pub(crate) async fn presence(app: &TestApp, user: &str) -> Value {
    admin_get(app, &format!("/api/v1/pam/presence/{user}")).await
}

/// A legacy socket of `user` on `app`, past its welcome.
pub(crate) async fn connect_user(app: &TestApp, user: &str) -> WsClient {
    let mut client = WsClient::connect(&app.ws_url(user, Some(&token_for(user)))).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection", "{welcome}");
    client
}

/// A `redis-server` of the test's own on a spare loopback port (no persistence), killed on drop.
pub(crate) struct RedisServer {
    child: Option<Child>,
    pub(crate) port: u16,
}

impl RedisServer {
    pub(crate) async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { child: None, port };
        server.restart().await;
        server
    }

    /// The server's process id (to stop it with SIGSTOP: a hanging Redis).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub(crate) async fn restart(&mut self) {
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
    pub(crate) fn stop(&mut self) {
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
