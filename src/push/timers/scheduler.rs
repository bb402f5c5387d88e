//! The timer scheduler: one task per node claims due timers every 250 ms (`claim_due`, so each
//! fires on exactly one node however many share the database), publishes their `timer_expired`
//! on the push bus, which reaches the user's sockets on every node, and only then commits the
//! claim: on Postgres a node that dies (or gives up) before its publish returned leaves the timers
//! due for the next claim of any node (see `DueClaim`). A publish that takes longer than
//! `CLAIM_HOLD` gives its timers back the same way. A user with no socket gets the timer on the
//! next connect (fired timers are re-sent until dismissed or 24 h old).

use std::sync::Arc;
use std::time::Duration;

use pam_actors::{CLAIM_HOLD, Notification, NotificationKind, NotificationStore, PushBus, STORE_TIMEOUT};

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
            fire_due(&*store, &*push).await;
        }
    })
}

/// Claims what is due, publishes it, then commits the claim — each step bounded, so a hung
/// database or Redis costs a tick, never the scheduler. The claim is dropped uncommitted (its
/// timers due again) when it is not published within `CLAIM_HOLD`.
async fn fire_due(store: &dyn NotificationStore, push: &dyn PushBus) {
    let claim = match tokio::time::timeout(STORE_TIMEOUT, store.claim_due(BATCH)).await {
        Ok(Ok(claim)) => claim,
        Ok(Err(error)) => return tracing::warn!(%error, "due timers could not be claimed; retrying"),
        Err(_) => return tracing::warn!("claiming due timers took too long; retrying"),
    };
    let timers = claim.rows().len();
    if timers == 0 {
        return;
    }
    // All at once: they share the bus's pipelines, and each reaches this node's sockets in order.
    let publishing = futures_util::future::join_all(claim.rows().iter().map(|row| publish(push, row)));
    if tokio::time::timeout(CLAIM_HOLD, publishing).await.is_err() {
        return tracing::warn!(timers, "due timers were not published in time; they are given back and fire again");
    }
    match tokio::time::timeout(STORE_TIMEOUT, claim.commit()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(timers, %error, "fired timers could not be recorded; they fire again (sockets drop the repeat)"),
        Err(_) => tracing::warn!(timers, "recording fired timers took too long; they may fire again (sockets drop the repeat)"),
    }
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
