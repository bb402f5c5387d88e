//! What a turn is made of: its input, its failure, its answer, and the link to the previous turn
//! of the same connection that keeps a conversation in order. A leaf of the turn pipeline.

use std::time::Duration;

use chrono::{DateTime, Utc};
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
    /// The root span of the turn's trace ([`crate::trace::turn_span`]), carried with the turn
    /// through the actors' mailboxes so that all of its work is traced under it.
    pub span: tracing::Span,
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

/// A connection's line of turns: the signals of its latest turn, which the next one waits for.
/// Two signals, because two things keep order: the user messages are stored in the order the
/// connection read them (so history reads back in that order even when several chats arrive at
/// once, e.g. a client flushing its offline queue on open), and the model work of a turn waits
/// for the previous turn's answer (so it is in the next one's history).
#[derive(Default)]
pub(crate) struct TurnLine {
    last_stored: Option<Stored>,
    last_ended: Option<Previous>,
}

/// Closed once a turn's user message was stored (or its store settled otherwise); holds the time
/// it was stored at, so the next one is stored strictly later even within one clock tick.
type Stored = tokio::sync::watch::Receiver<Option<DateTime<Utc>>>;

impl TurnLine {
    /// The next turn's place in the line; `ended` closes when that turn ends.
    pub(crate) fn join(&mut self, ended: Previous) -> (StoreInLine, Option<Previous>) {
        let (done, stored) = tokio::sync::watch::channel(None);
        let store = StoreInLine { after: self.last_stored.replace(stored), done: Some(done) };
        (store, self.last_ended.replace(ended))
    }
}

/// A turn's place among its connection's user-message stores: it stores after `after`, and
/// the next turn stores after it releases `done` (once its own store is settled, or when dropped).
pub(crate) struct StoreInLine {
    after: Option<Stored>,
    done: Option<tokio::sync::watch::Sender<Option<DateTime<Utc>>>>,
}

impl StoreInLine {
    /// A turn nobody stores behind (the REST route: each request is its own line).
    pub(crate) fn alone() -> Self {
        StoreInLine { after: None, done: None }
    }

    /// Waits for the previous turn's store to settle; the time to store this turn's message at:
    /// now, or just after the previous one's if the clock has not moved past it.
    pub(crate) async fn wait(&mut self) -> DateTime<Utc> {
        let mut previous_at = None;
        if let Some(mut after) = self.after.take() {
            while after.changed().await.is_ok() {}
            previous_at = *after.borrow();
        }
        let now = Utc::now();
        match previous_at {
            Some(previous) if previous >= now => previous + chrono::Duration::microseconds(1),
            _ => now,
        }
    }

    /// This turn's store (at `at`) is settled: the next one may store.
    pub(crate) fn release(&mut self, at: DateTime<Utc>) {
        if let Some(done) = self.done.take() {
            done.send_replace(Some(at));
        }
    }
}

/// Waits until the previous turn has ended (its guard dropped).
pub(crate) async fn wait_for(previous: Option<Previous>) {
    if let Some(mut previous) = previous {
        while previous.changed().await.is_ok() {}
    }
}
