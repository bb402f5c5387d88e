//! Helpers for the "nothing lost" tests: a slow model, a slow authenticator and rate limit, a
//! model that records the context it was given, the stored rows of a user on either backend, and
//! the exactly-once check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pam_actors::{
    AuthError, Authenticator, BoxFuture, Identity, LlmError, LlmProvider, LlmReply, LlmRequest, SharedRateLimit, SharedUnavailable,
};
use pam_protocol::UserId;
use serde_json::Value;
use tokio::sync::mpsc;

use super::db::{postgres_url, require_postgres};
use super::{TestApp, WAIT, metric, wait_until_within};

/// Sleeps `delay` before answering, unless the message starts with "quick".
pub(crate) struct SlowModel {
    pub(crate) delay: Duration,
    pub(crate) calls: AtomicUsize,
}

impl SlowModel {
    pub(crate) fn new(delay: Duration) -> Arc<Self> {
        Arc::new(SlowModel { delay, calls: AtomicUsize::new(0) })
    }
}

impl LlmProvider for SlowModel {
    fn name(&self) -> &str {
        "slow-fake"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, _deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if !request.message.starts_with("quick") {
                // The model's own latency, scripted.
                tokio::time::sleep(self.delay).await;
            }
            Ok(LlmReply::new(format!("answer to {}", request.message), "slow-1", "slow-fake"))
        })
    }
}

/// Takes `0` to verify a token, which is the user id itself (a slow JWKS, say).
pub(crate) struct SlowAuthenticator(pub(crate) Duration);

impl Authenticator for SlowAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            let user = UserId::parse(token).map_err(|error| AuthError::Invalid(error.to_string()))?;
            Ok(Identity { subject: Some(user), role: "authenticated".into(), privileged: false, expires_at: None })
        })
    }
}

/// A shared chat rate limit that takes `0` to answer (a slow Redis) and allows every chat.
pub(crate) struct SlowRateLimit(pub(crate) Duration);

impl SharedRateLimit for SlowRateLimit {
    fn admit<'a>(&'a self, _user: &'a UserId, _per_minute: u32) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            Ok(true)
        })
    }
}

/// Records the context of every request it answers.
#[derive(Default)]
pub(crate) struct ContextRecorder(pub(crate) std::sync::Mutex<Vec<serde_json::Map<String, Value>>>);

impl LlmProvider for ContextRecorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, _deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        self.0.lock().unwrap().push(request.context.clone());
        Box::pin(async { Ok(LlmReply::new("ok", "rec-1", "recorder")) })
    }
}

/// The app's SQLite URL, then the test Postgres (which must answer: start it with ./scripts/test.sh).
pub(crate) fn both_backends() -> [Option<String>; 2] {
    [None, Some(postgres_url())]
}

/// One stored message row of a user.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) conversation: String,
    pub(crate) role: String,
    pub(crate) content: String,
    pub(crate) client_msg_id: Option<String>,
    pub(crate) metadata: Value,
}

/// conversation, role, content, client_msg_id, metadata (text on SQLite, JSON on Postgres).
type RawRow<M> = (String, String, String, Option<String>, Option<M>);

impl Row {
    fn from_raw<M>((conversation, role, content, client_msg_id, metadata): RawRow<M>, json: impl Fn(M) -> Option<Value>) -> Self {
        Row { conversation, role, content, client_msg_id, metadata: metadata.and_then(json).unwrap_or(Value::Null) }
    }
}

/// Every message row of `user`, oldest first, on the backend at `url`.
pub(crate) async fn rows(url: &str, user: &str) -> Vec<Row> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let sql = "SELECT c.id, m.role, m.content, m.client_msg_id, m.metadata FROM pam_messages m
                   JOIN pam_conversations c ON c.id = m.conversation_id WHERE c.user_id = ?1 ORDER BY m.created_at";
        let rows: Vec<RawRow<String>> = sqlx::query_as(sql).bind(user).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|raw| Row::from_raw(raw, |text| serde_json::from_str(&text).ok())).collect()
    } else {
        let pool = require_postgres(url).await;
        let sql = "SELECT c.id::text, m.role, m.content, m.client_msg_id, m.metadata FROM pam_messages m
                   JOIN pam_conversations c ON c.id = m.conversation_id WHERE c.user_id = $1::uuid ORDER BY m.created_at";
        let rows: Vec<RawRow<Value>> = sqlx::query_as(sql).bind(user).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|raw| Row::from_raw(raw, Some)).collect()
    }
}

/// Asserts every user row has exactly one answer and no id is stored twice; returns the count.
pub(crate) fn assert_each_turn_stored_once(rows: &[Row], context: &str) -> usize {
    let users: Vec<&Row> = rows.iter().filter(|r| r.role == "user").collect();
    let mut ids: Vec<&str> = users.iter().map(|r| r.client_msg_id.as_deref().expect("every user row has an id")).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "{context}: a user message is stored twice");
    for id in &ids {
        let answers = rows.iter().filter(|r| r.role == "assistant" && r.metadata["client_msg_id"] == *id).count();
        assert_eq!(answers, 1, "{context}: {id} has {answers} answers");
    }
    assert_eq!(rows.len(), 2 * users.len(), "{context}: only user rows and their answers");
    users.len()
}

pub(crate) fn database_url(app: &TestApp, postgres: &Option<String>) -> String {
    postgres.clone().unwrap_or_else(|| format!("sqlite://{}", app.db.0.display()))
}

pub(crate) async fn metric_value(app: &TestApp, series: &str) -> f64 {
    metric(&app.metrics().await, series).unwrap_or(0.0)
}

/// Waits until no turn runs and nothing waits in the outbox.
pub(crate) async fn settled(app: &TestApp) {
    // Up to ~40 turns at once, each with its own storage writes: more than one expectation's WAIT.
    wait_until_within(3 * WAIT, "every turn finished and was stored", || async {
        let text = app.metrics().await;
        metric(&text, "pam_turns_running").unwrap_or(0.0) == 0.0 && metric(&text, "pam_turns_pending").unwrap_or(0.0) == 0.0
    })
    .await;
}

/// A small random delay (no extra crate: the low bits of a v4 uuid).
pub(crate) fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % u128::from(max_ms + 1)) as u64)
}
