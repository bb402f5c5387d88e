//! `TurnPipeline`: what every turn needs (the model, the store, the outbox, the context loaders,
//! the running-turn registry) and the steps both kinds of turn share: registering a turn, running
//! it on a task of its own, building the model request, asking the model, storing the answer.
//! The turn answered whole is in `whole.rs`, the streamed v2 turn in `streamed.rs`, storing the
//! user message (and deciding whether to answer a repeat) in `intake.rs`.
//! Imports the turn's leaves, the ports and the context loaders.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::input::TurnInput;
use super::outbox::TurnOutbox;
use super::running::{RunningTurns, TurnGuard, TurnOrigin};
use crate::context_loader::ContextLoaders;
use crate::log_limit::LogLimit;
use crate::metrics_names::{CHAT_FIRST_TOKEN_SECONDS, LLM_REQUESTS_TOTAL, TURNS_ABANDONED_TOTAL, TURNS_DROPPED_TOTAL};
use crate::ports::{
    AnswerRecord, ConversationStore, HistoryMessage, LlmError, LlmProvider, LlmReply, LlmRequest, NodeLiveness, PendingWrite,
    STORE_TIMEOUT, StoreError, StoredAnswer, TurnKey, UnansweredMark,
};
use crate::trace;

/// Messages kept per session for the prompt.
const HISTORY_LIMIT: usize = 20;
/// How long a chat waits for its history before answering without it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(2);
/// A message this short, without a question, goes to the fast model.
const FAST_MAX_CHARS: usize = 60;
/// Context keys only the loaders may set: a client-sent `financial` must never reach the prompt
/// as if it were loaded data (for instance when the financial loader failed).
const LOADED_CONTEXT_KEYS: [&str; 4] = ["profile", "financial", "social", "context_degraded"];
/// Storage warnings: one line per window, with the count of those suppressed.
static STORAGE_WARNINGS: LogLimit = LogLimit::new(Duration::from_secs(10));
/// Abandoned turns logged one by one at shutdown; the rest are counted in one line.
const ABANDONED_LOGGED: usize = 20;

/// What a turn needs; shared by every connection and the REST route.
#[derive(Clone)]
pub struct TurnPipeline {
    pub(crate) llm: Arc<dyn LlmProvider>,
    pub(crate) store: Arc<dyn ConversationStore>,
    pub(crate) outbox: Arc<TurnOutbox>,
    pub(crate) loaders: ContextLoaders,
    /// Outer deadline for the whole answer.
    pub(crate) llm_timeout: Duration,
    /// Every turn this node has read and not finished.
    pub(crate) running: Arc<RunningTurns>,
    /// This node's name (`PAM_NODE_ID`), stored with each user message.
    pub(crate) node: Arc<str>,
    /// Which nodes are alive (with Redis): a repeat of a turn accepted by a node that is gone is
    /// answered at once.
    pub(crate) liveness: Option<Arc<dyn NodeLiveness>>,
    /// How long a turn can possibly run on any node (model deadline plus shutdown grace): an
    /// unanswered id older than this is answered again when the client repeats it.
    pub(crate) turn_lifetime: Duration,
}

impl TurnPipeline {
    /// Registers a turn the server has just read (before it waits anywhere, e.g. in an actor's
    /// mailbox), so the drain counts it from the first moment.
    pub fn register(&self, input: &TurnInput) -> TurnGuard {
        self.running.begin(input.key(), input.origin.clone())
    }

