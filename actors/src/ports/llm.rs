//! The `LlmProvider` port: a language model that streams an answer for one turn; the gateway's
//! Anthropic, OpenAI-compatible and builtin providers implement it.

use pam_protocol::{UiAction, UserId};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::BoxFuture;

/// One earlier message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// The message's text.
    pub content: String,
}

/// Everything a model needs for one turn.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// Whose turn (tools act for this user only).
    pub user_id: UserId,
    /// The conversation the turn belongs to (scopes the response cache).
    pub session: pam_protocol::SessionId,
    /// What the user wrote.
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
    /// The answer's text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Which provider produced it (`builtin`, `anthropic`, …).
    pub source: String,
    /// Actions the client may render (open a map, show a budget…).
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
    /// No first token, or no whole answer, in time.
    #[error("model timed out: {0}")]
    Timeout(String),
    /// The provider refused or could not be reached.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// The provider answered with something unreadable.
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
