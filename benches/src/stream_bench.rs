//! `stream` (benchmark): N concurrent protocol-v2 streams fed by a paced fake model, timed
//! per token from emit to receive, through the gateway and through a bare tokio-tungstenite push
//! server fed by the same generator in the same run; then first-token latency (client `chat` →
//! first `chat_delta`) at a fixed provider first-token delay. The gateway runs in this process
//! (`Application::build_with` with the `PacedModel` provider, SQLite temp file, HS256 tokens), so
//! the measured path is provider delta → turn pipeline → session stream → connection → socket;
//! the fallback chain, response cache and HTTP/SSE parsing of real providers are not in it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_gateway::{Application, Overrides, Settings};
use serde_json::json;
use tokio::sync::Semaphore;

use pam_loadtest::auth::{mint, user_id};
use pam_loadtest::client::{self, Socket, WsError};
use pam_loadtest::clock::now_micros;
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::reconnect::{self, Backoff, SplitMix64, retry_connect};
use pam_loadtest::summary::{Report, Rule, Trend, fmt_ms};
use pam_loadtest::target::{http_client, random_secret};

use crate::stream_feed::{PacedModel, Script, spawn_push_server, stamps};

/// Beyond its script's own duration, a chat may take this long before it counts as failed.
const CHAT_SLACK: Duration = Duration::from_secs(30);

/// Options of `pam-bench stream`.
#[derive(clap::Args, Clone)]
pub(crate) struct StreamArgs {
    /// Concurrent v2 streams (one socket and one user each).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Tokens per second of each stream.
    #[arg(long, default_value_t = 30.0)]
    tokens_per_second: f64,
    /// Tokens per stream.
    #[arg(long, default_value_t = 300)]
    tokens: u32,
    /// Stream starts are spread evenly over this many ms.
    #[arg(long, default_value_t = 1000)]
    ramp_ms: u64,
    /// Sockets of the first-token run.
    #[arg(long, default_value_t = 100)]
    first_token_sockets: usize,
    /// Chats per socket in the first-token run (one after another).
    #[arg(long, default_value_t = 5)]
    first_token_chats: usize,
    /// The fake model's fixed first-token delay in the first-token run.
    #[arg(long, default_value_t = 200)]
    first_token_delay_ms: u64,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Redis for resume: the gateway also writes every v2 frame there, beside a Redis-less gateway.
    ///
    /// Runs the gateway with this `REDIS_URL` (keys under a fresh `pam-bench-…` prefix), so every
    /// v2 frame also goes to Redis for resume on any node; unset: in process only. With it, the
    /// streams phase also runs on a second gateway without Redis (the in-process ring), in the
    /// same run, and the Redis-backed token p99 must stay within `--max-redis-ratio` of it.
    #[arg(long)]
    redis_url: Option<String>,
    /// The most the Redis-backed token p99 may be, as a multiple of the in-process ring's.
    #[arg(long, default_value_t = 1.5)]
    max_redis_ratio: f64,
}

/// A server to stream from.
enum Target {
    /// The in-process gateway's v2 endpoint; tokens minted with `secret`.
    Gateway { address: SocketAddr, secret: String },
    /// The bare push server.
    Bare { address: SocketAddr },
}

impl Target {
    fn url(&self, n: usize) -> String {
        match self {
            Target::Gateway { address, secret } => format!("ws://{address}/api/v2/pam/ws?token={}", mint(secret, &user_id(n))),
            Target::Bare { address } => format!("ws://{address}/"),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Target::Gateway { .. } => "gateway",
            Target::Bare { .. } => "bare",
        }
    }
}

/// One run against one target: `sockets` sockets, each sending `chats` chats of `script` in turn.
struct Phase {
    name: &'static str,
    sockets: usize,
    chats: usize,
    script: Script,
    ramp: Duration,
    concurrency: usize,
}

impl Phase {
    fn expected_tokens(&self) -> u64 {
        (self.sockets * self.chats) as u64 * u64::from(self.script.tokens)
    }
}

