//! Writes what waits in the outbox once the database answers again — the in-memory queue
//! oldest first, then (once it has drained) whatever only the journal holds — and, at
//! shutdown, flushes what it can within the grace and leaves the rest in the journal.

use std::sync::Arc;
use std::time::Duration;

use pam_actors::metrics_names::{OUTBOX_REPLAYED_TOTAL, TURNS_DROPPED_TOTAL};
use pam_actors::{ConversationStore, StoreError};
use pam_actors::{PendingWrite, TurnOutbox};
use tokio::time::Instant;

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Runs until aborted (aborting it mid-write loses nothing: a write leaves the queue only once
/// stored, and the journal keeps it until everything is stored).
pub fn spawn(store: Arc<dyn ConversationStore>, outbox: Arc<TurnOutbox>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(RETRY_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            flush(store.as_ref(), &outbox).await;
            outbox.degraded_for();
        }
    })
}

/// How one flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing waits any more (and the journal is cleared).
    Everything,
    /// The database is still unavailable; the rest waits.
    Stopped,
}

async fn store_write(store: &dyn ConversationStore, write: &PendingWrite) -> Result<(), StoreError> {
    let stored = async {
        match write {
            PendingWrite::User(message) => store.save_user_message(message).await.map(drop),
            PendingWrite::Answer(answer) => store.save_answer(answer).await.map(drop),
            PendingWrite::Unanswered(mark) => store.mark_unanswered(mark).await,
        }
    };
    // A hung connection counts as unavailable; the write is idempotent and rolls back if dropped.
    tokio::time::timeout(pam_actors::STORE_TIMEOUT, stored)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {} ms", pam_actors::STORE_TIMEOUT.as_millis()))))
}

/// Stores waiting writes in order until the database is unavailable (that write stays at the
/// front); a write the database refuses is dropped so it cannot block every later one.
pub async fn flush(store: &dyn ConversationStore, outbox: &TurnOutbox) -> Flushed {
    let mut written = 0usize;
    while let Some((seq, write)) = outbox.peek() {
        match store_write(store, &write).await {
            Ok(()) => {
                if written == 0 {
                    // The database takes writes again: new turns of other pairs go to it directly.
                    outbox.write_succeeded();
                }
                written += 1;
            }
            Err(error @ StoreError::Rejected(_)) => {
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                tracing::error!(%error, key = ?write.key(), "the database refused a waiting write; dropped it");
            }
            Err(error) => {
                outbox.write_failed();
                tracing::debug!(%error, waiting = outbox.len(), "database still unavailable for waiting writes");
                return Flushed::Stopped;
            }
        }
        outbox.remove(seq);
    }
    if written > 0 {
        tracing::info!(written, "stored writes that waited for the database");
    }
    let Some((journaled, spills)) = outbox.journal_to_replay() else {
        outbox.settle_journal(None);
        return if outbox.is_empty() { Flushed::Everything } else { Flushed::Stopped };
    };
    let total = journaled.len();
    for write in &journaled {
        match store_write(store, write).await {
            Ok(()) => metrics::counter!(OUTBOX_REPLAYED_TOTAL).increment(1),
            Err(error @ StoreError::Rejected(_)) => {
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                tracing::error!(%error, key = ?write.key(), "the database refused a journaled write; dropped it");
            }
            Err(error) => {
                outbox.write_failed();
                tracing::debug!(%error, "database still unavailable for journaled writes");
                return Flushed::Stopped;
            }
        }
    }
    outbox.write_succeeded();
    outbox.settle_journal(Some(spills));
    tracing::info!(writes = total, "replayed the outbox journal into the database");
    if outbox.is_empty() { Flushed::Everything } else { Flushed::Stopped }
}

/// At shutdown: flushes until everything is stored or `deadline`; says what is left and where.
pub async fn final_flush(store: &dyn ConversationStore, outbox: &TurnOutbox, deadline: Instant) {
    loop {
        let attempt = tokio::time::timeout_at(deadline, flush(store, outbox)).await;
        if attempt == Ok(Flushed::Everything) {
            return;
        }
        if Instant::now() + Duration::from_millis(200) >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waiting = outbox.len();
    match outbox.journal_location() {
        Some(journal) => tracing::warn!(
            waiting,
            journal,
            "the database did not take every waiting write before shutdown; they stay in the journal and are replayed at the next start"
        ),
        None => {
            tracing::error!(waiting, "the database did not take every waiting write before shutdown and there is no journal: they are lost")
        }
    }
}
