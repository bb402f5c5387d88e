//! Writes the turns waiting in the outbox once the database answers again, oldest first.

use std::sync::Arc;
use std::time::Duration;

use pam_actors::ConversationStore;
use pam_actors::outbox::TurnOutbox;

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Runs until aborted.
pub fn spawn(store: Arc<dyn ConversationStore>, outbox: Arc<TurnOutbox>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(RETRY_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            flush(store.as_ref(), &outbox).await;
        }
    })
}

/// Stores waiting turns in order until one fails (it goes back to the front).
pub async fn flush(store: &dyn ConversationStore, outbox: &TurnOutbox) {
    let mut written = 0usize;
    while let Some(turn) = outbox.pop() {
        match store.save_turn(&turn).await {
            Ok(_) => written += 1,
            Err(error) => {
                outbox.push_front(turn);
                tracing::debug!(%error, waiting = outbox.len(), "database still unavailable for waiting turns");
                break;
            }
        }
    }
    if written > 0 {
        tracing::info!(written, waiting = outbox.len(), "stored turns that waited for the database");
    }
}
