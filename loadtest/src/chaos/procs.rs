//! The processes `chaos` owns: its own `redis-server` (never the shared one: it is paused and
//! killed), its gateway nodes (release binary, fixed `PAM_NODE_ID`s and ports, so a killed node
//! comes back under the same id and address), its Postgres database, and the signals it sends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port free on loopback right now.
pub(super) fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("free port: {e}"))
}

/// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to `pid`.
pub(super) fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().map_err(|e| format!("kill: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("kill {signal} {pid} failed ({status})"))
}

/// A child process killed (SIGKILL) when dropped.
pub(super) struct Owned(Option<Child>);

impl Owned {
    pub(super) fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// SIGKILL (after a SIGCONT, should it be stopped) and reap.
    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = signal(child.id(), "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The scenario's Redis: `redis-server` on a fixed port without persistence, so a kill loses
/// everything (streams, idempotency claims, presence), as a crashed cache does.
pub(super) struct Redis {
    pub(super) port: u16,
    bin: PathBuf,
    pub(super) process: Owned,
}

impl Redis {
    pub(super) async fn start(bin: &Path) -> Result<Self, String> {
        let mut redis = Redis { port: free_port()?, bin: bin.to_path_buf(), process: Owned(None) };
        redis.restart().await?;
        Ok(redis)
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub(super) async fn restart(&mut self) -> Result<(), String> {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.process = Owned(Some(child));
        wait_for_port(self.port, Duration::from_secs(10)).await.map_err(|e| format!("redis-server: {e}"))
    }
}

/// Waits until something accepts TCP connections on `port`.
async fn wait_for_port(port: u16, within: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("nothing listens on port {port} after {} s", within.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// What every node is started with.
pub(super) struct NodeEnv {
    pub(super) bin: PathBuf,
    pub(super) database_url: String,
    pub(super) redis_url: String,
    pub(super) prefix: String,
    pub(super) secret: String,
    pub(super) admin_token: String,
    pub(super) model_url: String,
    pub(super) dir: PathBuf,
}

/// One gateway node: its id and port stay across restarts.
pub(super) struct Node {
    pub(super) id: String,
    pub(super) port: u16,
    pub(super) process: Owned,
    pub(super) starts: u32,
}

impl Node {
    pub(super) fn new(id: String) -> Result<Self, String> {
        Ok(Node { id, port: free_port()?, process: Owned(None), starts: 0 })
    }

    pub(super) fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the binary and waits for `/health/live`; its log is appended to
    /// `{dir}/{id}.log`.
    pub(super) async fn start(&mut self, env: &NodeEnv) -> Result<(), String> {
        let log_path = env.dir.join(format!("{}.log", self.id));
        let log = File::options().create(true).append(true).open(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&env.bin)
            .env("PAM_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("DATABASE_URL", &env.database_url)
            .env("REDIS_URL", &env.redis_url)
            .env("PAM_CACHE_PREFIX", &env.prefix)
            .env("PAM_NODE_ID", &self.id)
            .env("PAM_OUTBOX_JOURNAL", env.dir.join(format!("{}-outbox.jsonl", self.id)))
            .env("SUPABASE_JWT_SECRET", &env.secret)
            .env("PAM_ADMIN_TOKEN", &env.admin_token)
            .env("PAM_DEV_AUTH", "false")
            .env("PAM_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("OPENAI_API_KEY", "chaos")
            .env("OPENAI_BASE_URL", &env.model_url)
            .env("PAM_LOG_FORMAT", "json")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,pam_gateway=info".into()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env.bin.display()))?;
        self.process = Owned(Some(child));
        self.starts += 1;
        let http = pam_loadtest::target::http_client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(format!("{}/health/live", self.http())).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{} not live within 60 s (log {})", self.id, log_path.display()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Creates database `name` on the server of `server_url` (`postgres://…/postgres`) when missing;
/// the nodes' migrations build the schema.
pub(super) async fn ensure_database(server_url: &str, name: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url).await.map_err(|e| format!("postgres {server_url}: {e}"))?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| format!("postgres: {e}"))?;
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("create database: {e}"))?;
    }
    Ok(())
}
