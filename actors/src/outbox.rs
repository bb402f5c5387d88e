//! The turn outbox: answered turns (legacy and REST) and v2 answers whose storage failed wait
//! here (bounded, oldest dropped first with a log line and a metric) until the database is back,
//! so a storage outage loses nothing the user saw unless it outlasts the queue.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::ports::{AssistantMessage, TurnRecord};

pub const TURNS_PENDING: &str = "pam_turns_pending";
pub const TURNS_DROPPED_TOTAL: &str = "pam_turns_dropped_total";

/// A write that failed while the database was unavailable.
#[derive(Debug, Clone)]
pub enum PendingWrite {
    /// A whole turn: user and assistant rows together.
    Turn(TurnRecord),
    /// A v2 answer whose user message (and `ack`) was stored before the outage.
    Answer(AssistantMessage),
}

impl From<TurnRecord> for PendingWrite {
    fn from(turn: TurnRecord) -> Self {
        PendingWrite::Turn(turn)
    }
}

impl From<AssistantMessage> for PendingWrite {
    fn from(answer: AssistantMessage) -> Self {
        PendingWrite::Answer(answer)
    }
}

/// A bounded FIFO of writes waiting to be stored.
#[derive(Debug)]
pub struct TurnOutbox {
    capacity: usize,
    turns: Mutex<VecDeque<PendingWrite>>,
}

impl TurnOutbox {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), turns: Mutex::new(VecDeque::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<PendingWrite>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a write at the back; drops the oldest when full.
    pub fn push(&self, write: impl Into<PendingWrite>) {
        let write = write.into();
        let mut turns = self.lock();
        if turns.len() >= self.capacity {
            turns.pop_front();
            metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
            tracing::error!(capacity = self.capacity, "turn outbox full: dropped the oldest unsaved turn");
        }
        turns.push_back(write);
        metrics::gauge!(TURNS_PENDING).set(turns.len() as f64);
    }

    /// The oldest waiting write.
    pub fn pop(&self) -> Option<PendingWrite> {
        let mut turns = self.lock();
        let write = turns.pop_front();
        metrics::gauge!(TURNS_PENDING).set(turns.len() as f64);
        write
    }

    /// Puts a write that still could not be stored back at the front, keeping the order.
    pub fn push_front(&self, write: PendingWrite) {
        let mut turns = self.lock();
        turns.push_front(write);
        metrics::gauge!(TURNS_PENDING).set(turns.len() as f64);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_protocol::{SessionId, UserId};

    fn turn(text: &str) -> TurnRecord {
        TurnRecord {
            user: UserId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
            session: SessionId::default_session(),
            user_text: text.into(),
            assistant_text: "a".into(),
            client_msg_id: None,
            received_at: chrono::Utc::now(),
            answered_at: chrono::Utc::now(),
            metadata: serde_json::Value::Null,
        }
    }

    #[test]
    fn keeps_order_and_drops_the_oldest_when_full() {
        let outbox = TurnOutbox::new(2);
        outbox.push(turn("1"));
        outbox.push(turn("2"));
        outbox.push(turn("3"));
        let text = |write: PendingWrite| match write {
            PendingWrite::Turn(turn) => turn.user_text,
            PendingWrite::Answer(answer) => answer.text,
        };
        let first = outbox.pop().unwrap();
        outbox.push_front(first);
        assert_eq!(text(outbox.pop().unwrap()), "2");
        assert_eq!(text(outbox.pop().unwrap()), "3");
        assert!(outbox.is_empty());
    }
}
