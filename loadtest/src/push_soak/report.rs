//! `push-soak`'s summary: the sockets' fates, what was offered and accepted, the audit of the
//! ledger against the database, the budget alerts against the spend, delivery times (first read
//! on a socket that was connected before the push was due: alert send → read, timer `fire_at` →
//! read, bulk insert's commit → budget alert read), and the nodes' proof counters
//! (`pam_push_proven_total`, `pam_push_unproven_total`) over the run. The must-holds are
//! thresholds, so a failed one makes the exit code 1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use pam_loadtest::summary::{Report, Rule, Trend};

use super::audit::{self, SocketReads, StoredPush};
use super::budgets::{BudgetBook, compare_keys};
use super::plan::Dialect;
use super::record::{Fate, Origin, SocketRecord};
use super::traffic::{Inserted, Sent};

/// The proof and push counters read from each node's `/metrics`.
const COUNTERS: [&str; 3] = ["pam_push_proven_total", "pam_push_unproven_total", "pam_push_total"];

/// Everything the run gathered.
pub(super) struct Figures {
    pub(super) args_line: String,
    pub(super) users: usize,
    pub(super) records: Vec<SocketRecord>,
    pub(super) rows: Vec<StoredPush>,
    pub(super) sent: Sent,
    pub(super) inserted: Inserted,
    pub(super) book: BudgetBook,
    pub(super) connect_failures: Vec<String>,
    /// Disrupted users planned to stay away.
    pub(super) stayed_away: u64,
    pub(super) queue_left: i64,
    pub(super) freeze_micros: u64,
    pub(super) settle: Duration,
    pub(super) metrics: BTreeMap<String, f64>,
}

/// The series of [`COUNTERS`] summed over both nodes (`name{labels}` → value).
pub(super) async fn scrape(bases: &[String; 2]) -> BTreeMap<String, f64> {
    let http = pam_loadtest::target::http_client();
    let mut sum = BTreeMap::new();
    for base in bases {
        let Ok(response) = http.get(format!("{base}/metrics")).send().await else { continue };
        let text = response.text().await.unwrap_or_default();
        for (series, value) in counters(&text) {
            *sum.entry(series).or_insert(0.0) += value;
        }
    }
    sum
}

/// The lines of a Prometheus text page that are series of [`COUNTERS`].
fn counters(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| {
            COUNTERS.iter().any(|name| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        })
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `after − before` per series (a series new in `after` counts from 0).
pub(super) fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after.iter().map(|(series, value)| (series.clone(), value - before.get(series).copied().unwrap_or(0.0))).collect()
}

/// The ledger in the audit's terms: a socket is settled when it was live at the freeze and
/// connected at least `settle` before it.
fn ledger(records: &[SocketRecord], freeze_micros: u64, settle: Duration) -> Vec<SocketReads> {
    let settle = u64::try_from(settle.as_micros()).unwrap_or(u64::MAX);
    records
        .iter()
        .map(|r| SocketReads {
            user: r.user.clone(),
            settled: r.fate == Fate::Live && r.connected_micros.saturating_add(settle) <= freeze_micros,
            reads: r.reads.clone(),
        })
        .collect()
}

/// Delivery times of the first read of each push on a socket connected before it was due.
struct Latencies {
    alerts: Trend,
    timers: Trend,
    budget: Trend,
}

fn latencies(f: &Figures) -> Latencies {
    let mut first: HashMap<&str, (u64, i64, Option<i64>, &SocketRecord)> = HashMap::new();
    for record in &f.records {
        for read in &record.first_reads {
            let entry = first.entry(read.id.as_str()).or_insert((read.micros, read.wall_ms, read.fire_at_ms, record));
            if read.micros < entry.0 {
                *entry = (read.micros, read.wall_ms, read.fire_at_ms, record);
            }
        }
    }
    let keys: HashMap<&str, &str> = f.rows.iter().filter_map(|r| Some((r.id.as_str(), r.dedupe_key.as_deref()?))).collect();
    let mut l = Latencies { alerts: Trend::default(), timers: Trend::default(), budget: Trend::default() };
    for (id, (micros, wall_ms, fire_at_ms, socket)) in first {
        if let Some((_, stamp, _)) = f.sent.alerts.get(id) {
            if socket.connected_micros < *stamp {
                l.alerts.record_ms(micros.saturating_sub(*stamp) as f64 / 1000.0);
            }
        } else if let Some(fire_at) = fire_at_ms.filter(|_| f.sent.timers.contains_key(id)) {
            if socket.connected_wall_ms < fire_at {
                l.timers.record_ms((wall_ms - fire_at) as f64);
            }
        } else if let Some(stamp) = keys.get(id).and_then(|key| f.book.expected().get(*key)) {
            if socket.connected_micros < *stamp {
                l.budget.record_ms(micros.saturating_sub(*stamp) as f64 / 1000.0);
            }
        }
    }
    l
}

