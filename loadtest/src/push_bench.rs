//! `push`: cross-node server-push latency. `--users` v2 sockets on node B; `POST /api/v1/pam/push`
//! (admin bearer) to node A at each offered rate for `--duration` seconds, each alert carrying its
//! send time (`content.message` = `bench-push {phase} {k} {µs}` on this process's monotonic clock,
//! taken just before the POST), timed at the `proactive_alert` frame on the socket. Baseline in
//! the same run at the same rate: bare Redis `PUBLISH` → a subscriber, the same stamp in the
//! payload. Must-holds: no accepted push missing or delivered twice, and p99 at most
//! `max_ratio` × the Redis p99 + `slack_ms`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, EventInterface, PubsubInterface};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use pam_loadtest::client::next_v2;
use pam_loadtest::clock::now_micros;
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::summary::{Report, Rule, Trend, fmt_ms};

use crate::cluster::{TwoNodes, connect_v2, due, http_base, run_salt, run_user, tokens_for};

/// Options of `pam-loadtest push`.
#[derive(clap::Args, Clone)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    nodes: TwoNodes,
    /// The nodes' `PAM_ADMIN_TOKEN` (bearer of the push route).
    #[arg(long, env = "PAM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// The Redis of the baseline (the cluster's own is fine).
    #[arg(long, env = "PAM_BENCH_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Users on node B, one v2 socket each; pushes go to them in turn.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Offered rates in pushes per second, comma-separated; one phase each.
    #[arg(long, value_delimiter = ',', default_values_t = [1000.0, 10_000.0])]
    rates: Vec<f64>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests (or PUBLISHes) in flight at most; the offered rate drops when they are all busy.
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
    /// Threshold: push p99 at most this many times the Redis PUBLISH p99 (plus --slack-ms).
    #[arg(long, default_value_t = 1.5)]
    max_ratio: f64,
    /// Threshold: milliseconds added to the allowed push p99.
    #[arg(long, default_value_t = 1.0)]
    slack_ms: f64,
}

/// One phase (a rate, on the gateway or on bare Redis).
#[derive(Default)]
struct Phase {
    latency: Trend,
    seen: HashSet<u64>,
    duplicates: u64,
    sent: u64,
    accepted: u64,
    refused: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Phase {
    fn arrived(&mut self, k: u64, stamp: u64) {
        if self.seen.insert(k) {
            self.latency.record_ms(now_micros().saturating_sub(stamp) as f64 / 1000.0);
        } else {
            self.duplicates += 1;
        }
    }

    fn missing(&self) -> u64 {
        self.accepted.saturating_sub(self.seen.len() as u64)
    }
}

type Phases = Arc<Mutex<Vec<Phase>>>;

/// The marker put in each push: `bench-push {phase} {k} {micros}`.
fn marker(phase: usize, k: u64, micros: u64) -> String {
    format!("bench-push {phase} {k} {micros}")
}

/// Reads a [`marker`] back; `None` for any other text.
fn parse_marker(text: &str) -> Option<(usize, u64, u64)> {
    let mut parts = text.strip_prefix("bench-push ")?.split(' ');
    let parsed = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some(parsed)
}

fn book(phases: &Phases, text: &str) {
    if let Some((phase, k, stamp)) = parse_marker(text) {
        let mut phases = phases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(phase) = phases.get_mut(phase) {
            phase.arrived(k, stamp);
        }
    }
}

/// Runs every rate on the gateway and on bare Redis; prints the table and the thresholds.
pub(crate) async fn run(args: &PushArgs) -> Result<bool, String> {
    let (a, b, tokens) = args.nodes.resolve()?;
    let started = Instant::now();
    let salt = run_salt();
    let users: Vec<String> = (0..args.users.max(1)).map(|n| run_user(salt, n)).collect();
    let phases: Phases = Arc::new(Mutex::new((0..args.rates.len() * 2).map(|_| Phase::default()).collect()));
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("push", progress.clone());
    let (stop_tx, stop) = watch::channel(false);
    let mut sockets = Vec::new();
    for token in tokens_for(&tokens, &users).await? {
        let (mut socket, _) = connect_v2(&b, &token).await?;
        Progress::bump(&progress.connected);
        let (phases, progress, mut stop) = (phases.clone(), progress.clone(), stop.clone());
        sockets.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    read = next_v2(&mut socket) => match read {
                        Ok(frame) if frame["type"] == "proactive_alert" => {
                            Progress::bump(&progress.received);
                            book(&phases, frame["content"]["message"].as_str().unwrap_or_default());
                        }
                        Ok(_) => {}
                        Err(error) => return Err(String::from(error)),
                    },
                    _ = stop.changed() => return Ok(()),
                }
            }
        }));
    }
    let redis = Redis::connect(&args.redis_url, salt, phases.clone()).await?;
    let http = pam_loadtest::target::http_client();
    let push_url = format!("{}/api/v1/pam/push", http_base(&a));
    for (i, &rate) in args.rates.iter().enumerate() {
        let (gateway, bare) = (2 * i, 2 * i + 1);
        eprintln!("== gateway: {rate}/s for {} s, POST to {a}, sockets on {b}", args.duration);
        let (http, url, admin, users) = (http.clone(), push_url.clone(), args.admin_token.clone(), users.clone());
        let sent = pace(rate, args.duration, args.in_flight, &progress, move |k| {
            let body = json!({"user_id": users[k as usize % users.len()], "type": "proactive_alert", "ttl_s": 60,
                              "content": {"message": marker(gateway, k, now_micros())}});
            let request = http.post(&url).bearer_auth(&admin).json(&body).send();
            async move {
                let response = request.await.map_err(|e| format!("POST /api/v1/pam/push: {e}"))?;
                match response.status().as_u16() {
                    202 => Ok(()),
                    status => Err(format!("POST /api/v1/pam/push: {status} {}", response.text().await.unwrap_or_default())),
                }
            }
        })
        .await;
        settle(&phases, gateway, sent).await;
        eprintln!("== bare Redis: {rate}/s for {} s, PUBLISH → subscriber", args.duration);
        let publisher = redis.publisher.clone();
        let channel = redis.channel.clone();
        let sent = pace(rate, args.duration, args.in_flight, &progress, move |k| {
            let (publisher, channel) = (publisher.clone(), channel.clone());
            async move { publisher.publish::<(), _, _>(channel, marker(bare, k, now_micros())).await.map_err(|e| format!("PUBLISH: {e}")) }
        })
        .await;
        settle(&phases, bare, sent).await;
    }
    let _ = stop_tx.send(true);
    let mut socket_errors = 0;
    for socket in sockets {
        if !matches!(socket.await, Ok(Ok(()))) {
            socket_errors += 1;
        }
    }
    let _ = redis.publisher.quit().await;
    let _ = redis.subscriber.quit().await;
    let phases = std::mem::take(&mut *phases.lock().unwrap_or_else(|p| p.into_inner()));
    let mut report = Report::new(format!("push: {} users on node B, pushes to node A", users.len()), started.elapsed());
    summarize(args, phases, socket_errors, &mut report);
    println!("{}", report.render());
    Ok(report.passed())
}

