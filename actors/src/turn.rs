//! `TurnPipeline`: answers one chat turn end to end. The user message is stored first (or
//! journaled in the outbox while storage is down), then history and context load in parallel,
//! the `LlmProvider` answers, and the answer is stored the same way. Turns run on tasks of their
//! own ([`TurnPipeline::start`]), registered in [`RunningTurns`] from the moment the server read
//! them: a socket that closes, an HTTP client that goes away or an actor that is killed never
//! takes a turn down with it. Sockets (through the `OrchestratorActor`) and the REST route share it.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ErrorCode, SessionId, UserId};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context_loader::ContextLoaders;
use crate::log_limit::LogLimit;
use crate::metrics_names::{CHAT_FIRST_TOKEN_SECONDS, LLM_REQUESTS_TOTAL};
use crate::outbox::{Durability, PendingWrite, STORE_TIMEOUT, TURNS_DROPPED_TOTAL, TurnOutbox};
use crate::ports::{
    AnswerRecord, ConversationStore, HistoryMessage, LlmError, LlmProvider, LlmReply, LlmRequest, StoreError, StoredAnswer, StoredTurn,
    TurnKey, UnansweredMark, UserMessage, UserSaved,
};
use crate::running_turns::{RunningTurns, TURNS_ABANDONED_TOTAL, TurnGuard, TurnOrigin};

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
    pub llm: Arc<dyn LlmProvider>,
    pub store: Arc<dyn ConversationStore>,
    pub outbox: Arc<TurnOutbox>,
    pub loaders: ContextLoaders,
    /// Outer deadline for the whole answer.
    pub llm_timeout: Duration,
    /// Every turn this node has read and not finished.
    pub running: Arc<RunningTurns>,
    /// This node's name (`PAM_NODE_ID`), stored with each user message.
    pub node: Arc<str>,
    /// Which nodes are alive (with Redis): a repeat of a turn accepted by a node that is gone is
    /// answered at once.
    pub liveness: Option<Arc<dyn crate::cluster::NodeLiveness>>,
    /// How long a turn can possibly run on any node (model deadline plus shutdown grace): an
    /// unanswered id older than this is answered again when the client repeats it.
    pub turn_lifetime: Duration,
}

/// One chat turn to answer.
#[derive(Debug, Clone)]
pub struct TurnInput {
    pub user: UserId,
    pub session: SessionId,
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
    pub latency: Duration,
    pub result: Result<LlmReply, TurnFailure>,
}

/// Whether a turn goes on to the model after its user message was handled.
pub(crate) enum Admission {
    /// Stored (or journaled) now, or an earlier unanswered copy that nobody answers any more.
    New {
        durable: bool,
    },
    /// Answered before: replay the stored answer, ask no model.
    Replay(StoredAnswer),
    /// Being answered on another node right now.
    Busy,
    Failed(TurnFailure),
}

impl TurnPipeline {
    /// Starts a legacy or REST turn on its own task, registered as running from now on. The
    /// turn runs to its end (answered and stored) whatever happens to the caller; awaiting the
    /// handle is optional and dropping it does not cancel the turn.
    pub fn start(&self, input: TurnInput) -> JoinHandle<TurnAnswer> {
        let guard = self.register(&input);
        self.spawn(input, guard, None)
    }

    /// Registers a turn the server has just read (before it waits anywhere, e.g. in an actor's
    /// mailbox), so the drain counts it from the first moment.
    pub fn register(&self, input: &TurnInput) -> TurnGuard {
        self.running.begin(input.key(), input.origin.clone())
    }

    /// [`TurnPipeline::start`] for a turn registered earlier; its model work waits until the
    /// turn `after` (the previous one of the same connection) has ended.
    pub fn spawn(&self, input: TurnInput, guard: TurnGuard, after: Option<Previous>) -> JoinHandle<TurnAnswer> {
        let pipeline = self.clone();
        let id = guard.id();
        let task = tokio::spawn(async move { pipeline.answer(input, guard, after).await });
        self.running.set_abort(id, task.abort_handle());
        task
    }

    /// Answers `input` (the answer is sent whole, so model deltas are not streamed).
    async fn answer(&self, input: TurnInput, guard: TurnGuard, after: Option<Previous>) -> TurnAnswer {
        let started = Instant::now();
        // With no earlier turn of the connection still running, history and context load while
        // the user message is stored (the history may or may not hold it yet: the prompt drops
        // it either way); behind an earlier turn they load after it, so its answer is in them.
        let after = after.filter(|previous| previous.has_changed().is_ok());
        let (admission, request) = match after {
            None => {
                let (admission, request) = tokio::join!(self.admit(&input, guard.id()), self.request(&input));
                (admission, Some(request))
            }
            Some(previous) => {
                let admission = self.admit(&input, guard.id()).await;
                wait_for(Some(previous)).await;
                (admission, None)
            }
        };
        match admission {
            Admission::New { .. } => {}
            Admission::Replay(stored) => return TurnAnswer { latency: started.elapsed(), result: Ok(replayed_reply(stored)) },
            Admission::Busy => return TurnAnswer { latency: started.elapsed(), result: Err(TurnFailure::still_running_elsewhere()) },
            Admission::Failed(failure) => return TurnAnswer { latency: started.elapsed(), result: Err(failure) },
        }
        let request = match request {
            Some(request) => request,
            None => self.request(&input).await,
        };
        // A closed channel: providers skip the deltas instead of waiting for a reader.
        let (deltas, _) = mpsc::channel(1);
        let result = self.generate(&request, deltas).await;
        self.record_outcome(&result, started.elapsed());
        if let Ok(reply) = &result {
            let mut metadata = turn_metadata(reply, started.elapsed());
            metadata["client_msg_id"] = Value::from(input.client_msg_id.clone());
            let answer = AnswerRecord { key: input.key(), text: reply.text.clone(), answered_at: chrono::Utc::now(), metadata };
            self.store_answer(answer, &input.origin).await;
        }
        drop(guard);
        TurnAnswer { latency: started.elapsed(), result: result.map_err(TurnFailure::from_llm) }
    }