/// The summary with its must-holds.
pub(super) fn build(f: Figures, elapsed: Duration) -> Report {
    let sockets = ledger(&f.records, f.freeze_micros, f.settle);
    let accepted: HashSet<String> = f.sent.alerts.keys().cloned().collect();
    let a = audit::audit(&sockets, &f.rows, &accepted);
    let keys = compare_keys(f.book.expected(), &super::db::budget_keys(&f.rows));
    let budget_ids = super::db::budget_alert_ids(&f.rows);
    let l = latencies(&f);
    let fates = |fate: &Fate| f.records.iter().filter(|r| r.fate == *fate).count() as u64;
    let origins = |origin: Origin| f.records.iter().filter(|r| r.origin == origin).count() as u64;
    let closed: Vec<String> = f
        .records
        .iter()
        .filter_map(|r| if let Fate::Closed(code) = r.fate { Some(code) } else { None })
        .fold(BTreeMap::new(), |mut m: BTreeMap<String, u64>, code| {
            *m.entry(code.map_or("dropped".into(), |c| c.to_string())).or_default() += 1;
            m
        })
        .into_iter()
        .map(|(code, n)| format!("{code}×{n}"))
        .collect();
    let resumes: BTreeMap<String, u64> = f.records.iter().filter_map(|r| r.resume.clone()).fold(BTreeMap::new(), |mut m, outcome| {
        *m.entry(outcome.map_or_else(|reason| format!("failed:{reason}"), |()| "resumed".into())).or_default() += 1;
        m
    });
    let errors: BTreeMap<&str, u64> = f.records.iter().flat_map(|r| &r.error_codes).fold(BTreeMap::new(), |mut m, code| {
        *m.entry(code.as_str()).or_default() += 1;
        m
    });
    let sum = |pick: fn(&SocketRecord) -> u64| f.records.iter().map(pick).sum::<u64>();
    let budget_read = f.records.iter().flat_map(|r| r.reads.keys()).filter(|id| budget_ids.contains(*id)).collect::<HashSet<_>>().len();
    let v2_sockets = f.records.iter().filter(|r| r.dialect == Dialect::V2).count();

    let mut report = Report::new(format!("push-soak: {}", f.args_line), elapsed);
    report
        .count("users", f.users as u64)
        .count("sockets", f.records.len() as u64)
        .text("sockets legacy / v2", format!("{} / {v2_sockets}", f.records.len() - v2_sockets))
        .text(
            "sockets on node A / B",
            format!("{} / {}", f.records.iter().filter(|r| r.node == 0).count(), f.records.iter().filter(|r| r.node == 1).count()),
        )
        .count("connect_failures", f.connect_failures.len() as u64)
        .count("sockets_black_holed", fates(&Fate::BlackHoled))
        .count("sockets_reset", fates(&Fate::Reset))
        .count("sockets_closed_by_server", f.records.iter().filter(|r| matches!(r.fate, Fate::Closed(_))).count() as u64)
        .text("closed by server (code×n)", if closed.is_empty() { "none".into() } else { closed.join(" ") })
        .count("sockets_live_at_end", fates(&Fate::Live))
        .count("comebacks", origins(Origin::Comeback))
        .text("v2 comeback resumes", format!("{resumes:?}"))
        .count("disrupted_users_staying_away", f.stayed_away)
        .count("reconnects_after_server_close", origins(Origin::AfterClose))
        .count("alerts_offered", f.sent.alerts_offered)
        .count("alerts_accepted", f.sent.alerts.len() as u64)
        .count("alerts_refused", f.sent.alerts_refused)
        .count("timers_offered", f.sent.timers_offered)
        .count("timers_created", f.sent.timers.len() as u64)
        .count("timers_refused", f.sent.timers_refused)
        .text("offered for", format!("{:.1} s", f.sent.elapsed.as_secs_f64()))
        .count("expense_statements", f.inserted.statements)
        .count("expense_rows", f.inserted.rows)
        .count("expense_statements_failed", f.inserted.failed)
        .trend("expense_statement_time", f.inserted.took.clone())
        .count("budgets", f.book.budgets.len() as u64)
        .count("budget_queue_left", u64::try_from(f.queue_left).unwrap_or(u64::MAX))
        .count("chats_sent", sum(|r| r.chats_sent))
        .count("chats_answered", sum(|r| r.chats_answered))
        .count("acks_sent", sum(|r| r.acks_sent))
        .text("error frames", format!("{errors:?}"))
        .count("push_frames_read", a.frames_read)
        .count("push_ids_read", a.ids_read)
        .count("budget_alerts_read", budget_read as u64)
        .count("rows", a.rows)
        .count("rows_due_alerts", a.due_alerts)
        .count("rows_due_timers", a.due_timers)
        .count("rows_delivered_proven", a.delivered)
        .count("rows_undelivered", a.undelivered)
        .count("rows_waiting_for_absent_users", a.waiting_for_absent_users)
        .count("rows_expired_undelivered", a.expired_undelivered)
        .count("read_on_several_sockets", a.read_on_several_sockets)
        .count("stranded_beside_live_socket", a.stranded)
        .count("read_by_live_socket_unmarked", a.read_unmarked)
        .count("stray_reads", a.strays)
        .trend("alert_delivery", l.alerts)
        .trend("timer_lateness", l.timers)
        .trend("budget_alert_delivery", l.budget)
        .count("budget_alerts_expected", keys.expected)
        .count("budget_alert_rows", keys.stored);
    for (series, value) in &f.metrics {
        report.text(series, format!("{value:.0}"));
    }
    if let Some(error) = f.sent.first_error.as_ref().or(f.inserted.first_error.as_ref()).or(f.connect_failures.first()) {
        report.text("first_error", error.clone());
    }
    for (n, example) in a.examples.iter().enumerate() {
        report.text(&format!("example {}", n + 1), example.clone());
    }
    report
        .count("a_delivered_without_receipt", a.delivered_without_receipt)
        .count("b_alerts_missing", a.alerts_missing)
        .text("b: accepted without a row", a.accepted_without_row.to_string())
        .count("c_doubled_on_one_socket", a.doubled_same_socket)
        .count("d_budget_alerts_missing", keys.missing)
        .count("d_budget_alerts_extra", keys.extra)
        .count("d_budget_alerts_doubled", keys.doubled);
    for name in [
        "a_delivered_without_receipt",
        "b_alerts_missing",
        "c_doubled_on_one_socket",
        "d_budget_alerts_missing",
        "d_budget_alerts_extra",
        "d_budget_alerts_doubled",
    ] {
        report.threshold(name, Rule::CountAtMost { max: 0 });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_push_counters_are_read_from_a_metrics_page() {
        let page = "# TYPE pam_push_proven_total counter\npam_push_proven_total{proof=\"pong\"} 12\npam_push_proven_total_extra 3\n\
                    pam_push_unproven_total{reason=\"closed\"} 4\npam_ws_frames_total{direction=\"out\"} 9\n";
        assert_eq!(
            counters(page),
            [("pam_push_proven_total{proof=\"pong\"}".to_string(), 12.0), ("pam_push_unproven_total{reason=\"closed\"}".to_string(), 4.0)]
        );
    }

    #[test]
    fn a_delta_counts_new_series_from_zero() {
        let before: BTreeMap<String, f64> = [("a".to_string(), 5.0)].into();
        let after: BTreeMap<String, f64> = [("a".to_string(), 7.0), ("b".to_string(), 2.0)].into();
        assert_eq!(delta(&before, &after), [("a".to_string(), 2.0), ("b".to_string(), 2.0)].into());
    }
}
