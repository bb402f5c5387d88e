//! `ResponseCache`: an `LlmProvider` in front of the fallback chain. Only a **true repeat** is
//! answered from memory (`cached: true`, no model call): the same user, in the same conversation
//! (`session_id`), asks the same question (trimmed, lowercased, whitespace collapsed) with the same
//! loaded context (a hash of the context JSON) within 300 s, and nothing else was said in that
//! conversation since the cached answer — its history ends with exactly that question and that
//! answer. The same words in another conversation, or after other turns, go to the model: a short
//! follow-up ("and the second one?") means something else there. Only first-choice answers are
//! kept: a fallback answer (after a provider failed) is not cached, so a recovered provider is
//! asked again at once. Nor is an answer that acted (`LlmReply::acted`: timers set, listed or
//! cancelled): saying "set a timer for 10 minutes" twice sets two timers.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use pam_protocol::{SessionId, UserId};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long an answer is reused.
pub const RESPONSE_TTL: Duration = Duration::from_secs(300);
/// Answers kept at most (about 20 MB for 2 kB answers).
const CAPACITY: u64 = 10_000;

/// What makes two requests the same question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    user: UserId,
    session: SessionId,
    question: String,
    context: u64,
    fast: bool,
}

/// Caches answers of the provider it wraps.
pub struct ResponseCache {
    inner: Arc<dyn LlmProvider>,
    answers: moka::sync::Cache<CacheKey, LlmReply>,
}

impl ResponseCache {
    pub fn new(inner: Arc<dyn LlmProvider>) -> Self {
        Self::with_ttl(inner, RESPONSE_TTL)
    }

    /// A cache whose entries live `ttl`.
    pub fn with_ttl(inner: Arc<dyn LlmProvider>, ttl: Duration) -> Self {
        ResponseCache { inner, answers: moka::sync::Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build() }
    }

    fn key(request: &LlmRequest) -> CacheKey {
        CacheKey {
            user: request.user_id.clone(),
            session: request.session.clone(),
            question: normalise(&request.message),
            context: context_hash(&request.context),
            fast: request.fast,
        }
    }

    async fn answer(&self, request: &LlmRequest, deltas: mpsc::Sender<String>) -> Result<LlmReply, LlmError> {
        let started = Instant::now();
        let key = Self::key(request);
        if let Some(mut reply) = self.answers.get(&key).filter(|cached| nothing_said_since(request, &cached.text)) {
            if !deltas.is_closed() {
                let _ = deltas.send(reply.text.clone()).await;
            }
            reply.cached = true;
            reply.first_token = Some(started.elapsed());
            return Ok(reply);
        }
        let reply = self.inner.generate(request, deltas).await?;
        // An answer that set, listed or cancelled timers is about live state: never replayed.
        if reply.fallback_reason.is_none() && !reply.acted {
            self.answers.insert(key, reply.clone());
        }
        Ok(reply)
    }
}

/// The conversation's history ends with this question and the cached answer to it: asking
/// again right after that answer is a repeat; after any other turn it is a new question.
fn nothing_said_since(request: &LlmRequest, answer: &str) -> bool {
    match request.history.as_slice() {
        [.., question, last] => {
            question.role == "user"
                && normalise(&question.content) == normalise(&request.message)
                && last.role == "assistant"
                && last.content == answer
        }
        _ => false,
    }
}

/// `"  How much   LEFT? "` → `"how much left?"`.
pub fn normalise(question: &str) -> String {
    question.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A stable hash of the context JSON (object keys are ordered, so equal context hashes equal).
fn context_hash(context: &Map<String, Value>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(context).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

impl LlmProvider for ResponseCache {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(self.answer(request, deltas))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pam_actors::HistoryMessage;
    use serde_json::json;

    use super::*;

    struct Counting(AtomicUsize);

    impl LlmProvider for Counting {
        fn name(&self) -> &str {
            "counting"
        }

        fn generate<'a>(&'a self, request: &'a LlmRequest, _deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
            let call = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            let mut reply = LlmReply::new(format!("answer {call} to {}", request.message), "m", "counting");
            if request.message.contains("fallback") {
                reply.fallback_reason = Some("primary: HTTP 503".into());
            }
            Box::pin(async move { Ok(reply) })
        }
    }

    fn request(user: &str, message: &str, context: Value) -> LlmRequest {
        in_session(user, "trip-a", message, context, Vec::new())
    }

    fn in_session(user: &str, session: &str, message: &str, context: Value, history: Vec<(&str, &str)>) -> LlmRequest {
        LlmRequest {
            user_id: UserId::parse(user).unwrap(),
            session: SessionId::parse(session).unwrap(),
            message: message.into(),
            context: context.as_object().unwrap().clone(),
            history: history.into_iter().map(|(role, content)| HistoryMessage { role: role.into(), content: content.into() }).collect(),
            fast: false,
            turn_id: "t1".into(),
        }
    }

    const A: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1";
    const B: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000b2";

    #[tokio::test]
    async fn a_true_repeat_right_after_its_answer_is_answered_from_cache() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = ResponseCache::new(inner.clone());
        let closed = || mpsc::channel(1).0;
        let first = cache.generate(&request(A, "How much is left?", json!({"x": 1})), closed()).await.unwrap();
        let history = vec![("user", "How much is left?"), ("assistant", first.text.as_str())];
        let again = in_session(A, "trip-a", "  how much   IS left? ", json!({"x": 1}), history.clone());
        let again = cache.generate(&again, closed()).await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        assert!(!first.cached && again.cached);
        assert_eq!(again.text, first.text);
        cache.generate(&in_session(B, "trip-a", "How much is left?", json!({"x": 1}), history.clone()), closed()).await.unwrap();
        cache.generate(&in_session(A, "trip-a", "How much is left?", json!({"x": 2}), history.clone()), closed()).await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 3, "another user or changed context asks the model");
    }

    #[tokio::test]
    async fn the_same_words_in_another_conversation_or_after_other_turns_ask_the_model() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = ResponseCache::new(inner.clone());
        let closed = || mpsc::channel(1).0;
        let follow_up = "and the second one?";
        let first = cache.generate(&in_session(A, "trip-a", follow_up, json!({}), vec![]), closed()).await.unwrap();
        let answered = vec![("user", follow_up), ("assistant", first.text.as_str())];
        let other = cache.generate(&in_session(A, "trip-b", follow_up, json!({}), answered.clone()), closed()).await.unwrap();
        assert!(!other.cached, "another conversation");
        let mut later = answered.clone();
        later.extend([("user", "what about fuel?"), ("assistant", "fuel answer")]);
        let after_other_turns = cache.generate(&in_session(A, "trip-a", follow_up, json!({}), later), closed()).await.unwrap();
        assert!(!after_other_turns.cached, "other turns came in between");
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn fallback_answers_are_not_cached() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = ResponseCache::new(inner.clone());
        for _ in 0..2 {
            let reply = cache.generate(&request(A, "fallback please", json!({})), mpsc::channel(1).0).await.unwrap();
            assert!(!reply.cached);
        }
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }
}