/// What [`pace`] saw: sends started, accepted, refused, first refusal, time taken.
struct Sent {
    sent: u64,
    accepted: u64,
    refused: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Offers `rate` sends per second for `secs` seconds (a burst each 1 ms tick, see [`due`]), at
/// most `in_flight` at once; waits for the last to finish.
async fn pace<F, Fut>(rate: f64, secs: u64, in_flight: usize, progress: &Progress, send: F) -> Sent
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let (started, length) = (tokio::time::Instant::now(), Duration::from_secs(secs));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let (mut k, mut failed) = (0u64, Vec::new());
    while started.elapsed() < length {
        tick.tick().await;
        for _ in 0..due(started.elapsed(), rate, k) {
            if started.elapsed() >= length {
                break;
            }
            let Ok(permit) = gate.clone().acquire_owned().await else { break };
            let future = send(k);
            k += 1;
            Progress::bump(&progress.sent);
            tasks.spawn(async move {
                let outcome = future.await;
                drop(permit);
                outcome
            });
        }
        while let Some(done) = tasks.try_join_next() {
            failed.extend(done.map_err(|e| e.to_string()).and_then(|r| r).err());
        }
    }
    let elapsed = started.elapsed();
    while let Some(done) = tasks.join_next().await {
        failed.extend(done.map_err(|e| e.to_string()).and_then(|r| r).err());
    }
    let refused = failed.len() as u64;
    Sent { sent: k, accepted: k - refused, refused, first_error: failed.into_iter().next(), elapsed }
}