/// What a phase measured.
#[derive(Default)]
struct Tally {
    token_latency: Trend,
    first_token: Trend,
    tokens: u64,
    chats: u64,
    /// Sockets the server ended with 1012/1001/1013/1006 that were connected again.
    reconnects: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.token_latency.merge(other.token_latency);
        self.first_token.merge(other.first_token);
        self.tokens += other.tokens;
        self.chats += other.chats;
        self.reconnects += other.reconnects;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Runs the four phases and prints their summary; `Ok(true)` when no token was lost and no chat failed.
pub(crate) async fn run(args: &StreamArgs) -> Result<bool, String> {
    let ramp = Duration::from_millis(args.ramp_ms);
    let stream = Script { tokens: args.tokens, rate: args.tokens_per_second, first_delay: Duration::ZERO };
    let first = Script { tokens: 10, rate: args.tokens_per_second, first_delay: Duration::from_millis(args.first_token_delay_ms) };
    let streams = Phase { name: "streams", sockets: args.streams, chats: 1, script: stream, ramp, concurrency: args.concurrency };
    let firsts = Phase {
        name: "first-token",
        sockets: args.first_token_sockets,
        chats: args.first_token_chats,
        script: first,
        ramp,
        concurrency: args.concurrency,
    };
    let bare = Target::Bare { address: spawn_push_server().await? };
    let gateway = InProcessGateway::start(stream.duration().max(first.duration()) + CHAT_SLACK, args.redis_url.as_deref()).await?;
    let started = Instant::now();
    let bare_stream = run_phase(&bare, &streams).await;
    let gateway_stream = run_phase(&gateway.target, &streams).await;
    let gateway_first = run_phase(&gateway.target, &firsts).await;
    let bare_first = run_phase(&bare, &firsts).await;
    gateway.stop().await;
    // Redis-backed against in-process only, side by side (half the streams each, at the same
    // time), so both see the same machine: a second gateway with Redis and one without.
    let side_by_side = match &args.redis_url {
        Some(url) => {
            let half = Phase { sockets: (args.streams / 2).max(1), ..streams };
            let llm_timeout = stream.duration() + CHAT_SLACK;
            let (with_redis, ring) =
                (InProcessGateway::start(llm_timeout, Some(url)).await?, InProcessGateway::start(llm_timeout, None).await?);
            let (redis_tally, ring_tally) = tokio::join!(run_phase(&with_redis.target, &half), run_phase(&ring.target, &half));
            // The tokens reach the client before Redis has them: whether Redis got them is asked.
            let store = with_redis.store_writes().await?;
            with_redis.stop().await;
            ring.stop().await;
            Some((half, redis_tally, ring_tally, store))
        }
        None => None,
    };
    let mut report = Report::new(
        format!(
            "stream: {} v2 streams × {} tokens at {}/s; first token at {} ms delay",
            args.streams, args.tokens, args.tokens_per_second, args.first_token_delay_ms
        ),
        started.elapsed(),
    );
    let ring_p99 =
        side_by_side.map(|(half, redis, ring, store)| compare_with_ring(&half, redis, ring, store, args.max_redis_ratio, &mut report));
    let summary = Summary { streams: &streams, firsts: &firsts, gateway_stream, bare_stream, gateway_first, bare_first };
    summary.print_table();
    summary.fill(&mut report);
    if let Some(ring_p99) = ring_p99 {
        let limit_ms = ring_p99 * args.max_redis_ratio;
        report.threshold("redis_token_latency", Rule::PercentileBelow { p: 99.0, limit_ms });
    }
    println!("{}", report.render());
    Ok(report.passed())
}

/// Redis-backed resume against the in-process ring, measured side by side in this run: the table
/// and both figures; returns the ring's token p99 (ms), which the Redis-backed p99 must stay
/// within `max_ratio` of.
fn compare_with_ring(streams: &Phase, redis: Tally, ring: Tally, store: StoreWrites, max_ratio: f64, report: &mut Report) -> f64 {
    let p = |t: &Trend, q| t.clone().percentile(q).unwrap_or(f64::NAN);
    println!("\n  stream: gateway with Redis-backed resume beside the same gateway with the in-process ring only\n");
    println!("  {:<52} {:>10} {:>10} {:>7}", "figure", "redis", "ring", "ratio");
    for q in [50.0, 99.0] {
        let (r, l) = (p(&redis.token_latency, q), p(&ring.token_latency, q));
        let name = format!("token emit→receive p{q} ({} streams, {}/s)", streams.sockets, streams.script.rate);
        println!("  {name:<52} {:>10} {:>10} {:>6.2}×", fmt_ms(r), fmt_ms(l), r / l);
    }
    let (redis_p99, ring_p99) = (p(&redis.token_latency, 99.0), p(&ring.token_latency, 99.0));
    let lost = streams.expected_tokens().saturating_sub(ring.tokens) + streams.expected_tokens().saturating_sub(redis.tokens);
    report
        .trend("redis_token_latency", redis.token_latency)
        .trend("ring_token_latency", ring.token_latency)
        .count("side_by_side_tokens_lost", lost)
        .count("side_by_side_errors", ring.errors + redis.errors)
        .count("redis_frames_written", store.written)
        .count("redis_frames_not_written", store.failed + store.dropped + u64::from(store.written == 0))
        .text("token p99 ratio redis/ring", format!("{:.2}× (target ≤ {max_ratio}×)", redis_p99 / ring_p99))
        .threshold("side_by_side_tokens_lost", Rule::CountAtMost { max: 0 })
        .threshold("side_by_side_errors", Rule::CountAtMost { max: 0 })
        .threshold("redis_frames_not_written", Rule::CountAtMost { max: 0 });
    ring_p99
}

/// Connects every socket, then starts each one's chats at its place in the ramp.
async fn run_phase(target: &Target, phase: &Phase) -> Tally {
    eprintln!("== {} {}: {} sockets × {} chats ({})", target.label(), phase.name, phase.sockets, phase.chats, phase.script.message());
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start(&format!("{} {}", target.label(), phase.name), progress.clone());
    let mut tally = Tally::default();
    let mut sockets = Vec::with_capacity(phase.sockets);
    for (n, connected) in connect_all(target, phase.sockets, phase.concurrency).await.into_iter().enumerate() {
        match connected {
            Ok(socket) => {
                Progress::bump(&progress.connected);
                sockets.push((n, socket));
            }
            Err(error) => {
                Progress::bump(&progress.failed);
                tally.fail(format!("connect: {error}"));
            }
        }
    }
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|(n, socket)| {
            let offset = phase.ramp.mul_f64(n as f64 / phase.sockets.max(1) as f64);
            let (script, chats, progress, label, url) = (phase.script, phase.chats, progress.clone(), phase.name, target.url(n));
            tokio::spawn(async move {
                tokio::time::sleep_until(start + offset).await;
                user(&url, socket, n, label, chats, script, &progress).await
            })
        })
        .collect();
    for task in tasks {
        tally.merge(task.await.unwrap_or_else(|e| Tally { errors: 1, first_error: Some(e.to_string()), ..Tally::default() }));
    }
    // Let the server see the closes before the next phase.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tally
}

