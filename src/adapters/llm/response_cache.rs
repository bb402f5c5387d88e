//! `ResponseCache`: an `LlmProvider` in front of the fallback chain. The same question (trimmed,
//! lowercased, whitespace collapsed) from the same user with unchanged context (a hash of the
//! context JSON) within 300 s is answered from memory with `cached: true`, without a model call.
//! Only first-choice answers are kept: a fallback answer (after a provider failed) is not cached,
//! so a recovered provider is asked again at once.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use pam_protocol::UserId;
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
            question: normalise(&request.message),
            context: context_hash(&request.context),
            fast: request.fast,
        }
    }

    async fn answer(&self, request: &LlmRequest, deltas: mpsc::Sender<String>) -> Result<LlmReply, LlmError> {
        let started = Instant::now();
        let key = Self::key(request);
        if let Some(mut reply) = self.answers.get(&key) {
            if !deltas.is_closed() {
                let _ = deltas.send(reply.text.clone()).await;
            }
            reply.cached = true;
            reply.first_token = Some(started.elapsed());
            return Ok(reply);
        }
        let reply = self.inner.generate(request, deltas).await?;
        if reply.fallback_reason.is_none() {
            self.answers.insert(key, reply.clone());
        }
        Ok(reply)
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
        LlmRequest {
            user_id: UserId::parse(user).unwrap(),
            message: message.into(),
            context: context.as_object().unwrap().clone(),
            history: Vec::new(),
            fast: false,
        }
    }

    const A: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1";
    const B: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000b2";

    #[tokio::test]
    async fn same_question_same_user_same_context_is_answered_from_cache() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = ResponseCache::new(inner.clone());
        let closed = || mpsc::channel(1).0;
        let first = cache.generate(&request(A, "How much is left?", json!({"x": 1})), closed()).await.unwrap();
        let again = cache.generate(&request(A, "  how much   IS left? ", json!({"x": 1})), closed()).await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        assert!(!first.cached && again.cached);
        assert_eq!(again.text, first.text);
        cache.generate(&request(B, "How much is left?", json!({"x": 1})), closed()).await.unwrap();
        cache.generate(&request(A, "How much is left?", json!({"x": 2})), closed()).await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 3, "another user or changed context asks the model");
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
