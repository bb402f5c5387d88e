//! `timers`: `--timers` timers (default 10 000) over many users (at most `--per-user` each, the
//! gateway's pending cap is 50), created through both nodes and all due within one second;
//! every user holds a v2 socket on node A and one on node B. Each timer must fire once, on one
//! node, and its `timer_expired` reach each of the user's two sockets exactly once: duplicates and
//! missing deliveries must both be 0. Lateness is the frame's arrival (wall clock) minus the timer's
//! `fire_at`. Afterwards each fired timer is dismissed over node A's socket, so nothing is re-sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use pam_loadtest::client::{self, next_v2};
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::summary::{Report, Rule, Trend};

use crate::cluster::{TwoNodes, connect_v2, http_base, run_salt, run_user, tokens_for};

/// Options of `pam-loadtest timers`.
#[derive(clap::Args, Clone)]
pub(crate) struct TimersArgs {
    #[command(flatten)]
    nodes: TwoNodes,
    /// Timers in all, spread over as many users as --per-user needs.
    #[arg(long, default_value_t = 10_000)]
    timers: usize,
    /// Timers per user (at most the gateway's 50 pending).
    #[arg(long, default_value_t = 50)]
    per_user: usize,
    /// Seconds from the start to the second the timers fire in (creating them must fit before it).
    #[arg(long, default_value_t = 30)]
    lead_secs: u64,
    /// Seconds after the fire second to wait for the last delivery.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Timer creations in flight at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Optional threshold: lateness p99 below this many ms.
    #[arg(long)]
    p99_ms: Option<f64>,
}

/// Where the timers' deliveries stand: per timer, its fire time and how often each node's socket
/// got it.
#[derive(Default)]
struct Deliveries {
    timers: HashMap<String, (DateTime<Utc>, [u32; 2])>,
    lateness: Trend,
    duplicates: u64,
    /// `timer_expired` frames naming no timer of this run.
    strays: u64,
}

impl Deliveries {
    fn expect(&mut self, timer_id: String, fire_at: DateTime<Utc>) {
        self.timers.insert(timer_id, (fire_at, [0, 0]));
    }