    /// Stores the user message before any model work and decides whether to answer: a new id
    /// is answered; a repeat replays its stored answer, waits for the turn answering it here,
    /// or is answered again when nobody anywhere can still be answering it.
    pub(crate) async fn admit(&self, input: &TurnInput, turn: u64) -> Admission {
        let key = input.key();
        let message =
            UserMessage { key: key.clone(), text: input.message.clone(), received_at: chrono::Utc::now(), node: self.node.to_string() };
        // At most twice: a repeat that waited for the turn answering it here looks again.
        for _ in 0..2 {
            if self.outbox.must_queue(&key) {
                // Storage is behind for this conversation: its writes wait their turn, so this one does too.
                if let Some(pending) = self.outbox.find(&key) {
                    if let Some(answer) = pending.answer {
                        return Admission::Replay(StoredAnswer { text: answer.text, metadata: answer.metadata });
                    }
                    if let Some(mut other) = self.running.other(&key, turn) {
                        let _ = other.changed().await;
                        continue;
                    }
                    return Admission::New { durable: true };
                }
                return self.accept_into_outbox(message, &input.origin).await;
            }
            match bounded(self.store.save_user_message(&message)).await {
                Ok(UserSaved::New) => {
                    self.outbox.write_succeeded();
                    return Admission::New { durable: true };
                }
                Ok(UserSaved::Repeat(stored)) => {
                    self.outbox.write_succeeded();
                    if let Some(mut other) = self.running.other(&key, turn).filter(|_| stored.answer.is_none()) {
                        let _ = other.changed().await;
                        continue;
                    }
                    return self.repeat(stored).await;
                }
                Err(error @ StoreError::Rejected(_)) => {
                    metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                    tracing::error!(%error, origin = %input.origin, user = %input.user, client_msg_id = input.client_msg_id, "the database refused this message; not answering it");
                    return Admission::Failed(TurnFailure::storage_unavailable());
                }
                Err(error) => {
                    self.outbox.write_failed();
                    storage_warning(&error, &input.origin, &key, "could not store the user message; it waits in the outbox");
                    return self.accept_into_outbox(message, &input.origin).await;
                }
            }
        }
        Admission::Busy
    }

    /// A repeated id whose turn is not running here: answered again when nobody can still be
    /// answering it — abandoned, accepted by this node, older than any turn runs, or accepted by
    /// a node that is no longer alive (asked only when the rest does not decide).
    async fn repeat(&self, stored: StoredTurn) -> Admission {
        if let Some(answer) = stored.answer {
            return Admission::Replay(answer);
        }
        let abandoned = stored.metadata.get("unanswered").is_some_and(|v| !v.is_null());
        let accepted_by = stored.metadata.get("node").and_then(Value::as_str);
        let age = chrono::Utc::now().signed_duration_since(stored.received_at).to_std().unwrap_or_default();
        if abandoned || accepted_by == Some(&*self.node) || age >= self.turn_lifetime {
            return Admission::New { durable: true };
        }
        if let (Some(liveness), Some(node)) = (&self.liveness, accepted_by) {
            if let Ok(false) = liveness.may_be_answering(node, age).await {
                tracing::info!(node, "a repeated chat's node is gone; answering it here");
                return Admission::New { durable: true };
            }
        }
        Admission::Busy
    }

    async fn accept_into_outbox(&self, message: UserMessage, origin: &TurnOrigin) -> Admission {
        match self.outbox.enqueue(PendingWrite::User(message)).await {
            Durability::Journaled => Admission::New { durable: true },
            Durability::MemoryOnly => Admission::New { durable: false },
            Durability::Dropped => {
                tracing::error!(origin = %origin, "the outbox is full and has no journal; this message is answered but not stored");
                Admission::New { durable: false }
            }
        }
    }

    /// Stores an answer, or queues it behind earlier writes while storage is down.
    pub(crate) async fn store_answer(&self, answer: AnswerRecord, origin: &TurnOrigin) {
        if self.outbox.must_queue(&answer.key) {
            self.outbox.enqueue(PendingWrite::Answer(answer)).await;
            return;
        }
        match bounded(self.store.save_answer(&answer)).await {
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
    /// unanswered (through the outbox, so the mark is journaled if it cannot be stored now).
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
            marks.push(PendingWrite::Unanswered(UnansweredMark { key: turn.key.clone(), reason: "shutdown".into() }));
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

/// The previous turn of the same connection: closed when it has ended.
pub type Previous = tokio::sync::watch::Receiver<()>;

/// Waits until the previous turn has ended (its guard dropped).
pub(crate) async fn wait_for(previous: Option<Previous>) {
    if let Some(mut previous) = previous {
        while previous.changed().await.is_ok() {}
    }
}

/// A store call under [`STORE_TIMEOUT`]: a hung connection counts as unavailable (every write
/// is idempotent and rolls back when dropped, so giving up on it is safe).
async fn bounded<T>(call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {} ms", STORE_TIMEOUT.as_millis()))))
}

fn storage_warning(error: &StoreError, origin: &TurnOrigin, key: &TurnKey, what: &str) {
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
