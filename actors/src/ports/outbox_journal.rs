//! The `OutboxJournal` port: durable storage for conversation writes that wait in the turn
//! outbox while the database cannot take them (a JSON-lines file with fsync in the gateway).

use super::{AnswerRecord, TurnKey, UnansweredMark, UserMessage};

/// A conversation write waiting for the database. Every variant is idempotent by its turn key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum PendingWrite {
    /// A user message, stored before model work (its v2 `ack` went out on the journal's word).
    User(UserMessage),
    /// An answer to a user message.
    Answer(AnswerRecord),
    /// A turn abandoned at shutdown.
    Unanswered(UnansweredMark),
}

impl PendingWrite {
    /// The turn the write belongs to.
    pub fn key(&self) -> &TurnKey {
        match self {
            PendingWrite::User(m) => &m.key,
            PendingWrite::Answer(a) => &a.key,
            PendingWrite::Unanswered(m) => &m.key,
        }
    }
}

/// Durable storage for outbox writes (a JSON-lines file in production).
pub trait OutboxJournal: Send + Sync + 'static {
    /// Appends the writes and makes them durable (fsync) before returning.
    fn append(&self, writes: &[PendingWrite]) -> std::io::Result<()>;
    /// Every write in the journal, oldest first (an unreadable line is skipped and logged).
    fn read_all(&self) -> std::io::Result<Vec<PendingWrite>>;
    /// Empties the journal.
    fn clear(&self) -> std::io::Result<()>;
    /// Where it is, for logs.
    fn location(&self) -> String;
}
