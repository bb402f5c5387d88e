//! The budget watcher: one task per node evaluates the budgets of users whose expenses or
//! budgets changed and publishes the alerts it stored (`pam_actors::alerts_for`).
//!
//! Changes arrive two ways, into the same evaluation: on Postgres the context-invalidation
//! listener forwards every `pam_context_changed` notification of `expenses`/`budgets` (every node
//! hears it; the unique dedupe key lets one node store and send each alert); on SQLite triggers
//! queue the user in `pam_budget_checks`, which this task polls like the timer scheduler does
//! (a plain read first, writes only when something is queued).
//!
//! An evaluation is one transaction, so a dropped one stores nothing and the change is evaluated
//! again (SQLite keeps its queue entry until evaluated; on Postgres the next change of the user
//! re-evaluates). An alert stored but not published (the task aborted in between) is only late:
//! it comes on the user's next connect.

use std::sync::Arc;
use std::time::Duration;

use pam_actors::{BudgetAlertStore, PushBus};
use pam_protocol::UserId;
use tokio::sync::mpsc;

use super::timer_scheduler::{TICK, publish};

/// Users waiting for an evaluation (Postgres notifications); a burst beyond this is dropped
/// with a log line: those users are evaluated again on their next change.
const QUEUE: usize = 1024;
/// Most queued users read per SQLite poll.
const BATCH: usize = 100;
/// One evaluation's time budget: a hung database must not stall the others.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands changed users to the watcher task.
#[derive(Clone)]
pub struct BudgetWatcher {
    changed: mpsc::Sender<UserId>,
}

impl BudgetWatcher {
    /// Starts the watcher on `store`; `poll_queue` on SQLite (its triggers fill a queue table).
    /// The handle is aborted at shutdown.
    pub fn spawn(store: Arc<dyn BudgetAlertStore>, push: Arc<dyn PushBus>, poll_queue: bool) -> (Self, tokio::task::JoinHandle<()>) {
        let (changed, mut queue) = mpsc::channel::<UserId>(QUEUE);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(user) = queue.recv() => {
                        evaluate(&*store, &*push, &user).await;
                    }
                    _ = ticker.tick(), if poll_queue => poll(&*store, &*push).await,
                    // No queue to poll and no one left to send changes (shutdown).
                    else => break,
                }
            }
        });
        (Self { changed }, task)
    }

    /// `user`'s expenses or budgets changed: evaluate them soon.
    pub fn changed(&self, user: UserId) {
        if let Err(mpsc::error::TrySendError::Full(user)) = self.changed.try_send(user) {
            tracing::warn!(%user, "budget watcher queue is full; this change is evaluated with the user's next one");
        }
    }
}

async fn poll(store: &dyn BudgetAlertStore, push: &dyn PushBus) {
    let checks = match store.queued_checks(BATCH).await {
        Ok(checks) => checks,
        Err(error) => return tracing::warn!(%error, "queued budget checks could not be read; retrying"),
    };
    for (user, version) in checks {
        if evaluate(store, push, &user).await {
            if let Err(error) = store.check_done(&user, version).await {
                tracing::warn!(%user, %error, "a budget check could not be cleared; it runs again (alerts are deduplicated)");
            }
        }
    }
}

/// Evaluates `user`'s budgets and publishes what was stored; `false` when it failed.
async fn evaluate(store: &dyn BudgetAlertStore, push: &dyn PushBus, user: &UserId) -> bool {
    match tokio::time::timeout(EVALUATION_TIMEOUT, store.evaluate(user)).await {
        Ok(Ok(alerts)) => {
            for alert in alerts {
                tracing::info!(%user, id = alert.id, "budget alert");
                publish(push, &alert).await;
            }
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%user, %error, "budgets could not be evaluated");
            false
        }
        Err(_) => {
            tracing::warn!(%user, "budget evaluation took too long; it is retried with the next change");
            false
        }
    }
}
