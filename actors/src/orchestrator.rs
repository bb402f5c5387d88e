//! `OrchestratorActor`: started lazily by a connection on its first chat. Builds the model
//! request (message, merged context, stored session history), asks the `LlmProvider` under a
//! deadline, stores the turn and reports the outcome to its connection. One per chatting
//! connection; it may crash without taking the connection down.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ErrorCode, SessionId, UserId};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::connection::{ChatOutcome, ConnectionMsg, TurnFailure};
use crate::context_loader::ContextLoaders;
use crate::metrics_names::{CHAT_FIRST_TOKEN_SECONDS, LLM_REQUESTS_TOTAL, ORCHESTRATORS_ACTIVE};
use crate::outbox::TurnOutbox;
use crate::ports::{ConversationStore, LlmError, LlmProvider, LlmReply, LlmRequest, TurnRecord};

/// Messages kept per session for the prompt.
const HISTORY_LIMIT: usize = 20;
/// How long a chat waits for its history before answering without it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(2);
/// A message this short, without a question, goes to the fast model.
const FAST_MAX_CHARS: usize = 60;

pub struct OrchestratorActor;

pub struct OrchestratorArgs {
    pub connection: ActorRef<ConnectionMsg>,
    pub user: UserId,
    pub llm: Arc<dyn LlmProvider>,
    pub store: Arc<dyn ConversationStore>,
    pub outbox: Arc<TurnOutbox>,
    pub loaders: ContextLoaders,
    pub llm_timeout: Duration,
}

/// One chat turn to answer.
#[derive(Debug, Clone)]
pub struct ChatJob {
    pub turn: u64,
    pub session: SessionId,
    pub message: String,
    pub context: Map<String, Value>,
}

pub enum OrchestratorMsg {
    Chat(ChatJob),
}

/// Keeps `pam_orchestrators_active` right however the actor ends (panics skip `post_stop`).
struct ActiveGauge;

impl ActiveGauge {
    fn new() -> Self {
        metrics::gauge!(ORCHESTRATORS_ACTIVE).increment(1.0);
        ActiveGauge
    }
}

impl Drop for ActiveGauge {
    fn drop(&mut self) {
        metrics::gauge!(ORCHESTRATORS_ACTIVE).decrement(1.0);
    }
}

pub struct OrchestratorState {
    args: OrchestratorArgs,
    _active: ActiveGauge,
}

impl Actor for OrchestratorActor {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: OrchestratorArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(OrchestratorState { args, _active: ActiveGauge::new() })
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match message {
            OrchestratorMsg::Chat(job) => {
                let outcome = state.answer(job).await;
                // The connection may already be gone; then nobody is waiting for the answer.
                let _ = state.args.connection.cast(ConnectionMsg::ChatFinished(outcome));
            }
        }
        Ok(())
    }
}

impl OrchestratorState {
    async fn answer(&mut self, job: ChatJob) -> ChatOutcome {
        let started = Instant::now();
        let received_at = chrono::Utc::now();
        let history = tokio::time::timeout(HISTORY_TIMEOUT, self.args.store.history(&self.args.user, &job.session, HISTORY_LIMIT));
        let (history, loaded) = tokio::join!(history, self.args.loaders.load_all(&self.args.user));
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
        // Loaded context wins over anything a client sent under the same key.
        let mut context = job.context;
        context.extend(loaded);
        let request = LlmRequest {
            user_id: self.args.user.clone(),
            message: job.message.clone(),
            context,
            history,
            fast: is_simple_turn(&job.message),
        };
        // Legacy answers are sent whole, so nobody reads deltas here: a closed channel makes
        // providers skip them instead of waiting.
        let (deltas, _) = mpsc::channel(1);
        let provider = self.args.llm.name().to_string();
        let result = match tokio::time::timeout(self.args.llm_timeout, self.args.llm.generate(&request, deltas)).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Timeout(format!("no answer within {} ms", self.args.llm_timeout.as_millis()))),
        };
        let outcome = match &result {
            Ok(reply) => {
                metrics::counter!(LLM_REQUESTS_TOTAL, "provider" => reply.source.clone(), "model" => reply.model.clone(), "outcome" => "ok").increment(1);
                metrics::histogram!(CHAT_FIRST_TOKEN_SECONDS).record(started.elapsed().as_secs_f64());
                self.store_turn(&job.session, &job.message, reply, received_at, started.elapsed()).await;
                "ok"
            }
            Err(LlmError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        if let Err(error) = &result {
            tracing::warn!(provider, %error, "model gave no answer");
            metrics::counter!(LLM_REQUESTS_TOTAL, "provider" => provider, "model" => "unknown", "outcome" => outcome).increment(1);
        }
        ChatOutcome {
            turn: job.turn,
            session: job.session,
            latency: started.elapsed(),
            result: result.map_err(|error| TurnFailure {
                code: ErrorCode::LlmUnavailable,
                message: format!("Sorry, I couldn't come up with an answer just now ({error}). Please try again in a moment."),
            }),
        }
    }

    async fn store_turn(
        &self,
        session: &SessionId,
        message: &str,
        reply: &LlmReply,
        received_at: chrono::DateTime<chrono::Utc>,
        latency: Duration,
    ) {
        let answered_at = chrono::Utc::now().max(received_at + chrono::Duration::microseconds(1));
        let turn = TurnRecord {
            user: self.args.user.clone(),
            session: session.clone(),
            user_text: message.to_string(),
            assistant_text: reply.text.clone(),
            client_msg_id: None,
            received_at,
            answered_at,
            metadata: serde_json::json!({
                "model": reply.model,
                "provider": reply.source,
                "latency_ms": u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                "ui_actions": reply.ui_actions,
            }),
        };
        // Behind earlier unsaved turns, a turn waits its place so the conversation stays in order.
        if !self.args.outbox.is_empty() {
            return self.args.outbox.push(turn);
        }
        if let Err(error) = self.args.store.save_turn(&turn).await {
            tracing::warn!(%error, %session, "could not store the turn; it waits in the outbox");
            self.args.outbox.push(turn);
        }
    }
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
