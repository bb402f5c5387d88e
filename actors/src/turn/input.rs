//! What a turn is made of: its input, its failure, its answer, and the link to the previous turn
//! of the same connection that keeps a conversation in order. A leaf of the turn pipeline.

use std::time::Duration;

use pam_protocol::{ErrorCode, SessionId, UserId};
use serde_json::{Map, Value};

use super::running::TurnOrigin;
use crate::ports::{LlmError, LlmReply, TurnKey};

/// One chat turn to answer.
#[derive(Debug, Clone)]
pub struct TurnInput {
    /// Whose turn it is.
    pub user: UserId,
    /// The conversation it belongs to.
    pub session: SessionId,
    /// The user's message.
    pub message: String,
    /// Client-sent context (loaded context wins on equal keys).
    pub context: Map<String, Value>,
    /// Idempotency key: the v2 `id`, `rest:{Idempotency-Key}`, or server-made for legacy turns
    /// (`srv:{uuid}`), so a retried write never stores the turn twice.
    pub client_msg_id: String,
    /// Who carried the turn in (for logs).
    pub origin: TurnOrigin,
}

impl TurnInput {
    /// The key that identifies this turn in storage, the outbox and the running-turn registry.
    pub fn key(&self) -> TurnKey {
        TurnKey { user: self.user.clone(), session: self.session.clone(), client_msg_id: self.client_msg_id.clone() }
    }

    /// A server-made idempotency id for a turn whose client sent none (legacy sockets).
    pub fn server_msg_id() -> String {
        format!("srv:{}", uuid::Uuid::new_v4())
    }
}

/// Why a turn produced no model answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnFailure {
    /// The `error_code` the client gets.
    pub code: ErrorCode,
    /// What the client is told.
    pub message: String,
}

impl TurnFailure {
    /// The apology a client gets when the model gave no answer.
    pub fn from_llm(error: LlmError) -> Self {
        TurnFailure {
            code: ErrorCode::LlmUnavailable,
            message: format!("Sorry, I couldn't come up with an answer just now ({error}). Please try again in a moment."),
        }
    }

    pub(crate) fn storage_unavailable() -> Self {
        TurnFailure {
            code: ErrorCode::StorageUnavailable,
            message: "PAM could not store this message, so it was not answered; please send it again".into(),
        }
    }

    pub(crate) fn still_running_elsewhere() -> Self {
        TurnFailure {
            code: ErrorCode::LlmUnavailable,
            message: "this message is still being answered on another PAM node; send it again with the same id in a moment".into(),
        }
    }
}

/// The result of one turn.
#[derive(Debug, Clone)]
pub struct TurnAnswer {
    /// From the start of the turn to its end.
    pub latency: Duration,
    /// The model's answer, or why there is none.
    pub result: Result<LlmReply, TurnFailure>,
}

/// The previous turn of the same connection: closed when it has ended.
pub(crate) type Previous = tokio::sync::watch::Receiver<()>;

/// Waits until the previous turn has ended (its guard dropped).
pub(crate) async fn wait_for(previous: Option<Previous>) {
    if let Some(mut previous) = previous {
        while previous.changed().await.is_ok() {}
    }
}