    /// Runs the work of the registered turn `turn` on a task of its own: it runs to its end
    /// whatever happens to the caller, and the shutdown grace can stop it once it is recorded
    /// unanswered.
    pub(crate) fn on_task<T: Send + 'static>(&self, turn: u64, work: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
        let task = tokio::spawn(work);
        self.running.set_abort(turn, task.abort_handle());
        task
    }

    /// Stores an answer, or queues it behind earlier writes while storage is down.
    pub(crate) async fn store_answer(&self, answer: AnswerRecord, origin: &TurnOrigin) {
        if self.outbox.must_queue(&answer.key) {
            self.outbox.enqueue(PendingWrite::Answer(answer)).await;
            return;
        }
        match traced_write("answer", self.store.save_answer(&answer)).await {
            Ok(true) => self.outbox.write_succeeded(),
            Ok(false) => {
                self.outbox.write_succeeded();
                tracing::warn!(origin = %origin, user = %answer.key.user, client_msg_id = answer.key.client_msg_id,
                    "an answer to this message was stored already (answered twice); the first one is kept");
            }
            Err(error @ StoreError::Rejected(_)) => {
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                tracing::error!(%error, origin = %origin, user = %answer.key.user, client_msg_id = answer.key.client_msg_id, "the database refused this answer; it is not stored");
            }
            Err(error) => {
                self.outbox.write_failed();
                storage_warning(&error, origin, &answer.key, "could not store the answer; it waits in the outbox");
                self.outbox.enqueue(PendingWrite::Answer(answer)).await;
            }
        }
    }

    /// At the end of the shutdown grace: every turn still running is counted, logged and marked
    /// unanswered (through the outbox, so the mark is journaled if it cannot be stored now). The
    /// mark's write also records each as abandoned in the database: the process counter moves
    /// moments before exit, the stored count is what Prometheus sees once the process is gone.
    /// Returns how many there were.
    pub async fn abandon_running(&self) -> usize {
        let turns = self.running.abandon_all();
        let mut marks = Vec::with_capacity(turns.len());
        for (index, turn) in turns.iter().enumerate() {
            metrics::counter!(TURNS_ABANDONED_TOTAL).increment(1);
            if index < ABANDONED_LOGGED {
                tracing::warn!(origin = %turn.origin, user = %turn.key.user, session = %turn.key.session, client_msg_id = turn.key.client_msg_id,
                    running_ms = turn.started.elapsed().as_millis() as u64, "turn still running at the end of the shutdown grace: recorded as unanswered");
            }
            marks.push(PendingWrite::Unanswered(UnansweredMark {
                key: turn.key.clone(),
                reason: "shutdown".into(),
                node: self.node.to_string(),
                boot: self.liveness.as_ref().map(|liveness| liveness.boot().to_string()),
            }));
        }
        if turns.len() > ABANDONED_LOGGED {
            tracing::warn!(more = turns.len() - ABANDONED_LOGGED, "more turns recorded as unanswered at shutdown");
        }
        if !marks.is_empty() {
            // One journal append (one fsync) for all of them: the grace is spent already.
            self.outbox.enqueue_all(marks).await;
        }
        turns.len()
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
        let key = input.key();
        let history = tokio::time::timeout(HISTORY_TIMEOUT, self.store.history(&key, HISTORY_LIMIT));
        let (history, loaded) = tokio::join!(history, self.loaders.load_all(&input.user));
        let mut history = match history {
            Ok(Ok(history)) => history,
            Ok(Err(error)) => {
                tracing::warn!(%error, origin = %input.origin, "history unavailable; answering without it");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(origin = %input.origin, "history took too long; answering without it");
                Vec::new()
            }
        };
        drop_current_message(&mut history, &input.message);
        let mut context = input.context.clone();
        context.retain(|key, _| !LOADED_CONTEXT_KEYS.contains(&key.as_str()));
        context.extend(loaded);
        LlmRequest {
            user_id: input.user.clone(),
            session: input.session.clone(),
            message: input.message.clone(),
            context,
            history,
            fast: is_simple_turn(&input.message),
            turn_id: input.client_msg_id.clone(),
        }
    }
}

/// A store call under [`STORE_TIMEOUT`]: a hung connection counts as unavailable (every write
/// is idempotent and rolls back when dropped, so giving up on it is safe).
pub(super) async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {} ms", STORE_TIMEOUT.as_millis()))))
}

/// A conversation write under [`bounded`], traced as a `storage_write` span of the turn.
pub(super) async fn traced_write<T>(write: &'static str, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let span = trace::storage_span(write);
    let result = bounded(call).instrument(span.clone()).await;
    span.record(
        "outcome",
        match &result {
            Ok(_) => "stored",
            Err(StoreError::Rejected(_)) => "refused",
            Err(_) => "unavailable",
        },
    );
    result
}

pub(super) fn storage_warning(error: &StoreError, origin: &TurnOrigin, key: &TurnKey, what: &str) {
    if let Some(suppressed) = STORAGE_WARNINGS.allow() {
        tracing::warn!(%error, origin = %origin, user = %key.user, session = %key.session, client_msg_id = key.client_msg_id, suppressed, "{what}");
    }
}

/// The user message is stored before the history is read; the prompt carries it as `message`.
pub(crate) fn drop_current_message(history: &mut Vec<HistoryMessage>, message: &str) {
    if history.last().is_some_and(|last| last.role == "user" && last.content == message) {
        history.pop();
    }
}

/// An answer stored earlier, as a reply (`cached`: no model was asked this time).
pub(crate) fn replayed_reply(stored: StoredAnswer) -> LlmReply {
    let meta = &stored.metadata;
    let text = |key: &str| meta.get(key).and_then(Value::as_str).unwrap_or("unknown").to_string();
    let mut reply = LlmReply::new(stored.text.clone(), text("model"), text("provider"));
    reply.ui_actions = meta.get("ui_actions").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    reply.first_token = meta.get("first_token_ms").and_then(Value::as_u64).map(Duration::from_millis);
    reply.cached = true;
    reply
}

/// What is stored beside the assistant's text: who answered, how fast, and why it fell back.
pub(crate) fn turn_metadata(reply: &LlmReply, latency: Duration) -> Value {
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
pub(crate) fn is_simple_turn(message: &str) -> bool {
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

    #[test]
    fn the_stored_user_message_is_not_sent_twice() {
        let user = |c: &str| HistoryMessage { role: "user".into(), content: c.into() };
        let mut history = vec![user("a"), user("b")];
        drop_current_message(&mut history, "b");
        assert_eq!(history, vec![user("a")]);
        drop_current_message(&mut history, "b");
        assert_eq!(history, vec![user("a")]);
    }

    #[test]
    fn a_replayed_reply_comes_from_the_stored_metadata() {
        let stored = StoredAnswer {
            text: "hi".into(),
            metadata: serde_json::json!({"model":"m1","provider":"p","latency_ms":12,"first_token_ms":3,"ui_actions":[{"type":"open_map"}]}),
        };
        let reply = replayed_reply(stored);
        assert_eq!((reply.model.as_str(), reply.source.as_str(), reply.first_token), ("m1", "p", Some(Duration::from_millis(3))));
        assert_eq!(reply.ui_actions[0].kind, "open_map");
        assert!(reply.cached);
    }
}
