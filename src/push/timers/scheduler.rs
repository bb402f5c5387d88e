//! The timer scheduler: one task per node claims due timers every 250 ms (`claim_due`, so each
//! fires on exactly one node however many share the database) and publishes their
//! `timer_expired` on the push bus, which reaches the user's sockets on every node. A user with
//! no socket gets it on the next connect (fired timers are re-sent until dismissed or 24 h old),
//! so a claim whose publish never happens (the task aborted in between) is only late, not lost.

use std::sync::Arc;
use std::time::Duration;

use pam_actors::{Notification, NotificationKind, NotificationStore, PushBus};

/// How often due timers are claimed.
pub const TICK: Duration = Duration::from_millis(250);
/// Most timers fired per tick (the rest go on the next one).
const BATCH: usize = 100;
/// How often the pending-timers gauge is refreshed, in ticks.
const GAUGE_EVERY: u32 = 20;

/// `pam_push_total{kind,outcome}`: pushes sent (`online`: a socket of the user got it;
/// `stored`: none did, it waits for the next connect; `failed`: it could not be built or stored).
pub const PUSH_TOTAL: &str = "pam_push_total";
/// `pam_timers_pending`: timers of all users not yet fired (nor dismissed).
pub const TIMERS_PENDING: &str = "pam_timers_pending";

/// Starts the scheduler; the handle is aborted at shutdown.
pub fn spawn(store: Arc<dyn NotificationStore>, push: Arc<dyn PushBus>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            ticker.tick().await;
            if ticks % GAUGE_EVERY == 0 {
                if let Ok(pending) = store.count_pending().await {
                    metrics::gauge!(TIMERS_PENDING).set(pending as f64);
                }
            }
            ticks = ticks.wrapping_add(1);
            match store.claim_due(BATCH).await {
                Ok(rows) => {
                    for row in rows {
                        publish(&*push, &row).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "due timers could not be claimed; retrying"),
            }
        }
    })
}

/// Publishes a stored row's frame to its user; `true` when a socket of the user got it.
pub async fn publish(push: &dyn PushBus, row: &Notification) -> bool {
    let kind = row.kind.as_str();
    let frame = match pam_actors::push_frame(row) {
        Ok(frame) => frame,
        Err(error) => {
            tracing::warn!(id = row.id, %error, "a stored push could not be built");
            metrics::counter!(PUSH_TOTAL, "kind" => kind, "outcome" => "failed").increment(1);
            remember(row, "failed");
            return false;
        }
    };
    let text = serde_json::to_string(&frame).unwrap_or_default();
    let outcome = push.publish(&row.user, &text).await;
    let online = outcome.local_sockets + outcome.remote_nodes > 0;
    let outcome = if online { "online" } else { "stored" };
    metrics::counter!(PUSH_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
    remember(row, outcome);
    online
}

/// Keeps the push in the monitoring record of the latest pushes.
fn remember(row: &Notification, outcome: &'static str) {
    let field = |path: &[&str]| {
        path.iter().try_fold(&row.payload, |value, key| value.get(key)).and_then(serde_json::Value::as_str).unwrap_or_default().to_string()
    };
    let summary = match row.kind {
        NotificationKind::TimerExpired => field(&["label"]),
        NotificationKind::ProactiveAlert => field(&["content", "alert_type"]),
    };
    crate::observability::recent_pushes().record(crate::observability::pushes::RecentPush {
        id: row.id.clone(),
        user: row.user.to_string(),
        kind: row.kind,
        outcome,
        summary,
        at: chrono::Utc::now(),
    });
}
