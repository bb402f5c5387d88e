//! `storm`: N connect + auth in one burst with bounded concurrency. Reports connects per second,
//! failures, `ws_connecting`, and connects that stalled on a SYN retry (TCP connect ≥ 1 s: the
//! server's accept backlog overflowed and the kernel dropped the SYN). Also the connect phase of
//! `idle`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use pam_loadtest::auth::Tokens;
use pam_loadtest::client::{self, SYN_RETRY_STALL, Session};
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::summary::{Rate, Report, Rule, Trend};

/// What a burst produced.
pub(crate) struct Burst {
    pub(crate) sessions: Vec<Session>,
    pub(crate) errors: Vec<String>,
    pub(crate) elapsed: Duration,
    pub(crate) connecting: Trend,
    pub(crate) tcp: Trend,
}

impl Burst {
    pub(crate) fn connects_per_second(&self) -> f64 {
        self.sessions.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn stalls(&self) -> usize {
        self.tcp.at_least(SYN_RETRY_STALL.as_secs_f64() * 1000.0)
    }
}

/// Opens `count` sessions, at most `concurrency` connecting at once.
pub(crate) async fn connect_many(url: &str, tokens: &Tokens, count: usize, concurrency: usize, label: &str) -> Burst {
    connect_many_as(url, tokens, count, concurrency, label, false).await
}

/// [`connect_many`], v2 sockets when `v2` (see [`client::connect_as`]).
pub(crate) async fn connect_many_as(url: &str, tokens: &Tokens, count: usize, concurrency: usize, label: &str, v2: bool) -> Burst {
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start(label, progress.clone());
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|n| {
            let (url, tokens, permits, progress) = (url.to_string(), tokens.clone(), permits.clone(), progress.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                let result = client::connect_as(&url, &tokens, n, v2).await;
                Progress::bump(if result.is_ok() { &progress.connected } else { &progress.failed });
                result
            })
        })
        .collect();
    let mut burst = Burst {
        sessions: Vec::with_capacity(count),
        errors: Vec::new(),
        elapsed: Duration::ZERO,
        connecting: Trend::default(),
        tcp: Trend::default(),
    };
    for task in tasks {
        match task.await.unwrap_or_else(|e| Err(format!("task: {e}"))) {
            Ok(session) => {
                burst.connecting.record(session.connecting);
                burst.tcp.record(session.tcp);
                burst.sessions.push(session);
            }
            Err(error) => burst.errors.push(error),
        }
    }
    burst.elapsed = started.elapsed();
    burst
}

/// The storm's figures and report.
pub(crate) struct StormOutcome {
    pub(crate) report: Report,
    pub(crate) elapsed: Duration,
    pub(crate) connects_per_second: f64,
    pub(crate) failures: usize,
    pub(crate) stalls: usize,
}

pub(crate) async fn run(url: &str, tokens: &Tokens, count: usize, concurrency: usize) -> StormOutcome {
    let mut burst = connect_many(url, tokens, count, concurrency, "storm").await;
    let (elapsed, rate, stalls) = (burst.elapsed, burst.connects_per_second(), burst.stalls());
    let failures = burst.errors.len();
    let mut report = Report::new(format!("storm {count} connects, concurrency {concurrency}"), elapsed);
    report
        .trend("ws_connecting", std::mem::take(&mut burst.connecting))
        .trend("tcp_connect", std::mem::take(&mut burst.tcp))
        .count("ws_sessions", burst.sessions.len() as u64)
        .text("connects_per_second", format!("{rate:.0}/s ({:.3} s for {count})", elapsed.as_secs_f64()))
        .rate("connect_success", Rate { passes: burst.sessions.len() as u64, fails: failures as u64 })
        .count("syn_retry_stalls", stalls as u64)
        .count("failures", failures as u64);
    if let Some(first) = burst.errors.first() {
        report.text("first_error", first.clone());
    }
    report.threshold("failures", Rule::CountAtMost { max: 0 }).threshold("syn_retry_stalls", Rule::CountAtMost { max: 0 });
    drop(burst.sessions);
    StormOutcome { report, elapsed, connects_per_second: rate, failures, stalls }
}