    /// A `timer_expired` for `timer_id` reached node `node`'s socket (0 = A) at `at`.
    fn arrived(&mut self, timer_id: &str, node: usize, at: DateTime<Utc>) {
        let Some((fire_at, counts)) = self.timers.get_mut(timer_id) else {
            self.strays += 1;
            return;
        };
        counts[node] += 1;
        if counts[node] == 1 {
            self.lateness.record_ms((at - *fire_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        } else {
            self.duplicates += 1;
        }
    }

    /// (Socket, timer) pairs that got nothing.
    fn missing(&self) -> u64 {
        self.missing_by_node().iter().sum()
    }

    /// [`Deliveries::missing`] by the node the socket was on (A, B).
    fn missing_by_node(&self) -> [u64; 2] {
        let mut missing = [0, 0];
        for (_, counts) in self.timers.values() {
            for (node, &count) in counts.iter().enumerate() {
                missing[node] += u64::from(count == 0);
            }
        }
        missing
    }

    fn delivered(&self) -> u64 {
        self.timers.values().map(|(_, counts)| counts.iter().filter(|&&c| c > 0).count() as u64).sum()
    }
}

/// Timer `i` of `n` fires `i / n` of the way through the fire second.
fn fire_time(second: DateTime<Utc>, i: usize, n: usize) -> DateTime<Utc> {
    second + chrono::Duration::milliseconds((i * 1000 / n.max(1)) as i64)
}

/// Creates the timers, waits for their deliveries, prints the figures.
pub(crate) async fn run(args: &TimersArgs) -> Result<bool, String> {
    let (a, b, tokens) = args.nodes.resolve()?;
    let started = Instant::now();
    let per_user = args.per_user.clamp(1, 50);
    let salt = run_salt();
    let users: Vec<String> = (0..args.timers.div_ceil(per_user)).map(|n| run_user(salt, n)).collect();
    let tokens = tokens_for(&tokens, &users).await?;
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("timers", progress.clone());
    let (stop_tx, stop) = watch::channel(false);
    eprintln!("== timers: {} users, a socket each on {a} and {b}", users.len());
    let mut sockets = Vec::new();
    for token in &tokens {
        for (node, url) in [&a, &b].into_iter().enumerate() {
            let (mut socket, _) = connect_v2(url, token).await?;
            Progress::bump(&progress.connected);
            let (deliveries, progress, mut stop) = (deliveries.clone(), progress.clone(), stop.clone());
            sockets.push(tokio::spawn(async move {
                let mut notifications = Vec::new();
                loop {
                    tokio::select! {
                        read = next_v2(&mut socket) => match read {
                            Ok(frame) if frame["type"] == "timer_expired" => {
                                Progress::bump(&progress.received);
                                let timer_id = frame["timer_id"].as_str().unwrap_or_default();
                                deliveries.lock().unwrap_or_else(|p| p.into_inner()).arrived(timer_id, node, Utc::now());
                                notifications.push(frame["id"].clone());
                            }
                            Ok(_) => {}
                            Err(error) => return Err(String::from(error)),
                        },
                        _ = stop.changed() => break,
                    }
                }
                // Dismissed once (node A's socket), so the timers are not re-sent on a later connect.
                if node == 0 {
                    for id in notifications {
                        client::send_json(&mut socket, &json!({"type": "dismiss", "id": id})).await?;
                    }
                }
                let _ = futures_util::SinkExt::close(&mut socket).await;
                Ok::<(), String>(())
            }));
        }
    }
    let now = Utc::now();
    let second = DateTime::from_timestamp(now.timestamp() + args.lead_secs as i64 + 1, 0).ok_or("clock out of range")?;
    eprintln!("== creating {} timers due in {}", args.timers, second.to_rfc3339());
    let created = create(args, &[http_base(&a), http_base(&b)], &tokens, per_user, second, &deliveries, &progress).await;
    let expected = created.created * 2;
    let deadline = Instant::now() + (second - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(args.settle_secs);
    while Instant::now() < deadline && deliveries.lock().unwrap_or_else(|p| p.into_inner()).delivered() < expected {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Duplicates may trail the last first delivery.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut socket_errors = 0;
    for socket in sockets {
        if !matches!(socket.await, Ok(Ok(()))) {
            socket_errors += 1;
        }
    }
    let d = std::mem::take(&mut *deliveries.lock().unwrap_or_else(|p| p.into_inner()));
    let mut report = Report::new(
        format!("timers: {} timers over {} users ({} each), due within {}", args.timers, users.len(), per_user, second.to_rfc3339()),
        started.elapsed(),
    );
    report
        .count("timers_created", created.created)
        .count("timers_refused", created.refused)
        .count("deliveries_expected", expected)
        .count("deliveries_once", d.delivered())
        .count("deliveries_missing", d.missing())
        .text("missing on node A / B", format!("{} / {}", d.missing_by_node()[0], d.missing_by_node()[1]))
        .count("deliveries_repeated", d.duplicates)
        .count("stray_timer_frames", d.strays)
        .count("socket_errors", socket_errors)
        .trend("lateness", d.lateness)
        .text(
            "creation took",
            format!(
                "{:.1} s, ended {:.1} s before the fire second (raise --lead-secs if negative)",
                created.took.as_secs_f64(),
                created.margin_s
            ),
        );
    if let Some(error) = created.first_error {
        report.text("first_error", error);
    }
    report
        .threshold("timers_refused", Rule::CountAtMost { max: 0 })
        .threshold("deliveries_missing", Rule::CountAtMost { max: 0 })
        .threshold("deliveries_repeated", Rule::CountAtMost { max: 0 });
    if let Some(limit_ms) = args.p99_ms {
        report.threshold("lateness", Rule::PercentileBelow { p: 99.0, limit_ms });
    }
    println!("{}", report.render());
    Ok(report.passed())
}

struct Created {
    created: u64,
    refused: u64,
    first_error: Option<String>,
    took: Duration,
    /// Seconds from the last creation to the fire second (negative: some fired while others were created).
    margin_s: f64,
}

/// `POST /api/v1/pam/timers` for every timer, user `u`'s through node `u % 2`.
async fn create(
    args: &TimersArgs,
    bases: &[String; 2],
    tokens: &[String],
    per_user: usize,
    second: DateTime<Utc>,
    deliveries: &Arc<Mutex<Deliveries>>,
    progress: &Arc<Progress>,
) -> Created {
    let started = Instant::now();
    let http = pam_loadtest::target::http_client();
    let gate = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.timers {
        let user = i / per_user;
        let fire_at = fire_time(second, i, args.timers);
        let url = format!("{}/api/v1/pam/timers", bases[user % 2]);
        let body = json!({"label": format!("bench {i}"), "timer_type": "timer", "message": format!("bench timer {i}"),
                          "fire_at": fire_at.to_rfc3339_opts(SecondsFormat::Millis, true)});
        let request = http.post(url).bearer_auth(&tokens[user]).json(&body).send();
        let Ok(permit) = gate.clone().acquire_owned().await else { break };
        let (deliveries, progress) = (deliveries.clone(), progress.clone());
        Progress::bump(&progress.sent);
        tasks.spawn(async move {
            let _permit = permit;
            let response = request.await.map_err(|e| format!("POST /api/v1/pam/timers: {e}"))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.as_u16() != 201 {
                return Err(format!("POST /api/v1/pam/timers: {status} {text}"));
            }
            let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("timer answer: {e}"))?;
            let timer_id = body["timer_id"].as_str().ok_or("timer answer without timer_id")?.to_string();
            deliveries.lock().unwrap_or_else(|p| p.into_inner()).expect(timer_id, fire_at);
            Ok(())
        });
    }
    let mut outcome = Created { created: 0, refused: 0, first_error: None, took: Duration::ZERO, margin_s: 0.0 };
    while let Some(done) = tasks.join_next().await {
        match done.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(()) => outcome.created += 1,
            Err(error) => {
                outcome.refused += 1;
                outcome.first_error.get_or_insert(error);
            }
        }
    }
    outcome.took = started.elapsed();
    outcome.margin_s = (second - Utc::now()).num_milliseconds() as f64 / 1000.0;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn timers_spread_over_their_one_second() {
        let second = at(0);
        assert_eq!(fire_time(second, 0, 10_000), second);
        assert_eq!(fire_time(second, 5_000, 10_000), at(500));
        assert_eq!(fire_time(second, 9_999, 10_000), at(999));
    }

    #[test]
    fn each_socket_counts_its_first_delivery_late_ones_as_repeats_and_silence_as_missing() {
        let mut d = Deliveries::default();
        d.expect("t1".into(), at(0));
        d.expect("t2".into(), at(0));
        d.arrived("t1", 0, at(40));
        d.arrived("t1", 1, at(60));
        d.arrived("t1", 1, at(900));
        d.arrived("t2", 0, at(10));
        d.arrived("other", 0, at(10));
        assert_eq!((d.delivered(), d.missing(), d.duplicates, d.strays), (3, 1, 1, 1));
        assert_eq!(d.missing_by_node(), [0, 1]);
        assert_eq!(d.lateness.percentile(100.0), Some(60.0));
    }
}
