//! Taking a turn in: its user message is stored before any model work (or journaled in the outbox
//! while storage is down), and the outcome decides whether the model is asked — a new id is
//! answered; a repeat replays its stored answer, waits for the turn answering it here, or is
//! answered again when nobody anywhere can still be answering it.
//! Imports the pipeline, the outbox, the conversation port and the record of a dead node's turns.

use serde_json::Value;

use super::abandoned::record_crashed;
use super::input::{StoreInLine, TurnFailure, TurnInput};
use super::outbox::Durability;
use super::pipeline::{TurnPipeline, storage_warning, traced_write};
use super::running::TurnOrigin;
use crate::metrics_names::TURNS_DROPPED_TOTAL;
use crate::ports::{PendingWrite, StoreError, StoredAnswer, StoredTurn, TurnKey, UserMessage, UserSaved};

/// What taking a turn in decided: whether the model is asked.
pub(crate) enum Intake {
    /// Stored (or journaled) now, or an earlier unanswered copy that nobody answers any more.
    New {
        durable: bool,
    },
    /// Answered before: replay the stored answer, ask no model.
    Replay(StoredAnswer),
    /// Being answered on another node right now.
    Busy,
    Failed(TurnFailure),
}

impl TurnPipeline {
    /// Stores the user message before any model work and decides whether to answer: a new id
    /// is answered; a repeat replays its stored answer, waits for the turn answering it here,
    /// or is answered again when nobody anywhere can still be answering it. The store waits its
    /// place in `line`, so a connection's messages are stored (and read back) in the order it read them.
    pub(crate) async fn intake(&self, input: &TurnInput, turn: u64, mut line: StoreInLine) -> Intake {
        let key = input.key();
        let received_at = line.wait().await;
        let boot = self.liveness.as_ref().map(|liveness| liveness.boot().to_string());
        let message = UserMessage { key: key.clone(), text: input.message.clone(), received_at, node: self.node.to_string(), boot };
        // At most twice: a repeat that waited for the turn answering it here looks again.
        for _ in 0..2 {
            if self.outbox.must_queue(&key) {
                // Storage is behind for this conversation: its writes wait their turn, so this one does too.
                if let Some(pending) = self.outbox.find(&key) {
                    line.release(received_at);
                    if let Some(answer) = pending.answer {
                        return Intake::Replay(StoredAnswer { text: answer.text, metadata: answer.metadata });
                    }
                    if let Some(mut other) = self.running.other(&key, turn) {
                        let _ = other.changed().await;
                        continue;
                    }
                    return Intake::New { durable: true };
                }
                let intake = self.accept_into_outbox(message, &input.origin).await;
                line.release(received_at);
                return intake;
            }
            // The line is released once this store is settled (a failed one only once it is in
            // the outbox), before any wait for another turn answering the same id.
            match traced_write("user_message", self.store.save_user_message(&message)).await {
                Ok(UserSaved::New) => {
                    self.outbox.write_succeeded();
                    line.release(received_at);
                    return Intake::New { durable: true };
                }
                Ok(UserSaved::Repeat(stored)) => {
                    self.outbox.write_succeeded();
                    line.release(received_at);
                    if let Some(mut other) = self.running.other(&key, turn).filter(|_| stored.answer.is_none()) {
                        let _ = other.changed().await;
                        continue;
                    }
                    return self.repeat(&key, stored).await;
                }
                Err(error @ StoreError::Rejected(_)) => {
                    metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                    tracing::error!(%error, origin = %input.origin, user = %input.user, client_msg_id = input.client_msg_id, "the database refused this message; not answering it");
                    return Intake::Failed(TurnFailure::storage_unavailable());
                }
                Err(error) => {
                    self.outbox.write_failed();
                    storage_warning(&error, &input.origin, &key, "could not store the user message; it waits in the outbox");
                    let intake = self.accept_into_outbox(message, &input.origin).await;
                    line.release(received_at);
                    return intake;
                }
            }
        }
        Intake::Busy
    }

    /// A repeated id whose turn is not running here: answered again when nobody can still be
    /// answering it — abandoned, accepted by this node, older than any turn runs, or accepted by
    /// a node that is no longer alive (asked only when the rest does not decide).
    async fn repeat(&self, key: &TurnKey, stored: StoredTurn) -> Intake {
        if let Some(answer) = stored.answer {
            return Intake::Replay(answer);
        }
        let abandoned = stored.metadata.get("unanswered").is_some_and(|v| !v.is_null());
        let accepted_by = stored.metadata.get("node").and_then(Value::as_str);
        let accepted_boot = stored.metadata.get("boot").and_then(Value::as_str);
        let age = chrono::Utc::now().signed_duration_since(stored.received_at).to_std().unwrap_or_default();
        let here = accepted_by == Some(&*self.node)
            && (accepted_boot.is_none() || accepted_boot == self.liveness.as_ref().map(|liveness| liveness.boot()));
        if abandoned || here || age >= self.turn_lifetime {
            return Intake::New { durable: true };
        }
        if let (Some(liveness), Some(node)) = (&self.liveness, accepted_by) {
            if let Ok(false) = liveness.may_be_answering(node, accepted_boot, age).await {
                tracing::info!(node, boot = accepted_boot, "a repeated chat's node (that incarnation of it) is gone; answering it here");
                // The dead node's turn, which no resume may have ended: counted here (once).
                record_crashed(self.store.clone(), &key.user, node, accepted_boot, std::slice::from_ref(&key.client_msg_id));
                return Intake::New { durable: true };
            }
        }
        Intake::Busy
    }

    async fn accept_into_outbox(&self, message: UserMessage, origin: &TurnOrigin) -> Intake {
        match self.outbox.enqueue(PendingWrite::User(message)).await {
            Durability::Journaled => Intake::New { durable: true },
            Durability::MemoryOnly => Intake::New { durable: false },
            Durability::Dropped => {
                tracing::error!(origin = %origin, "the outbox is full and has no journal; this message is answered but not stored");
                Intake::New { durable: false }
            }
        }
    }
}
