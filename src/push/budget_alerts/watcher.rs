//! The budget watcher: one task per node evaluates the budgets of users whose expenses or
//! budgets changed and publishes the alerts it stored (`pam_actors::alerts_for`).
//!
//! What changed is read from the database, never only from a notification that can be missed:
//! triggers on both backends queue every changed user in `pam_budget_checks`, whoever wrote the
//! row and whether or not a gateway was listening. This task drains that queue at start (the
//! changes made while no node ran), on a steady tick and at once when Postgres's
//! `pam_context_changed` says a user's expenses or budgets changed (the notification only wakes
//! it: the queue says who). A queue entry is cleared only once its user was evaluated at that
//! version, so a dropped evaluation, a failed one or a node that dies mid-batch leaves it for the
//! next poll (on Postgres after the claim's short lease), and the unique dedupe key makes a
//! repeated evaluation harmless.
//!
//! Log lines are bounded: one line per batch that stored alerts or failed, not one per row.
//! An alert stored but not published (the task aborted in between) is only late: it comes on the
//! user's next connect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pam_actors::{BudgetAlertStore, PushBus};
use pam_protocol::UserId;
use tokio::sync::Notify;

use crate::push::timers::scheduler::{TICK, publish};

/// Most queued users claimed per poll; a full batch is followed at once by the next one.
const BATCH: usize = 200;
/// Evaluations run at once within a batch (each is one short transaction).
const CONCURRENCY: usize = 8;
/// One evaluation's time budget: a hung database must not stall the others.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(5);
/// The steady poll where change notifications wake the watcher (Postgres): changes whose
/// notification was missed are seen within this. SQLite, which cannot notify, polls every `TICK`.
pub const POLL_WITH_NOTIFICATIONS: Duration = Duration::from_secs(1);
/// The steady poll where nothing wakes the watcher (SQLite): a local read of a small table.
pub const POLL_WITHOUT_NOTIFICATIONS: Duration = TICK;

/// Wakes the watcher task when a user's expenses or budgets changed.
#[derive(Clone)]
pub struct BudgetWatcher {
    wake: Arc<Notify>,
}

impl BudgetWatcher {
    /// Starts the watcher on `store`; it drains the durable queue at once, then every `poll_every`
    /// and whenever `changed` wakes it. The handle is aborted at shutdown.
    pub fn spawn(store: Arc<dyn BudgetAlertStore>, push: Arc<dyn PushBus>, poll_every: Duration) -> (Self, tokio::task::JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = woken.notified() => {}
                }
                drain(&*store, &*push).await;
            }
        });
        (Self { wake }, task)
    }

    /// `user`'s expenses or budgets changed: poll the queue soon (it already names the user).
    pub fn changed(&self, _user: UserId) {
        self.wake.notify_one();
    }
}

/// Polls until the queue has no full batch left.
async fn drain(store: &dyn BudgetAlertStore, push: &dyn PushBus) {
    loop {
        let checks = match store.queued_checks(BATCH).await {
            Ok(checks) => checks,
            Err(error) => return tracing::warn!(%error, "queued budget checks could not be read; retrying"),
        };
        let claimed = checks.len();
        let mut outcomes = futures_util::stream::iter(checks)
            .map(|(user, version)| async move {
                let outcome = evaluate(store, push, &user).await;
                if outcome.is_some() {
                    if let Err(error) = store.check_done(&user, version).await {
                        tracing::debug!(%user, %error, "a budget check could not be cleared; it runs again (alerts are deduplicated)");
                    }
                }
                outcome
            })
            .buffer_unordered(CONCURRENCY);
        let (mut evaluated, mut failed, mut alerts) = (0usize, 0usize, 0usize);
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Some(stored) => {
                    evaluated += 1;
                    alerts += stored;
                }
                None => failed += 1,
            }
        }
        if failed > 0 {
            tracing::warn!(evaluated, failed, alerts, "budget checks: some users could not be evaluated; they are retried");
        } else if alerts > 0 {
            tracing::info!(evaluated, alerts, "budget checks: alerts stored and published");
        }
        if claimed < BATCH || failed == claimed {
            return;
        }
    }
}

/// Evaluates `user`'s budgets and publishes what was stored: how many alerts, `None` on failure.
async fn evaluate(store: &dyn BudgetAlertStore, push: &dyn PushBus, user: &UserId) -> Option<usize> {
    match tokio::time::timeout(EVALUATION_TIMEOUT, store.evaluate(user)).await {
        Ok(Ok(alerts)) => {
            for alert in &alerts {
                tracing::debug!(%user, id = alert.id, "budget alert");
                publish(push, alert).await;
            }
            Some(alerts.len())
        }
        Ok(Err(error)) => {
            tracing::debug!(%user, %error, "budgets could not be evaluated");
            None
        }
        Err(_) => {
            tracing::debug!(%user, "budget evaluation took too long; it is retried");
            None
        }
    }
}
