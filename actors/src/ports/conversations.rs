//! The `ConversationStore` port: stores each turn's user message and answer (Postgres or SQLite
//! behind it), and the keys and records the turn pipeline and the outbox exchange with it.

use pam_protocol::UserId;
use serde_json::Value;

use super::{BoxFuture, HistoryMessage, StoreError};

/// Conversation persistence (Postgres or SQLite behind it).
///
/// Every write is idempotent by `(user, session, client_msg_id)` and runs in one transaction
/// that rolls back if its future is dropped, so the outbox (and the journal replayed at the next
/// start) may repeat any write after an ambiguous commit without storing anything twice. Each
/// (user, session) has exactly one conversation, however many writers race for its first turn.
pub trait ConversationStore: Send + Sync + 'static {
    /// The last `limit` messages of the user's newest conversation for `turn.session`, oldest
    /// first, without the user message of `turn` itself (the prompt carries it as `message`).
    fn history<'a>(&'a self, turn: &'a TurnKey, limit: usize) -> BoxFuture<'a, Result<Vec<HistoryMessage>, StoreError>>;
    /// Stores the user's message alone (before any model work), keyed by its `client_msg_id`
    /// in the (user, session) conversation. A repeated id stores nothing and reports what is
    /// stored for it.
    fn save_user_message<'a>(&'a self, message: &'a UserMessage) -> BoxFuture<'a, Result<UserSaved, StoreError>>;
    /// Stores the answer to the message with `answer.client_msg_id`; `Ok(false)` when an answer
    /// to that id is stored already (nothing is written then).
    fn save_answer<'a>(&'a self, answer: &'a AnswerRecord) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Marks a stored user message as never answered (the turn was abandoned), so a client that
    /// repeats its id gets a fresh answer at once, and records the abandoned turn (cause
    /// `shutdown`, as [`ConversationStore::record_abandoned`]) in the same transaction: the mark
    /// is journaled while storage is down, and the count must not be lost with it. A missing
    /// message is not an error.
    fn mark_unanswered<'a>(&'a self, mark: &'a UnansweredMark) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records turns given up on without an answer, each once: by user, id and the incarnation
    /// that accepted it, so the drain that abandoned a turn, the nodes that end it as an orphan
    /// and a repeat that finds its node gone all count it one time. Returns how many were new.
    fn record_abandoned<'a>(&'a self, turns: &'a [AbandonedTurn]) -> BoxFuture<'a, Result<usize, StoreError>>;
}

/// Identifies one chat turn everywhere: storage, the outbox, the running-turn registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TurnKey {
    /// Whose turn.
    pub user: UserId,
    /// The conversation.
    pub session: pam_protocol::SessionId,
    /// The v2 chat `id`, `rest:{Idempotency-Key}`, or a server-made `srv:{uuid}` (legacy).
    pub client_msg_id: String,
}

/// A user message, stored on its own before any model work so the turn is never lost.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserMessage {
    /// The turn it belongs to.
    pub key: TurnKey,
    /// What the user wrote.
    pub text: String,
    /// When the server read it.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The node that accepted it (`PAM_NODE_ID`), stored in the row's `metadata.node`.
    pub node: String,
    /// That node's incarnation (its process's boot id, with Redis), stored in `metadata.boot`:
    /// a node restarted under the same id is another incarnation, not the one answering.
    #[serde(default)]
    pub boot: Option<String>,
}

/// An answer stored earlier (text plus the metadata of `turn::turn_metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    /// The answer's text.
    pub text: String,
    /// Who answered, how fast, and why it fell back (`turn_metadata`).
    pub metadata: Value,
}

/// What `save_user_message` did.
#[derive(Debug, Clone, PartialEq)]
pub enum UserSaved {
    /// Stored now.
    New,
    /// The id was stored before.
    Repeat(StoredTurn),
}

/// What is stored for an id that was seen before.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTurn {
    /// `Some` once its answer is stored.
    pub answer: Option<StoredAnswer>,
    /// When the user message was stored.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The user row's metadata (`node`, `unanswered`).
    pub metadata: Value,
}

/// An answer (possibly partial: `metadata.cancelled`) to the user message with the same key;
/// `metadata.client_msg_id` links the two rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnswerRecord {
    /// The turn it answers.
    pub key: TurnKey,
    /// The answer's text (what was streamed, when cancelled).
    pub text: String,
    /// When the answer was complete.
    pub answered_at: chrono::DateTime<chrono::Utc>,
    /// Who answered, how fast, why it fell back, whether it was cancelled.
    pub metadata: Value,
}

/// A turn abandoned unanswered (still running when the shutdown grace ended).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnansweredMark {
    /// The turn that was not answered.
    pub key: TurnKey,
    /// Why (`shutdown`), stored as the user row's `metadata.unanswered`.
    pub reason: String,
    /// The node that abandoned it (`PAM_NODE_ID`); empty in a mark journaled before it was kept.
    #[serde(default)]
    pub node: String,
    /// That node's incarnation (its boot id, with Redis).
    #[serde(default)]
    pub boot: Option<String>,
}

impl UnansweredMark {
    /// The abandoned-turn record this mark stores with it.
    pub fn abandoned(&self) -> AbandonedTurn {
        AbandonedTurn {
            user: self.key.user.clone(),
            client_msg_id: self.key.client_msg_id.clone(),
            node: self.node.clone(),
            boot: self.boot.clone(),
            cause: AbandonCause::Shutdown,
        }
    }
}

/// Why a turn was given up on without an answer: the label values of
/// `pam_turns_abandoned_recent`, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbandonCause {
    /// Still running when its node's shutdown grace ended.
    Shutdown,
    /// Its node (that incarnation of it) died with the turn open; another node ended it.
    Crash,
}

impl AbandonCause {
    /// Every cause, for exporting each (at zero too).
    pub const ALL: [AbandonCause; 2] = [AbandonCause::Shutdown, AbandonCause::Crash];

    /// The stored and exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            AbandonCause::Shutdown => "shutdown",
            AbandonCause::Crash => "crash",
        }
    }
}

/// A turn given up on without an answer, as the database counts it (once per user, id and
/// accepting incarnation), so the count outlives the process that abandoned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbandonedTurn {
    /// Whose turn.
    pub user: UserId,
    /// The turn's id (the v2 chat `id`, `rest:…` or `srv:…`).
    pub client_msg_id: String,
    /// The node that accepted it and could not answer it.
    pub node: String,
    /// That node's incarnation (boot id), when known.
    pub boot: Option<String>,
    /// Why it was given up on.
    pub cause: AbandonCause,
}
