//! `ping`: S sockets each send a JSON `ping` every interval (one in flight per socket) and time
//! the matching `pong`: the gateway's per-frame path (reader → actor → writer) under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use pam_loadtest::auth::Tokens;
use pam_loadtest::client::{self, Socket};
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::summary::{Rate, Report, Rule, Trend};

use crate::storm::connect_many;

/// Ping figures and report.
pub(crate) struct PingOutcome {
    pub(crate) report: Report,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) failures: usize,
}

pub(crate) async fn run(url: &str, tokens: &Tokens, sockets: usize, duration: Duration, interval: Duration) -> PingOutcome {
    let burst = connect_many(url, tokens, sockets, 100, "ping (connecting)").await;
    let connect_failures = burst.errors.len();
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("ping", progress.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = burst
        .sessions
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            // Spread the first pings over one interval so they do not all leave at once.
            let offset = interval.mul_f64(i as f64 / sockets.max(1) as f64);
            tokio::spawn(pinger(session.socket, offset, interval, deadline, progress.clone()))
        })
        .collect();
    let (mut rtt, mut outcome) = (Trend::default(), Rate::default());
    for task in tasks {
        let (trend, ok) = task.await.unwrap_or_default();
        rtt.merge(trend);
        outcome.add(ok);
    }
    let mut report = Report::new(format!("ping {sockets} sockets, one ping per {} ms each", interval.as_millis()), started.elapsed());
    let p99 = rtt.percentile(99.0);
    let failures = connect_failures + outcome.fails as usize;
    report
        .trend("ping_pong", rtt)
        .count("ws_msgs_sent", progress.sent.load(std::sync::atomic::Ordering::Relaxed))
        .rate("sockets_ok", Rate { passes: outcome.passes, fails: outcome.fails + connect_failures as u64 })
        .count("failures", failures as u64)
        .threshold("failures", Rule::CountAtMost { max: 0 });
    PingOutcome { report, p99_ms: p99, failures }
}

async fn pinger(mut socket: Socket, offset: Duration, interval: Duration, deadline: Instant, progress: Arc<Progress>) -> (Trend, bool) {
    let mut rtt = Trend::default();
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        seq += 1;
        let sent = Instant::now();
        if client::send_json(&mut socket, &json!({"type": "ping", "timestamp": seq})).await.is_err() {
            return (rtt, false);
        }
        Progress::bump(&progress.sent);
        loop {
            match client::next_json(&mut socket).await {
                Ok(frame) if frame["type"] == "pong" && frame["timestamp"] == seq => break,
                Ok(_) => {}
                Err(_) => return (rtt, false),
            }
        }
        rtt.record(sent.elapsed());
        Progress::bump(&progress.received);
    }
    let _ = socket.close(None).await;
    (rtt, true)
}
