//! The latest pushes this node published (timers fired, alerts raised), per kind, for the
//! monitoring JSON. Bounded: [`PUSHES_PER_KIND`] per kind, the oldest dropped first.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use pam_actors::NotificationKind;

/// Pushes kept per kind.
pub const PUSHES_PER_KIND: usize = 20;
/// Longest `summary` kept (characters).
const SUMMARY_CHARS: usize = 120;

/// One published push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentPush {
    pub id: String,
    pub user: String,
    pub kind: NotificationKind,
    /// `online` (a socket of the user got it), `stored` (none did) or `failed`.
    pub outcome: &'static str,
    /// An alert's `alert_type`, a timer's label (truncated).
    pub summary: String,
    pub at: DateTime<Utc>,
}

/// The per-kind rings (one per process: see [`recent_pushes`]).
#[derive(Debug, Default)]
pub struct RecentPushes {
    timers: Mutex<VecDeque<RecentPush>>,
    alerts: Mutex<VecDeque<RecentPush>>,
}

impl RecentPushes {
    fn ring(&self, kind: NotificationKind) -> &Mutex<VecDeque<RecentPush>> {
        match kind {
            NotificationKind::TimerExpired => &self.timers,
            NotificationKind::ProactiveAlert => &self.alerts,
        }
    }

    /// Keeps `push`, dropping its kind's oldest when full.
    pub fn record(&self, mut push: RecentPush) {
        if push.summary.chars().count() > SUMMARY_CHARS {
            push.summary = push.summary.chars().take(SUMMARY_CHARS).collect();
        }
        let mut ring = self.ring(push.kind).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ring.len() >= PUSHES_PER_KIND {
            ring.pop_front();
        }
        ring.push_back(push);
    }

    /// `kind`'s pushes, newest first.
    pub fn latest(&self, kind: NotificationKind) -> Vec<RecentPush> {
        self.ring(kind).lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().rev().cloned().collect()
    }
}

/// The process-wide record every publish feeds.
pub fn recent_pushes() -> &'static RecentPushes {
    static PUSHES: OnceLock<RecentPushes> = OnceLock::new();
    PUSHES.get_or_init(RecentPushes::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(id: usize, kind: NotificationKind, summary: &str) -> RecentPush {
        RecentPush { id: id.to_string(), user: "u".into(), kind, outcome: "online", summary: summary.into(), at: Utc::now() }
    }

    #[test]
    fn each_kind_keeps_its_latest_newest_first_and_bounded() {
        let pushes = RecentPushes::default();
        for i in 0..PUSHES_PER_KIND + 5 {
            pushes.record(push(i, NotificationKind::ProactiveAlert, "budget_alert"));
        }
        pushes.record(push(99, NotificationKind::TimerExpired, &"x".repeat(500)));
        let alerts = pushes.latest(NotificationKind::ProactiveAlert);
        assert_eq!(alerts.len(), PUSHES_PER_KIND);
        assert_eq!((alerts[0].id.as_str(), alerts[PUSHES_PER_KIND - 1].id.as_str()), ("24", "5"));
        let timers = pushes.latest(NotificationKind::TimerExpired);
        assert_eq!(timers.len(), 1, "alerts never push timers out");
        assert_eq!(timers[0].summary.chars().count(), SUMMARY_CHARS);
    }
}
