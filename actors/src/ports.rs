//! Ports: what the actors need from the world, as traits the gateway's adapters implement.

use std::future::Future;
use std::pin::Pin;

use pam_protocol::{UiAction, UserId};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// A boxed, sendable future (trait objects cannot return `impl Future`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`; `None` only for service-role keys.
    pub subject: Option<UserId>,
    /// `role` claim (`authenticated`, `service_role`, `admin`…).
    pub role: String,
    /// `app_metadata.role == "admin"` or `role` admin/service_role.
    pub privileged: bool,
    /// `exp`, unix seconds.
    pub expires_at: Option<u64>,
}

/// Why a token was refused; each maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token does not grant access to this user")]
    Forbidden,
    /// The key set could not be fetched: not the client's fault.
    #[error("cannot verify tokens right now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// A short label for `pam_auth_failures_total{reason}`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Expired => "expired",
            AuthError::Forbidden => "forbidden",
            AuthError::Unavailable(_) => "unavailable",
        }
    }
}

/// Verifies access tokens (HS256 secret, JWKS, dev secret).
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies signature, `exp`, `aud`, `iss` and the presence of `sub`.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>>;
}

/// One earlier message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// Everything a model needs for one turn.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub user_id: UserId,
    /// The conversation the turn belongs to (scopes the response cache).
    pub session: pam_protocol::SessionId,
    pub message: String,
    /// Client context merged with loaded context.
    pub context: Map<String, Value>,
    /// Oldest first, at most 20.
    pub history: Vec<HistoryMessage>,
    /// Route to the fast model.
    pub fast: bool,
    /// The turn's idempotency id (`TurnInput::client_msg_id`): a retry of the same message has
    /// the same id, so a side effect keyed by it (a timer set from chat) happens once.
    pub turn_id: String,
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmReply {
    pub text: String,
    pub model: String,
    /// Which provider produced it (`builtin`, `anthropic`, …).
    pub source: String,
    pub ui_actions: Vec<UiAction>,
    /// Time to the first streamed text, when the provider streamed.
    pub first_token: Option<std::time::Duration>,
    /// Why an earlier provider did not answer (`anthropic: first token timeout`…).
    pub fallback_reason: Option<String>,
    /// Served from the response cache without asking a model.
    pub cached: bool,
    /// The answer changed or read live state (set, listed or cancelled timers): it is never
    /// served again from the response cache.
    pub acted: bool,
}

impl LlmReply {
    /// A fresh answer from `source` with no fallback, cache or timing details.
    pub fn new(text: impl Into<String>, model: impl Into<String>, source: impl Into<String>) -> Self {
        LlmReply {
            text: text.into(),
            model: model.into(),
            source: source.into(),
            ui_actions: Vec::new(),
            first_token: None,
            fallback_reason: None,
            cached: false,
            acted: false,
        }
    }
}

/// Why a model gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("model timed out: {0}")]
    Timeout(String),
    #[error("model unavailable: {0}")]
    Unavailable(String),
    #[error("model response malformed: {0}")]
    Malformed(String),
}

/// A language model that streams text deltas and returns the full answer.
pub trait LlmProvider: Send + Sync + 'static {
    /// Provider name for metrics and logs.
    fn name(&self) -> &str;
    /// Generates an answer; each delta is also pushed into `deltas` as it arrives.
    fn generate<'a>(&'a self, request: &'a LlmRequest, deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>>;
}

/// Why storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database refused this record itself (a data or constraint error): retrying the
    /// same record cannot succeed, so it must not wait in the outbox ahead of good turns.
    #[error("storage refused the record: {0}")]
    Rejected(String),
}

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
    /// repeats its id gets a fresh answer at once. A missing message is not an error.
    fn mark_unanswered<'a>(&'a self, mark: &'a UnansweredMark) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Identifies one chat turn everywhere: storage, the outbox, the running-turn registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TurnKey {
    pub user: UserId,
    pub session: pam_protocol::SessionId,
    /// The v2 chat `id`, `rest:{Idempotency-Key}`, or a server-made `srv:{uuid}` (legacy).
    pub client_msg_id: String,
}

/// A user message, stored on its own before any model work so the turn is never lost.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserMessage {
    pub key: TurnKey,
    pub text: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The node that accepted it (`PAM_NODE_ID`), stored in the row's `metadata.node`.
    pub node: String,
}

/// An answer stored earlier (text plus the metadata of `turn::turn_metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub text: String,
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
    pub key: TurnKey,
    pub text: String,
    pub answered_at: chrono::DateTime<chrono::Utc>,
    pub metadata: Value,
}

/// A turn abandoned unanswered (still running when the shutdown grace ended).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnansweredMark {
    pub key: TurnKey,
    /// Why (`shutdown`), stored as the user row's `metadata.unanswered`.
    pub reason: String,
}
