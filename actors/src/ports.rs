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
    pub message: String,
    /// Client context merged with loaded context.
    pub context: Map<String, Value>,
    /// Oldest first, at most 20.
    pub history: Vec<HistoryMessage>,
    /// Route to the fast model.
    pub fast: bool,
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

/// One answered chat turn, stored as a user row and an assistant row in one transaction.
#[derive(Debug, Clone)]
pub struct TurnRecord {
    pub user: UserId,
    pub session: pam_protocol::SessionId,
    pub user_text: String,
    pub assistant_text: String,
    /// v2 idempotency key; a repeated id stores nothing.
    pub client_msg_id: Option<String>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub answered_at: chrono::DateTime<chrono::Utc>,
    /// Model, provider, latency, ui_actions.
    pub metadata: Value,
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
pub trait ConversationStore: Send + Sync + 'static {
    /// The last `limit` messages of the user's newest conversation for `session`, oldest first.
    fn history<'a>(
        &'a self,
        user: &'a UserId,
        session: &'a pam_protocol::SessionId,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<HistoryMessage>, StoreError>>;
    /// Stores both rows and bumps the conversation's counters; `Ok(false)` when the
    /// `client_msg_id` was already stored.
    fn save_turn<'a>(&'a self, turn: &'a TurnRecord) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// v2: stores the user's message alone (before any model work), keyed by its
    /// `client_msg_id` in the user's newest conversation for the session. A repeated id stores
    /// nothing and returns the answer stored for it, if there is one yet.
    fn save_user_message<'a>(&'a self, message: &'a UserMessage) -> BoxFuture<'a, Result<UserSaved, StoreError>>;
    /// v2: stores the answer to a message `save_user_message` stored.
    fn save_assistant_message<'a>(&'a self, message: &'a AssistantMessage) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A v2 user message, stored on its own so the `ack` can promise it is durable.
#[derive(Debug, Clone)]
pub struct UserMessage {
    pub user: UserId,
    pub session: pam_protocol::SessionId,
    pub text: String,
    /// The v2 chat `id`.
    pub client_msg_id: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// The conversation a stored user message went into (opaque to the actors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRef(pub String);

/// An answer stored earlier (text plus the metadata of `turn::turn_metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub text: String,
    pub metadata: Value,
}

/// What `save_user_message` did.
#[derive(Debug, Clone, PartialEq)]
pub enum UserSaved {
    /// Stored now; the answer goes into this conversation.
    New(ConversationRef),
    /// The id was stored before; `Some` once its answer is stored too.
    Repeat(Option<StoredAnswer>),
}

/// A v2 answer (possibly partial: `metadata.cancelled`), linked to its user message by
/// `metadata.client_msg_id`.
#[derive(Debug, Clone)]
pub struct AssistantMessage {
    pub conversation: ConversationRef,
    pub text: String,
    pub answered_at: chrono::DateTime<chrono::Utc>,
    pub metadata: Value,
}
