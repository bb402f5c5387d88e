//! The server under test: either one already running (`--url`, optionally `--pid` for memory), or
//! a child process the runner starts — the gateway binary on port 0 with a fresh JWT secret and a
//! throwaway SQLite database, or this crate's own bare echo server. Children are killed on drop.
//! Also the plain-HTTP client for a server's REST routes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `--url`: the gateway's WebSocket base URL. Only `ws://` works (the runner speaks plain
/// WebSocket); an `http://`, `https://` or `wss://` URL, or one without a scheme, is refused with
/// a message naming `ws://` (clap then exits with 2, a usage error). A trailing `/` is dropped.
pub fn parse_ws_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(format!("'{raw}' has no scheme; give the gateway's WebSocket URL, e.g. ws://127.0.0.1:8080"));
    };
    if !scheme.eq_ignore_ascii_case("ws") {
        let hint = match scheme.to_ascii_lowercase().as_str() {
            "http" => format!("use ws://{rest} — the runner connects over WebSocket, not HTTP"),
            "https" | "wss" => "the runner has no TLS; point it at a plain ws:// listener (e.g. ws://127.0.0.1:8080)".to_string(),
            _ => "e.g. ws://127.0.0.1:8080".to_string(),
        };
        return Err(format!("--url must start with ws://, not {scheme}://; {hint}"));
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err("--url needs a host after ws://, e.g. ws://127.0.0.1:8080".into());
    }
    Ok(format!("ws://{rest}"))
}

/// A started server: its ws base URL and pid.
pub struct Server {
    pub url: String,
    pub pid: u32,
    child: Child,
    _dir: Option<TempDir>,
}

impl Server {
    /// Starts `bin` (pam-gateway) on 127.0.0.1:0 with `secret` as `SUPABASE_JWT_SECRET`.
    pub async fn gateway(bin: &Path, secret: &str) -> Result<Self, String> {
        let dir = TempDir::new()?;
        let mut command = Command::new(bin);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PAM_LISTEN", "127.0.0.1:0")
            .env("SUPABASE_JWT_SECRET", secret)
            .env("DATABASE_URL", format!("sqlite://{}/loadtest.db", dir.0.display()))
            .env("PAM_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,pam_gateway=info");
        Self::start(command, "pam-gateway listening", Some(dir)).await
    }

    /// Starts the running binary's `echo-server` subcommand (pam-loadtest's).
    pub async fn echo() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let mut command = Command::new(exe);
        command.args(["echo-server", "--listen", "127.0.0.1:0"]);
        Self::start(command, "echo-server listening", None).await
    }

    /// Spawns, then reads stderr (on a thread, which keeps draining it so the server never
    /// blocks on a full pipe) until the line containing `ready` names the bound address.
    async fn start(mut command: Command, ready: &str, dir: Option<TempDir>) -> Result<Self, String> {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("cannot start server: {e}"))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (found_tx, found_rx) = tokio::sync::oneshot::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut found_tx = Some(found_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(&ready) {
                    if let Some(tx) = found_tx.take() {
                        let _ = tx.send(address_in(&line).ok_or_else(|| format!("no address in: {line}")));
                    }
                }
            }
        });
        let mut server = Self { url: String::new(), pid, child, _dir: dir };
        let address = match tokio::time::timeout(Duration::from_secs(30), found_rx).await {
            Ok(Ok(found)) => found?,
            Ok(Err(_)) => return Err("server exited before it listened".into()),
            Err(_) => return Err("server did not listen within 30 s".into()),
        };
        server.url = format!("ws://{address}");
        Ok(server)
    }

    /// Stops the child with SIGKILL (its state is thrown away with it).
    pub async fn stop(self) {
        drop(self);
        // Give the kernel a moment to release the dead server's sockets before the next run.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `127.0.0.1:PORT` in a log line.
fn address_in(line: &str) -> Option<String> {
    let start = line.find("127.0.0.1:")?;
    let digits: String = line[start + 10..].chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("127.0.0.1:{digits}"))
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("pam-loadtest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).map_err(|e| format!("temp dir: {e}"))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain-HTTP client for a server's REST routes (`/metrics`, admin and push routes). When this
/// crate is built in one cargo invocation with the gateway (workspace builds), feature unification
/// turns on reqwest's `rustls-no-provider`, which panics when a client is built unless a crypto
/// provider is installed first.
pub fn http_client() -> reqwest::Client {
    rustls::crypto::ring::default_provider().install_default().ok();
    reqwest::Client::new()
}

/// A random secret for a gateway the runner starts.
pub fn random_secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ws_urls_are_taken_and_every_refusal_names_ws() {
        assert_eq!(parse_ws_url("ws://127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080");
        assert_eq!(parse_ws_url("WS://gateway:80/").unwrap(), "ws://gateway:80");
        for bad in ["http://127.0.0.1:8080", "HTTPS://pam.example.com", "wss://pam.example.com", "127.0.0.1:8080", "ftp://x", "ws://"] {
            let refusal = parse_ws_url(bad).unwrap_err();
            assert!(refusal.contains("ws://"), "{bad}: {refusal}");
        }
        assert!(parse_ws_url("http://127.0.0.1:8080").unwrap_err().contains("use ws://127.0.0.1:8080"));
    }

    #[test]
    fn the_address_is_read_from_a_json_log_line() {
        let line = r#"{"level":"INFO","fields":{"message":"pam-gateway listening","address":"127.0.0.1:40123"}}"#;
        assert_eq!(address_in(line).as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(address_in("listening on 127.0.0.1:"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