async fn connect_all(target: &Target, sockets: usize, concurrency: usize) -> Vec<Result<Socket, String>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = (0..sockets)
        .map(|n| {
            let (url, gate) = (target.url(n), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                connect(&url).await
            })
        })
        .collect();
    let mut sockets = Vec::with_capacity(tasks.len());
    for task in tasks {
        sockets.push(task.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    sockets
}

/// TCP connect (no Nagle), WebSocket handshake, and the v2 `welcome` (the gateway's or the bare
/// server's), within 30 s.
async fn connect(url: &str) -> Result<Socket, String> {
    client::connect_url(url, "welcome").await.map(|(session, _)| session.socket)
}

/// One socket's chats, one after another; then closes it. A socket the server ends the way a
/// restart does (1012/1001/1013/1006) is connected again to `url` with backoff and the chat is
/// sent again with the same id; only the attempt that reached `chat_end` counts its tokens.
async fn user(url: &str, mut socket: Socket, n: usize, label: &str, chats: usize, script: Script, progress: &Progress) -> Tally {
    let mut tally = Tally::default();
    let (mut backoff, mut rng) = (Backoff::standard(), SplitMix64::from_clock(n as u64));
    let mut turn = 0;
    while turn < chats {
        let id = format!("{label}-{n}-{turn}");
        Progress::bump(&progress.sent);
        let mut attempt = Tally::default();
        let outcome = tokio::time::timeout(script.duration() + CHAT_SLACK, chat(&mut socket, &id, &script, &mut attempt)).await;
        match outcome.unwrap_or_else(|_| Err(WsError::Other(format!("chat {id} not ended in time")))) {
            Ok(()) => {
                attempt.chats += 1;
                tally.merge(attempt);
                Progress::bump(&progress.received);
                turn += 1;
            }
            Err(error) if reconnect::should_reconnect_on(&error) => {
                let deadline = Instant::now() + CHAT_SLACK;
                let again = retry_connect(deadline, &mut backoff, &mut rng, || connect(url));
                match again.await {
                    Ok((fresh, _)) => {
                        socket = fresh;
                        tally.reconnects += 1;
                    }
                    Err(gave_up) => {
                        tally.fail(format!("{} ({gave_up})", String::from(error)));
                        return tally;
                    }
                }
            }
            Err(error) => {
                tally.fail(String::from(error));
                break;
            }
        }
    }
    let _ = futures_util::SinkExt::close(&mut socket).await;
    tally
}

/// Sends one chat and reads its frames up to `chat_end`, timing the first delta and every token.
async fn chat(socket: &mut Socket, id: &str, script: &Script, tally: &mut Tally) -> Result<(), WsError> {
    let sent = Instant::now();
    let request = json!({"type": "chat", "id": id, "message": script.message()});
    // A failed send is a socket the server already dropped.
    client::send_json(socket, &request).await.map_err(|detail| WsError::Ended { code: None, detail })?;
    let mut first = true;
    loop {
        let frame = client::next_frame(socket).await?;
        let now = now_micros();
        match frame["type"].as_str() {
            Some("chat_delta") => {
                if std::mem::take(&mut first) {
                    tally.first_token.record(sent.elapsed());
                }
                for emitted in stamps(frame["delta"].as_str().unwrap_or_default()) {
                    tally.token_latency.record_ms(now.saturating_sub(emitted) as f64 / 1000.0);
                    tally.tokens += 1;
                }
            }
            Some("chat_end") => return Ok(()),
            Some("error") => {
                let described = format!("chat {id}: error {} {}", frame["error_code"], frame["message"]);
                return Err(reconnect::after_error_frame(socket, described).await);
            }
            _ => {}
        }
    }
}

/// The gateway, built in this process on port 0 with the paced fake model.
struct InProcessGateway {
    target: Target,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    database: std::path::PathBuf,
}

impl InProcessGateway {
    /// `llm_timeout` must outlast the longest script. Each socket is its own user, and the
    /// per-user chat rate limit is raised so no run is throttled.
    async fn start(llm_timeout: Duration, redis_url: Option<&str>) -> Result<Self, String> {
        let secret = random_secret();
        let database = std::env::temp_dir().join(format!("pam-bench-stream-{}.db", uuid::Uuid::new_v4().simple()));
        let mut settings = Settings::defaults();
        settings.listen = "127.0.0.1:0".parse().expect("a literal address");
        settings.database_url = format!("sqlite://{}", database.display());
        settings.redis_url = redis_url.map(str::to_string);
        settings.cache_prefix = format!("pam-bench-{}", uuid::Uuid::new_v4().simple());
        settings.supabase_jwt_secret = Some(secret.clone().into());
        (settings.supabase_url, settings.jwks_url, settings.jwt_issuer, settings.dev_auth) = (None, None, None, Some(false));
        (settings.anthropic_api_key, settings.openai_api_key) = (None, None);
        settings.auth_failures_per_minute = 0;
        settings.rate_limit_per_minute = 1_000_000;
        settings.llm_timeout_ms = u64::try_from(llm_timeout.as_millis()).unwrap_or(u64::MAX);
        // The first-token deadline may not be longer than the whole answer's (settings validation).
        settings.llm_first_token_timeout_ms = settings.llm_first_token_timeout_ms.min(settings.llm_timeout_ms);
        settings.shutdown_grace_ms = 500;
        let overrides = Overrides { llm: Some(Arc::new(PacedModel)), ..Overrides::default() };
        let app = Application::build_with(settings, overrides).await.map_err(|e| format!("gateway: {e:#}"))?;
        let address = app.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(error) = app.run_until_stopped(stopped).await {
                eprintln!("in-process gateway: {error:#}");
            }
        });
        eprintln!("in-process gateway at {address} (SQLite {}, Redis {})", database.display(), redis_url.unwrap_or("off"));
        Ok(Self { target: Target::Gateway { address, secret }, stop, server, database })
    }

    /// The process's v2 stream writes to Redis by outcome, from the gateway's `/metrics`
    /// (`pam_resume_store_writes_total`; one recorder per process, so every gateway of this run).
    async fn store_writes(&self) -> Result<StoreWrites, String> {
        let Target::Gateway { address, .. } = &self.target else { return Err("not a gateway".into()) };
        let text = http_client()
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .map_err(|e| format!("GET /metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("GET /metrics: {e}"))?;
        let outcome = |name: &str| -> u64 {
            let prefix = format!("pam_resume_store_writes_total{{outcome=\"{name}\"}} ");
            text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0) as u64
        };
        Ok(StoreWrites { written: outcome("written"), failed: outcome("failed"), dropped: outcome("dropped") })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.database.display()));
        }
    }
}

