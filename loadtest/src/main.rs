//! pam-loadtest: a k6-style load runner for pam-gateway. Each subcommand is a scenario; each
//! prints a k6-shaped summary, a progress line on stderr once a second while it runs, and exits
//! non-zero when a threshold fails. See README "Load testing" for the commands.

mod bare_storm;
mod baseline;
mod chaos;
mod cluster;
mod echo_server;
mod failover;
mod idle;
mod ledger;
mod legacy_chat;
mod ping;
mod push_bench;
mod push_soak;
mod refresh_flood;
mod storm;
mod timers_bench;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use pam_loadtest::auth::Tokens;
use pam_loadtest::target::{self, Server, random_secret};

#[derive(Parser)]
#[command(name = "pam-loadtest", about = "k6-style load scenarios for pam-gateway")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Which server to load: one already running, or a gateway binary the runner starts.
#[derive(Args, Clone)]
struct TargetArgs {
    /// Base URL of a running gateway, e.g. ws://127.0.0.1:8080 (ws:// only).
    #[arg(long, required_unless_present = "gateway_bin", value_parser = target::parse_ws_url)]
    url: Option<String>,
    /// Its process id (for memory figures).
    #[arg(long)]
    pid: Option<u32>,
    /// Start this pam-gateway binary on 127.0.0.1:0 instead (fresh secret, throwaway SQLite).
    #[arg(long, conflicts_with = "url")]
    gateway_bin: Option<PathBuf>,
    /// HS256 secret to mint tokens with; without it tokens come from POST /dev/token.
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

#[derive(Subcommand)]
enum Scenario {
    /// Users chatting over the legacy protocol; thresholds on chat_latency p95 and success.
    LegacyChat {
        #[command(flatten)]
        target: TargetArgs,
        /// Virtual users, one legacy socket each.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Milliseconds between one user's chats.
        #[arg(long, default_value_t = 2000)]
        interval_ms: u64,
        /// Threshold: chat_latency p95 below this many ms.
        #[arg(long, default_value_t = 2000.0)]
        p95_ms: f64,
        /// Threshold: share of users that connect and of chats answered without error.
        #[arg(long, default_value_t = 0.95)]
        min_success: f64,
    },
    /// N idle authenticated sockets; server RSS growth per socket (needs --pid or --gateway-bin).
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        /// Idle sockets to open and hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold them all open before measuring memory.
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
        /// Connects in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Threshold: RSS growth per socket at most this many KiB.
        #[arg(long)]
        max_kib_per_connection: Option<f64>,
        /// Bytes of JSON context in an `init` each socket sends first (0: no `init`).
        ///
        /// Each socket first sends an `init` whose context is this many bytes of JSON (e.g. the
        /// server's `PAM_MAX_CONTEXT_BYTES`, 16384): memory with the largest allowed context.
        #[arg(long, default_value_t = 0)]
        context_bytes: usize,
        /// Protocol-v2 sockets (`/api/v2/pam/ws`, each with its session stream) instead of legacy.
        #[arg(long)]
        v2: bool,
    },
    /// One v2 socket sending N `auth_refresh` frames as fast as it can; server RSS before and after.
    RefreshFlood {
        #[command(flatten)]
        target: TargetArgs,
        /// `auth_refresh` frames to send.
        #[arg(long, default_value_t = 100_000)]
        frames: usize,
    },
    /// N connect + auth in one burst; connects/s, failures, SYN-retry stalls.
    Storm {
        #[command(flatten)]
        target: TargetArgs,
        /// Sockets to connect and authenticate in the burst.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Connects in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// S sockets timing JSON ping → pong.
    Ping {
        #[command(flatten)]
        target: TargetArgs,
        /// Sockets, each pinging on its own.
        #[arg(long, default_value_t = 500)]
        sockets: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Milliseconds between one socket's pings.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// idle, storm and ping against a bare tokio-tungstenite server and the gateway, side by side.
    EchoBaseline {
        /// The pam-gateway binary to start (fresh process per run).
        #[arg(long, default_value = "target/release/pam-gateway")]
        gateway_bin: PathBuf,
        /// `idle`: sockets to open and hold on each server.
        #[arg(long, default_value_t = 1000)]
        idle_connections: usize,
        /// `storm`: sockets in the connect burst on each server.
        #[arg(long, default_value_t = 5000)]
        storm_connections: usize,
        /// Connects in flight at once (idle and storm).
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// `ping`: sockets on each server.
        #[arg(long, default_value_t = 500)]
        ping_sockets: usize,
        /// `ping`: seconds to run on each server.
        #[arg(long, default_value_t = 10)]
        ping_duration: u64,
        /// `ping`: milliseconds between one socket's pings.
        #[arg(long, default_value_t = 1000)]
        ping_interval_ms: u64,
    },
    /// Two nodes: N v2 clients chatting on node A, node A drained (SIGTERM), reconnect + resume on
    /// node B; frames lost/repeated must be 0, p99 beside a bare reconnect storm.
    Failover(failover::FailoverArgs),
    /// Two nodes: push latency POST on node A → proactive_alert on node B, beside Redis PUBLISH.
    Push(push_bench::PushArgs),
    /// Two nodes: timers due in one second, each delivered once to every socket of its user.
    Timers(timers_bench::TimersArgs),
    /// Two nodes: pushes, timers and budget alerts to 1 000 users while 20 % of the sockets are
    /// black-holed or reset; every push read once or still undelivered, checked against Postgres.
    PushSoak(push_soak::PushSoakArgs),
    /// Its own cluster (2–3 release nodes, Redis, proxies): 500 legacy, v2 and REST clients chat
    /// while nodes are killed and stopped, Redis paused and killed, sockets cut; every chat
    /// answered once or re-sent after a retryable error and answered — per fault.
    Chaos(chaos::ChaosArgs),
    /// The bare tokio-tungstenite baseline server (used by echo-baseline).
    EchoServer {
        /// Address to listen on (port 0: any free port; the bound address is logged on stderr).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Echo text and binary messages as they come, without the `connection` frame: the bare
        /// tokio-tungstenite side of scripts/autobahn.sh.
        #[arg(long)]
        raw: bool,
    },
}

/// A server to run against, and whether the runner owns it.
struct Resolved {
    url: String,
    pid: Option<u32>,
    tokens: Tokens,
    owned: Option<Server>,
}

impl TargetArgs {
    async fn resolve(&self) -> Result<Resolved, String> {
        if let Some(bin) = &self.gateway_bin {
            let secret = self.secret.clone().unwrap_or_else(random_secret);
            let server = Server::gateway(bin, &secret).await?;
            eprintln!("started {} at {} (pid {})", bin.display(), server.url, server.pid);
            return Ok(Resolved { url: server.url.clone(), pid: Some(server.pid), tokens: Tokens::Secret(secret), owned: Some(server) });
        }
        let url = self.url.clone().ok_or("--url or --gateway-bin is required")?;
        let tokens = Tokens::new(self.secret.clone(), &url);
        Ok(Resolved { url, pid: self.pid, tokens, owned: None })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().scenario).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("pam-loadtest: some thresholds failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("pam-loadtest: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs a scenario; `Ok(passed)`.
async fn run(scenario: Scenario) -> Result<bool, String> {
    let mut report = match scenario {
        Scenario::LegacyChat { target, users, duration, interval_ms, p95_ms, min_success } => {
            let t = target.resolve().await?;
            let plan = legacy_chat::ChatPlan {
                users,
                duration: Duration::from_secs(duration),
                interval: Duration::from_millis(interval_ms),
                p95_limit_ms: p95_ms,
                min_success,
            };
            let report = legacy_chat::run(&t.url, &t.tokens, &plan).await;
            finish(t).await;
            report
        }
        Scenario::Idle { target, connections, hold_secs, concurrency, max_kib_per_connection, context_bytes, v2 } => {
            let t = target.resolve().await?;
            let hold = Duration::from_secs(hold_secs);
            let plan = idle::IdlePlan { connections, concurrency, hold, max_kib_per_connection, context_bytes, v2 };
            let outcome = idle::run(&t.url, t.pid, &t.tokens, &plan).await;
            finish(t).await;
            outcome?.report
        }
        Scenario::RefreshFlood { target, frames } => {
            let t = target.resolve().await?;
            let report = refresh_flood::run(&t.url, t.pid, &t.tokens, frames).await;
            finish(t).await;
            report?
        }
        Scenario::Storm { target, connections, concurrency } => {
            let t = target.resolve().await?;
            let outcome = storm::run(&t.url, &t.tokens, connections, concurrency).await;
            finish(t).await;
            outcome.report
        }
        Scenario::Ping { target, sockets, duration, interval_ms } => {
            let t = target.resolve().await?;
            let outcome = ping::run(&t.url, &t.tokens, sockets, Duration::from_secs(duration), Duration::from_millis(interval_ms)).await;
            finish(t).await;
            outcome.report
        }
        Scenario::EchoBaseline {
            gateway_bin,
            idle_connections,
            storm_connections,
            concurrency,
            ping_sockets,
            ping_duration,
            ping_interval_ms,
        } => {
            let plan = baseline::BaselinePlan {
                gateway_bin,
                idle_connections,
                storm_connections,
                concurrency,
                ping_sockets,
                ping_duration: Duration::from_secs(ping_duration),
                ping_interval: Duration::from_millis(ping_interval_ms),
            };
            return baseline::run(&plan).await;
        }
        Scenario::Failover(args) => return failover::run(&args).await,
        Scenario::Push(args) => return push_bench::run(&args).await,
        Scenario::Timers(args) => return timers_bench::run(&args).await,
        Scenario::PushSoak(args) => return push_soak::run(&args).await,
        Scenario::Chaos(args) => return chaos::run(&args).await,
        Scenario::EchoServer { listen, raw } => return echo_server::serve(&listen, raw).await.map(|()| true),
    };
    println!("{}", report.render());
    Ok(report.passed())
}

async fn finish(target: Resolved) {
    if let Some(server) = target.owned {
        server.stop().await;
    }
}
