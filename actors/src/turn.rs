//! `TurnPipeline`: answers one chat turn end to end — loads history and context in parallel,
//! asks the `LlmProvider`, stores the turn (or queues it in the outbox while storage is down).
//! The `OrchestratorActor` runs it for sockets; the REST chat route runs it directly, so both
//! paths share context, storage, models and fallback.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ErrorCode, SessionId, UserId};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::context_loader::ContextLoaders;
use crate::metrics_names::{CHAT_FIRST_TOKEN_SECONDS, LLM_REQUESTS_TOTAL};
use crate::outbox::{TURNS_DROPPED_TOTAL, TurnOutbox};
use crate::ports::{ConversationStore, LlmError, LlmProvider, LlmReply, LlmRequest, StoreError, TurnRecord};

/// Messages kept per session for the prompt.
const HISTORY_LIMIT: usize = 20;
/// How long a chat waits for its history before answering without it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(2);
/// A message this short, without a question, goes to the fast model.
const FAST_MAX_CHARS: usize = 60;

/// What a turn needs; shared by every connection and the REST route.
#[derive(Clone)]
pub struct TurnPipeline {
    pub llm: Arc<dyn LlmProvider>,
    pub store: Arc<dyn ConversationStore>,
    pub outbox: Arc<TurnOutbox>,
    pub loaders: ContextLoaders,
    /// Outer deadline for the whole answer.
    pub llm_timeout: Duration,
}

/// One chat turn to answer.
#[derive(Debug, Clone)]
pub struct TurnInput {
    pub user: UserId,
    pub session: SessionId,
    pub message: String,
    /// Client-sent context (loaded context wins on equal keys).
    pub context: Map<String, Value>,
    /// Idempotency key (v2 `id`, REST `Idempotency-Key`); a repeated one stores nothing.
    pub client_msg_id: Option<String>,
}

/// Why a turn produced no model answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnFailure {
    pub code: ErrorCode,
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
}

/// The result of one turn.
#[derive(Debug, Clone)]
pub struct TurnAnswer {
    pub latency: Duration,
    pub result: Result<LlmReply, TurnFailure>,
}

impl TurnPipeline {
    /// Answers `input`; model deltas are pushed into `deltas` as they arrive (a closed channel
    /// makes providers skip them).
    pub async fn answer(&self, input: TurnInput, deltas: mpsc::Sender<String>) -> TurnAnswer {
        let started = Instant::now();
        let received_at = chrono::Utc::now();
        let request = self.request(&input).await;
        let result = self.generate(&request, deltas).await;
        self.record_outcome(&result, started.elapsed());
        if let Ok(reply) = &result {
            self.store_turn(&input, reply, received_at, started.elapsed()).await;
        }
        TurnAnswer { latency: started.elapsed(), result: result.map_err(TurnFailure::from_llm) }
    }

    /// Asks the model under the outer deadline.
    pub(crate) async fn generate(&self, request: &LlmRequest, deltas: mpsc::Sender<String>) -> Result<LlmReply, LlmError> {
        match tokio::time::timeout(self.llm_timeout, self.llm.generate(request, deltas)).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Timeout(format!("no answer within {} ms", self.llm_timeout.as_millis()))),
        }
    }

    /// Metrics and the log line for one model call (`elapsed` stands in for a missing first token).
    pub(crate) fn record_outcome(&self, result: &Result<LlmReply, LlmError>, elapsed: Duration) {
        match result {
            Ok(reply) => {
                // A response-cache hit asked no model; it is counted apart so request rates stay honest.
                let outcome = if reply.cached { "cached" } else { "ok" };
                metrics::counter!(LLM_REQUESTS_TOTAL, "provider" => reply.source.clone(), "model" => reply.model.clone(), "outcome" => outcome).increment(1);
                let first_token = reply.first_token.unwrap_or(elapsed);
                metrics::histogram!(CHAT_FIRST_TOKEN_SECONDS).record(first_token.as_secs_f64());
            }
            Err(error) => {
                let provider = self.llm.name().to_string();
                let outcome = if matches!(error, LlmError::Timeout(_)) { "timeout" } else { "error" };
                tracing::warn!(provider, %error, "model gave no answer");
                metrics::counter!(LLM_REQUESTS_TOTAL, "provider" => provider, "model" => "unknown", "outcome" => outcome).increment(1);
            }
        }
    }

    /// The model request: message, merged context and stored history, loaded in parallel.
    pub(crate) async fn request(&self, input: &TurnInput) -> LlmRequest {
        let history = tokio::time::timeout(HISTORY_TIMEOUT, self.store.history(&input.user, &input.session, HISTORY_LIMIT));
        let (history, loaded) = tokio::join!(history, self.loaders.load_all(&input.user));
        let history = match history {
            Ok(Ok(history)) => history,
            Ok(Err(error)) => {
                tracing::warn!(%error, "history unavailable; answering without it");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("history took too long; answering without it");
                Vec::new()
            }
        };
        let mut context = input.context.clone();
        context.extend(loaded);
        LlmRequest { user_id: input.user.clone(), message: input.message.clone(), context, history, fast: is_simple_turn(&input.message) }
    }

    async fn store_turn(&self, input: &TurnInput, reply: &LlmReply, received_at: chrono::DateTime<chrono::Utc>, latency: Duration) {
        let answered_at = chrono::Utc::now().max(received_at + chrono::Duration::microseconds(1));
        let turn = TurnRecord {
            user: input.user.clone(),
            session: input.session.clone(),
            user_text: input.message.clone(),
            assistant_text: reply.text.clone(),
            client_msg_id: input.client_msg_id.clone(),
            received_at,
            answered_at,
            metadata: turn_metadata(reply, latency),
        };
        // Behind earlier unsaved turns, a turn waits its place so the conversation stays in order.
        if !self.outbox.is_empty() {
            return self.outbox.push(turn);
        }
        match self.store.save_turn(&turn).await {
            Ok(_) => {}
            Err(error @ StoreError::Rejected(_)) => {
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                tracing::error!(%error, session = %input.session, "the database refused this turn; it is not stored");
            }
            Err(error) => {
                tracing::warn!(%error, session = %input.session, "could not store the turn; it waits in the outbox");
                self.outbox.push(turn);
            }
        }
    }
}

/// What is stored beside the assistant's text: who answered, how fast, and why it fell back.
pub fn turn_metadata(reply: &LlmReply, latency: Duration) -> Value {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    serde_json::json!({
        "model": reply.model,
        "provider": reply.source,
        "latency_ms": millis(latency),
        "first_token_ms": reply.first_token.map(millis),
        "fallback_reason": reply.fallback_reason,
        "cached": reply.cached,
        "ui_actions": reply.ui_actions,
    })
}

/// Short, question-free turns ("hi", "thanks!") need no accurate model.
pub fn is_simple_turn(message: &str) -> bool {
    let trimmed = message.trim();
    trimmed.chars().count() <= FAST_MAX_CHARS && !trimmed.contains('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_statements_are_simple_and_questions_are_not() {
        assert!(is_simple_turn("hi PAM"));
        assert!(!is_simple_turn("how much is left?"));
        assert!(!is_simple_turn(&"plan my trip ".repeat(10)));
    }
}