/// v2 stream writes to Redis by outcome (a write is a frame or a seq move).
#[derive(Debug, Clone, Copy)]
struct StoreWrites {
    written: u64,
    failed: u64,
    dropped: u64,
}

/// The four phases' tallies, for the comparison table and the k6-style report.
struct Summary<'a> {
    streams: &'a Phase,
    firsts: &'a Phase,
    gateway_stream: Tally,
    bare_stream: Tally,
    gateway_first: Tally,
    bare_first: Tally,
}

impl Summary<'_> {
    fn print_table(&self) {
        let mut rows: Vec<(String, f64, f64)> = Vec::new();
        let p = |t: &Trend, q| t.clone().percentile(q).unwrap_or(f64::NAN);
        let s = self.streams;
        for q in [50.0, 99.0] {
            let name = format!("token emit→receive p{q} ({} streams, {}/s)", s.sockets, s.script.rate);
            rows.push((name, p(&self.gateway_stream.token_latency, q), p(&self.bare_stream.token_latency, q)));
        }
        let delay = self.firsts.script.first_delay.as_millis();
        for q in [50.0, 99.0] {
            let name = format!("first token p{q} ({delay} ms model delay, {} sockets)", self.firsts.sockets);
            rows.push((name, p(&self.gateway_first.first_token, q), p(&self.bare_first.first_token, q)));
        }
        println!("\n  stream: in-process gateway (fake LlmProvider) vs bare tokio-tungstenite push server\n");
        println!("  {:<52} {:>10} {:>10} {:>7}", "figure", "gateway", "bare", "ratio");
        for (name, g, b) in rows {
            let ratio = if b > 0.0 { format!("{:.2}×", g / b) } else { "-".into() };
            println!("  {name:<52} {:>10} {:>10} {ratio:>7}", fmt_ms(g), fmt_ms(b));
        }
    }

    fn fill(self, report: &mut Report) {
        let lost = |phase: &Phase, tally: &Tally| phase.expected_tokens().saturating_sub(tally.tokens);
        let errors = self.gateway_stream.errors + self.bare_stream.errors + self.gateway_first.errors + self.bare_first.errors;
        let lost_tokens = lost(self.streams, &self.gateway_stream)
            + lost(self.streams, &self.bare_stream)
            + lost(self.firsts, &self.gateway_first)
            + lost(self.firsts, &self.bare_first);
        let first_error =
            [&self.gateway_stream, &self.bare_stream, &self.gateway_first, &self.bare_first].iter().find_map(|t| t.first_error.clone());
        report
            .trend("gateway_token_latency", self.gateway_stream.token_latency)
            .trend("bare_token_latency", self.bare_stream.token_latency)
            .trend("gateway_first_token", self.gateway_first.first_token)
            .trend("bare_first_token", self.bare_first.first_token)
            .trend("gateway_stream_start", self.gateway_stream.first_token)
            .trend("bare_stream_start", self.bare_stream.first_token)
            .count("gateway_tokens", self.gateway_stream.tokens + self.gateway_first.tokens)
            .count("bare_tokens", self.bare_stream.tokens + self.bare_first.tokens)
            .count("chats_ended", self.gateway_stream.chats + self.bare_stream.chats + self.gateway_first.chats + self.bare_first.chats)
            .count("tokens_lost", lost_tokens)
            .count(
                "reconnects",
                self.gateway_stream.reconnects + self.bare_stream.reconnects + self.gateway_first.reconnects + self.bare_first.reconnects,
            )
            .count("errors", errors);
        if let Some(error) = first_error {
            report.text("first_error", error);
        }
        report.threshold("tokens_lost", Rule::CountAtMost { max: 0 }).threshold("errors", Rule::CountAtMost { max: 0 });
    }
}
