//! The slow-query ring: the last queries that took longer than the threshold (1 s), with name,
//! duration and when they finished. Bounded; the threshold is adjustable so tests need not wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Queries slower than this are recorded.
pub const SLOW_QUERY_THRESHOLD: Duration = Duration::from_secs(1);
/// Slow queries kept.
pub const SLOW_QUERY_CAPACITY: usize = 100;

/// One slow query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowQuery {
    pub name: &'static str,
    pub duration: Duration,
    pub at: DateTime<Utc>,
}

/// The bounded ring (one per process: see [`slow_queries`]).
#[derive(Debug)]
pub struct SlowQueryRing {
    threshold_us: AtomicU64,
    capacity: usize,
    total: AtomicU64,
    recent: Mutex<VecDeque<SlowQuery>>,
}

impl SlowQueryRing {
    pub fn new(threshold: Duration, capacity: usize) -> Self {
        let threshold_us = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
        Self { threshold_us: AtomicU64::new(threshold_us), capacity, total: AtomicU64::new(0), recent: Mutex::new(VecDeque::new()) }
    }

    pub fn threshold(&self) -> Duration {
        Duration::from_micros(self.threshold_us.load(Ordering::Relaxed))
    }

    /// Changes the threshold (tests use a tiny one instead of waiting a second per query).
    pub fn set_threshold(&self, threshold: Duration) {
        self.threshold_us.store(u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Keeps `name` if it took longer than the threshold.
    pub fn record(&self, name: &'static str, duration: Duration) {
        if duration <= self.threshold() {
            return;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() >= self.capacity {
            recent.pop_front();
        }
        recent.push_back(SlowQuery { name, duration, at: Utc::now() });
    }

    /// Slow queries seen since start (including those the ring no longer holds).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The ring, newest first.
    pub fn recent(&self) -> Vec<SlowQuery> {
        self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().rev().cloned().collect()
    }
}

/// The process-wide ring every timed query feeds.
pub fn slow_queries() -> &'static SlowQueryRing {
    static RING: OnceLock<SlowQueryRing> = OnceLock::new();
    RING.get_or_init(|| SlowQueryRing::new(SLOW_QUERY_THRESHOLD, SLOW_QUERY_CAPACITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_over_the_threshold_are_kept_newest_first_and_bounded() {
        let ring = SlowQueryRing::new(Duration::from_secs(1), 3);
        ring.record("fast", Duration::from_millis(999));
        ring.record("exactly", Duration::from_secs(1));
        for name in ["a", "b", "c", "d"] {
            ring.record(name, Duration::from_millis(1500));
        }
        let names: Vec<_> = ring.recent().iter().map(|q| q.name).collect();
        assert_eq!(names, ["d", "c", "b"]);
        assert_eq!(ring.total(), 4);
        ring.set_threshold(Duration::from_millis(1));
        ring.record("now slow", Duration::from_millis(2));
        assert_eq!(ring.recent()[0].name, "now slow");
    }
}