/// Waits for the phase's accepted sends to arrive: until all have, or none came for 5 s (at most
/// 60 s); then books the send figures.
async fn settle(phases: &Phases, phase: usize, sent: Sent) {
    let (deadline, mut last_change, mut last_count) = (Instant::now() + Duration::from_secs(60), Instant::now(), 0);
    loop {
        let arrived = phases.lock().unwrap_or_else(|p| p.into_inner())[phase].seen.len() as u64;
        if arrived != last_count {
            (last_count, last_change) = (arrived, Instant::now());
        }
        if arrived >= sent.accepted || Instant::now() >= deadline || last_change.elapsed() >= Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late duplicates still count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut phases = phases.lock().unwrap_or_else(|p| p.into_inner());
    let p = &mut phases[phase];
    (p.sent, p.accepted, p.refused, p.first_error, p.elapsed) = (sent.sent, sent.accepted, sent.refused, sent.first_error, sent.elapsed);
}

/// The Redis baseline: a publisher and a subscriber on a channel of this run.
struct Redis {
    publisher: fred::prelude::Client,
    subscriber: fred::prelude::Client,
    channel: String,
}

impl Redis {
    async fn connect(url: &str, salt: u32, phases: Phases) -> Result<Self, String> {
        let config = Config::from_url(url).map_err(|e| format!("--redis-url: {e}"))?;
        let build = || {
            // The subscriber's broadcast must hold a burst of 10 000/s without lagging.
            Builder::from_config(config.clone()).with_performance_config(|p| p.broadcast_channel_capacity = 1 << 16).build()
        };
        let (publisher, subscriber) = (build().map_err(|e| e.to_string())?, build().map_err(|e| e.to_string())?);
        for client in [&publisher, &subscriber] {
            client.init().await.map_err(|e| format!("Redis at {url}: {e}"))?;
        }
        let channel = format!("pam-loadtest-push-{salt:08x}");
        let mut messages = subscriber.message_rx();
        subscriber.subscribe(channel.clone()).await.map_err(|e| format!("SUBSCRIBE: {e}"))?;
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(message) => book(&phases, &message.value.as_string().unwrap_or_default()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Self { publisher, subscriber, channel })
    }
}

fn summarize(args: &PushArgs, phases: Vec<Phase>, socket_errors: u64, report: &mut Report) {
    println!("\n  push: POST on node A → proactive_alert on node B, vs Redis PUBLISH → subscriber\n");
    println!(
        "  {:<30} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "rate (offered → achieved)", "gw p50", "gw p99", "redis p50", "redis p99", "ratio"
    );
    let (mut missing, mut duplicates, mut refused) = (0, 0, 0);
    let mut first_error = None;
    for (i, pair) in phases.chunks(2).enumerate() {
        let ([g, r], rate) = (pair, args.rates[i]) else { continue };
        let (mut gl, mut rl) = (g.latency.clone(), r.latency.clone());
        let p = |t: &mut Trend, q| t.percentile(q).unwrap_or(f64::NAN);
        let (gp50, gp99, rp50, rp99) = (p(&mut gl, 50.0), p(&mut gl, 99.0), p(&mut rl, 50.0), p(&mut rl, 99.0));
        let achieved = g.sent as f64 / g.elapsed.as_secs_f64().max(1e-9);
        let label = format!("{rate}/s → {achieved:.0}/s");
        println!("  {label:<30} {:>10} {:>10} {:>10} {:>10} {:>6.2}×", fmt_ms(gp50), fmt_ms(gp99), fmt_ms(rp50), fmt_ms(rp99), gp99 / rp99);
        let name = format!("push_latency_{rate}");
        report
            .trend(&name, g.latency.clone())
            .trend(&format!("redis_latency_{rate}"), r.latency.clone())
            .text(
                &format!("achieved rate {rate}"),
                format!("gateway {achieved:.0}/s, redis {:.0}/s", r.sent as f64 / r.elapsed.as_secs_f64().max(1e-9)),
            )
            .threshold(&name, Rule::PercentileBelow { p: 99.0, limit_ms: rp99 * args.max_ratio + args.slack_ms });
        report.text(
            &format!("missing/repeated {rate}"),
            format!("gateway {}/{}, redis {}/{}", g.missing(), g.duplicates, r.missing(), r.duplicates),
        );
        missing += g.missing() + r.missing();
        duplicates += g.duplicates + r.duplicates;
        refused += g.refused + r.refused;
        first_error = first_error.or(g.first_error.clone()).or(r.first_error.clone());
    }
    report
        .count("pushes_missing", missing)
        .count("pushes_repeated", duplicates)
        .count("pushes_refused", refused)
        .count("socket_errors", socket_errors);
    if let Some(error) = first_error {
        report.text("first_error", error);
    }
    report.threshold("pushes_missing", Rule::CountAtMost { max: 0 }).threshold("pushes_repeated", Rule::CountAtMost { max: 0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_other_texts_are_ignored() {
        assert_eq!(parse_marker(&marker(3, 17, 123_456)), Some((3, 17, 123_456)));
        for text in ["", "bench-push 1 2", "bench-push 1 2 3 4", "Fuel: 100 % of the budget", "bench-push a 2 3"] {
            assert_eq!(parse_marker(text), None, "{text}");
        }
    }

    #[test]
    fn a_phase_counts_each_push_once_and_knows_what_is_missing() {
        let mut phase = Phase { accepted: 3, ..Phase::default() };
        phase.arrived(0, 0);
        phase.arrived(1, 0);
        phase.arrived(1, 0);
        assert_eq!((phase.seen.len(), phase.duplicates, phase.missing()), (2, 1, 1));
    }
}
