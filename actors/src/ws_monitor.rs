//! `WsMonitor`: what `GET /api/v1/monitoring/websockets` reports, kept apart from the metrics
//! recorder — connections by state now, and opened/closed, closes by code and per-user cap hits
//! over the last five minutes in ten-second buckets. Bounded (at most 31 buckets, each with a
//! map keyed by the closed set of `CloseCode::label_for`, never by the raw code a client chose)
//! and fed by one-line calls where the connection metrics are counted. A leaf: imports only
//! the protocol's close-code table.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pam_protocol::CloseCode;
use tokio::time::Instant;

const BUCKET: Duration = Duration::from_secs(10);
/// `ConnectionPhase` labels that are counted (closed connections are not).
const STATES: [&str; 4] = ["accepted", "authenticating", "ready", "draining"];

#[derive(Debug, Default, Clone)]
struct Bucket {
    index: u64,
    opened: u64,
    closes: BTreeMap<&'static str, u64>,
    user_cap_hits: u64,
}

/// Counts over the last five minutes plus the current connections by state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WsSnapshot {
    /// Connections now, by `ConnectionPhase` label.
    pub by_state: BTreeMap<&'static str, i64>,
    /// Sockets accepted in the window.
    pub opened: u64,
    /// Sockets closed in the window.
    pub closed: u64,
    /// Keyed by `CloseCode::label_for` (`"1000"`, `"4501"`, …, `"other"`).
    pub closes_by_code: BTreeMap<&'static str, u64>,
    /// Sockets refused by the per-user cap in the window.
    pub user_cap_hits: u64,
}

/// The recorder (one per process: see [`ws`]).
#[derive(Debug)]
pub struct WsMonitor {
    base: Instant,
    states: [AtomicI64; 4],
    buckets: Mutex<VecDeque<Bucket>>,
}

impl WsMonitor {
    /// The reporting window.
    pub const WINDOW: Duration = Duration::from_secs(5 * 60);

    /// A recorder whose ten-second buckets count from `base`.
    pub fn new(base: Instant) -> Self {
        Self { base, states: Default::default(), buckets: Mutex::new(VecDeque::new()) }
    }

    fn with_bucket(&self, now: Instant, update: impl FnOnce(&mut Bucket)) {
        let index = now.saturating_duration_since(self.base).as_secs() / BUCKET.as_secs();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.back().is_none_or(|b| b.index != index) {
            buckets.push_back(Bucket { index, ..Bucket::default() });
        }
        let oldest = index.saturating_sub(Self::WINDOW.as_secs() / BUCKET.as_secs());
        while buckets.front().is_some_and(|b| b.index < oldest) {
            buckets.pop_front();
        }
        if let Some(bucket) = buckets.back_mut() {
            update(bucket);
        }
    }

    /// A socket was accepted (it starts in state `accepted`).
    pub fn opened(&self, now: Instant) {
        self.moved(None, Some("accepted"));
        self.with_bucket(now, |b| b.opened += 1);
    }

    /// A socket closed with `code` (counted under its label: unknown codes share `other`).
    pub fn closed(&self, code: u16, now: Instant) {
        let label = CloseCode::label_for(code);
        self.with_bucket(now, |b| *b.closes.entry(label).or_default() += 1);
    }

    /// A user hit `PAM_MAX_CONNECTIONS_PER_USER`.
    pub fn user_cap_hit(&self, now: Instant) {
        self.with_bucket(now, |b| b.user_cap_hits += 1);
    }

    /// A connection left state `from` for `to` (`None` = not counted: new or closed).
    pub fn moved(&self, from: Option<&str>, to: Option<&str>) {
        let slot = |label: Option<&str>| label.and_then(|l| STATES.iter().position(|s| *s == l));
        if let Some(i) = slot(from) {
            self.states[i].fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(i) = slot(to) {
            self.states[i].fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Connections by state now, and the last five minutes' counts.
    pub fn snapshot(&self, now: Instant) -> WsSnapshot {
        let by_state = STATES.iter().zip(&self.states).map(|(label, n)| (*label, n.load(Ordering::Acquire).max(0))).collect();
        let index = now.saturating_duration_since(self.base).as_secs() / BUCKET.as_secs();
        let oldest = index.saturating_sub(Self::WINDOW.as_secs() / BUCKET.as_secs() - 1);
        let buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut snapshot = WsSnapshot { by_state, ..WsSnapshot::default() };
        for bucket in buckets.iter().filter(|b| b.index >= oldest && b.index <= index) {
            snapshot.opened += bucket.opened;
            snapshot.user_cap_hits += bucket.user_cap_hits;
            for (code, n) in &bucket.closes {
                snapshot.closed += n;
                *snapshot.closes_by_code.entry(code).or_default() += n;
            }
        }
        snapshot
    }
}

/// The process-wide recorder the connection actors feed.
pub fn ws_monitor() -> &'static WsMonitor {
    static MONITOR: OnceLock<WsMonitor> = OnceLock::new();
    MONITOR.get_or_init(|| WsMonitor::new(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_cover_the_last_five_minutes_only() {
        let monitor = WsMonitor::new(Instant::now());
        let t0 = Instant::now();
        monitor.opened(t0);
        monitor.closed(4501, t0);
        monitor.user_cap_hit(t0 + Duration::from_secs(60));
        monitor.opened(t0 + Duration::from_secs(200));
        monitor.closed(1000, t0 + Duration::from_secs(200));
        let at_250 = monitor.snapshot(t0 + Duration::from_secs(250));
        assert_eq!((at_250.opened, at_250.closed, at_250.user_cap_hits), (2, 2, 1));
        assert_eq!(at_250.closes_by_code, BTreeMap::from([("1000", 1), ("4501", 1)]));
        let at_330 = monitor.snapshot(t0 + Duration::from_secs(330));
        assert_eq!((at_330.opened, at_330.closed, at_330.user_cap_hits), (1, 1, 1), "the first ten seconds fell out");
        let at_600 = monitor.snapshot(t0 + Duration::from_secs(600));
        assert_eq!((at_600.opened, at_600.closed), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn client_chosen_close_codes_share_one_key_outside_the_closed_set() {
        let monitor = WsMonitor::new(Instant::now());
        let t0 = Instant::now();
        for code in 3000..=4999 {
            monitor.closed(code, t0);
        }
        let snapshot = monitor.snapshot(t0);
        assert_eq!(snapshot.closed, 2000);
        let table_codes_hit = CloseCode::ALL.iter().filter(|c| (3000..=4999).contains(&c.code())).count() as u64;
        assert_eq!(snapshot.closes_by_code.len() as u64, table_codes_hit + 1, "{:?}", snapshot.closes_by_code);
        assert_eq!(snapshot.closes_by_code["other"], 2000 - table_codes_hit);
    }

    #[tokio::test(start_paused = true)]
    async fn states_follow_moves_and_buckets_stay_bounded() {
        let monitor = WsMonitor::new(Instant::now());
        let t0 = Instant::now();
        for second in 0..3600 {
            monitor.opened(t0 + Duration::from_secs(second));
            monitor.moved(Some("accepted"), Some("ready"));
        }
        monitor.moved(Some("ready"), None);
        let snapshot = monitor.snapshot(t0 + Duration::from_secs(3600));
        assert_eq!(snapshot.by_state["ready"], 3599);
        assert_eq!(snapshot.by_state["accepted"], 0);
        assert!(monitor.buckets.lock().unwrap().len() <= 31);
        assert_eq!(snapshot.opened, 290, "29 full buckets in the window, the current one empty");
    }
}
