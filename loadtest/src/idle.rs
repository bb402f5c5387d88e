//! `idle`: opens N authenticated sockets, keeps them alive (answering JSON pings), and reports
//! the server's resident memory growth per connection (VmRSS from /proc/<pid>/status, read before
//! the first connect and after the hold).

use std::time::Duration;

use pam_loadtest::auth::Tokens;
use pam_loadtest::client;
use pam_loadtest::summary::{Rate, Report, Rule};
use pam_loadtest::target::rss_kib;

use crate::storm::connect_many_as;

/// Idle figures and report.
pub(crate) struct IdleOutcome {
    pub(crate) report: Report,
    /// RSS growth per open socket, KiB; `None` without a pid.
    pub(crate) kib_per_connection: Option<f64>,
    pub(crate) failures: usize,
}

/// Options of one idle run.
pub(crate) struct IdlePlan {
    pub(crate) connections: usize,
    pub(crate) concurrency: usize,
    pub(crate) hold: Duration,
    /// Fail when the growth per socket is above this many KiB.
    pub(crate) max_kib_per_connection: Option<f64>,
    /// Each socket sends an `init` with a context of this many JSON bytes first (0 = none).
    pub(crate) context_bytes: usize,
    /// Protocol-v2 sockets (each with its session stream) instead of legacy ones.
    pub(crate) v2: bool,
}

pub(crate) async fn run(url: &str, pid: Option<u32>, tokens: &Tokens, plan: &IdlePlan) -> Result<IdleOutcome, String> {
    let before = pid.map(rss_kib).transpose()?;
    let burst = connect_many_as(url, tokens, plan.connections, plan.concurrency, "idle", plan.v2).await;
    let ok = burst.sessions.len();
    let failures = burst.errors.len();
    let mut sessions = burst.sessions;
    if plan.context_bytes > 0 {
        // {"notes":"…"} is the blob plus 12 bytes of JSON.
        let init = serde_json::json!({"type": "init", "context": {"notes": "x".repeat(plan.context_bytes.saturating_sub(12))}});
        for session in &mut sessions {
            client::send_json(&mut session.socket, &init).await?;
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let holders: Vec<_> = sessions.into_iter().map(|s| tokio::spawn(client::hold(s.socket, stop_rx.clone()))).collect();
    eprintln!("idle: {ok} sockets open, {failures} failed; holding {} s", plan.hold.as_secs());
    tokio::time::sleep(plan.hold).await;
    let after = pid.map(rss_kib).transpose()?;
    let _ = stop_tx.send(true);
    let mut survived = 0u64;
    for holder in holders {
        survived += u64::from(holder.await.unwrap_or(false));
    }
    let per_connection = before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64 / ok.max(1) as f64);
    let dialect = if plan.v2 { "v2" } else { "legacy" };
    let title =
        format!("idle {} {dialect} sockets held {} s, context {} bytes each", plan.connections, plan.hold.as_secs(), plan.context_bytes);
    let mut report = Report::new(title, burst.elapsed + plan.hold);
    report
        .count("ws_sessions", ok as u64)
        .rate("connect_success", Rate { passes: ok as u64, fails: failures as u64 })
        .rate("held_until_the_end", Rate { passes: survived, fails: ok as u64 - survived.min(ok as u64) })
        .count("failures", failures as u64);
    match (before, after, per_connection) {
        (Some(b), Some(a), Some(per)) => report.text("server_rss", format!("{b} KiB → {a} KiB = {per:.2} KiB per connection")),
        _ => report.text("server_rss", "not measured (no --pid)"),
    };
    report.threshold("failures", Rule::CountAtMost { max: 0 }).threshold("held_until_the_end", Rule::RateAtLeast { min: 1.0 });
    if let (Some(max), Some(per)) = (plan.max_kib_per_connection, per_connection) {
        report.count("rss_kib_per_connection_x100", (per * 100.0).round() as u64);
        report.threshold("rss_kib_per_connection_x100", Rule::CountAtMost { max: (max * 100.0) as u64 });
    }
    Ok(IdleOutcome { report, kib_per_connection: per_connection, failures })
}
