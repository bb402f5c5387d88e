//! Writes the turns (and v2 answers) waiting in the outbox once the database answers again,
//! oldest first.

use std::sync::Arc;
use std::time::Duration;

use pam_actors::outbox::{PendingWrite, TURNS_DROPPED_TOTAL, TurnOutbox};
use pam_actors::{ConversationStore, StoreError};

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

/// Stores waiting writes in order until the database is unavailable (that write goes back to the
/// front); a write the database refuses is dropped so it cannot block every later one.
pub async fn flush(store: &dyn ConversationStore, outbox: &TurnOutbox) {
    let mut written = 0usize;
    while let Some(write) = outbox.pop() {
        let stored = match &write {
            PendingWrite::Turn(turn) => store.save_turn(turn).await.map(drop),
            PendingWrite::Answer(answer) => store.save_assistant_message(answer).await,
        };
        match stored {
            Ok(()) => written += 1,
            Err(error @ StoreError::Rejected(_)) => {
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                tracing::error!(%error, "the database refused a waiting turn; dropped it");
            }
            Err(error) => {
                outbox.push_front(write);
                tracing::debug!(%error, waiting = outbox.len(), "database still unavailable for waiting turns");
                break;
            }
        }
    }
    if written > 0 {
        tracing::info!(written, waiting = outbox.len(), "stored turns that waited for the database");
    }
}
