//! "Nothing lost": a chat the server has read is answered and stored exactly once, whatever its
//! socket or HTTP client does next — on SQLite and Postgres. Cancelled writes, turns that
//! outlive their socket, racing first turns of a session, the outbox at shutdown, turns still
//! running when the drain's grace ends, and the response cache scoped to its conversation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::v2::*;
use crate::common::*;
use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use serde_json::{Value, json};
use tokio::sync::mpsc;

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
                tokio::time::sleep(self.delay).await;
            }
            Ok(LlmReply::new(format!("answer to {}", request.message), "slow-1", "slow-fake"))
        })
    }
}

pub(crate) fn postgres_url() -> String {
    std::env::var("PAM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
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
        let pool = sqlx::PgPool::connect(url).await.unwrap_or_else(|e| panic!("{url}: {e} (start Postgres with ./scripts/test.sh)"));
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
    wait_until("every turn finished and was stored", || async {
        let text = app.metrics().await;
        metric(&text, "pam_turns_running").unwrap_or(0.0) == 0.0 && metric(&text, "pam_turns_pending").unwrap_or(0.0) == 0.0
    })
    .await;
}

/// A small random delay (no extra crate: the low bits of a v4 uuid).
pub(crate) fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % u128::from(max_ms + 1)) as u64)
}

#[tokio::test]
async fn sockets_and_requests_dropped_right_after_a_chat_never_poison_storage() {
    for postgres in both_backends() {
        let url = postgres.clone();
        let app = spawn_app_with(move |s| s.database_url = url.unwrap_or(s.database_url.clone()), Default::default()).await;
        let db = database_url(&app, &postgres);
        let user = uuid::Uuid::new_v4().to_string();
        let token = token_for(&user);
        // The recorder is per process and this test runs two apps in turn.
        let accepted_before = metric_value(&app, "pam_turns_accepted_total").await as usize;
        for n in 0..25 {
            let mut client = WsClient::connect(&app.ws_url(&user, Some(&token))).await;
            client.recv_json().await;
            client.send_json(json!({"type":"chat","message":format!("hi {n}")})).await;
            tokio::time::sleep(jitter(10)).await;
            drop(client);
        }
        for n in 0..10 {
            let request = crate::common::rest::client()
                .post(app.http("/api/v1/pam/chat"))
                .bearer_auth(&token)
                .json(&json!({"message": format!("rest {n}")}))
                .timeout(Duration::from_millis(1) + jitter(10))
                .send();
            let _ = request.await;
        }
        settled(&app).await;
        let accepted = metric_value(&app, "pam_turns_accepted_total").await as usize - accepted_before;
        let stored = assert_each_turn_stored_once(&rows(&db, &user).await, &db);
        assert_eq!(stored, accepted, "{db}: every chat the server read is stored, once");
        assert!(accepted >= 25, "{db}: the sockets' chats were read ({accepted})");
        // Storage still works after all those cancelled carriers.
        let mut client = WsClient::connect(&app.ws_url(&user, Some(&token))).await;
        client.recv_json().await;
        client.send_json(json!({"type":"chat","message":"still storing?"})).await;
        assert_eq!(client.recv_non_ping().await["type"], "chat_response");
        settled(&app).await;
        assert_eq!(assert_each_turn_stored_once(&rows(&db, &user).await, &db), accepted + 1, "{db}");
        app.shutdown().await;
    }
}

#[tokio::test]
async fn a_legacy_turn_is_answered_and_stored_after_its_socket_closed() {
    for postgres in both_backends() {
        let model = SlowModel::new(Duration::from_secs(1));
        let url = postgres.clone();
        let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
        let app = spawn_app_with(move |s| s.database_url = url.unwrap_or(s.database_url.clone()), overrides).await;
        let db = database_url(&app, &postgres);
        let user = uuid::Uuid::new_v4().to_string();
        let mut client = WsClient::connect(&app.ws_url(&user, Some(&token_for(&user)))).await;
        client.recv_json().await;
        client.send_json(json!({"type":"chat","message":"where can I camp tonight?"})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(client);
        wait_until("the answer is stored", || async { rows(&db, &user).await.len() == 2 }).await;
        let stored = rows(&db, &user).await;
        assert_eq!(stored[1].content, "answer to where can I camp tonight?", "{db}");
        assert!(stored[0].client_msg_id.as_deref().is_some_and(|id| id.starts_with("srv:")), "{db}: a server-made id");
        app.shutdown().await;
    }
}

#[tokio::test]
async fn racing_first_turns_of_a_new_session_make_one_conversation() {
    for postgres in both_backends() {
        let url = postgres.clone();
        let app = spawn_app_with(move |s| s.database_url = url.unwrap_or(s.database_url.clone()), Default::default()).await;
        let db = database_url(&app, &postgres);
        for trial in 0..10 {
            let user = uuid::Uuid::new_v4().to_string();
            let token = token_for(&user);
            let (mut a, _) = connect_welcomed(&app, &token).await;
            let (mut b, _) = connect_welcomed(&app, &token).await;
            let chat = json!({"type":"chat","id":"x","session_id":"new-1","message":"hello there"});
            tokio::join!(a.send_json(chat.clone()), b.send_json(chat.clone()));
            let (ends_a, ends_b) = tokio::join!(frames_until(&mut a, "chat_end"), frames_until(&mut b, "chat_end"));
            assert_eq!(ends_a.last().unwrap()["message"], ends_b.last().unwrap()["message"], "{db} trial {trial}: one answer");
            let stored = rows(&db, &user).await;
            let conversations: std::collections::HashSet<_> = stored.iter().map(|r| r.conversation.clone()).collect();
            assert_eq!(conversations.len(), 1, "{db} trial {trial}: one conversation, got {stored:?}");
            assert_eq!(assert_each_turn_stored_once(&stored, &db), 1, "{db} trial {trial}");
        }
        app.shutdown().await;
    }
}

/// Holds SQLite's write lock from outside the gateway, like another process would.
async fn lock_sqlite(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn writes_waiting_at_shutdown_are_journaled_and_stored_at_the_next_start() {
    let mut app = spawn_app().await;
    let path = app.db.0.clone();
    let journal = format!("{}{OUTBOX_JOURNAL_SUFFIX}", path.display());
    let mut lock = lock_sqlite(&path).await;
    let mut client = app.connect_ready().await;
    for n in 0..3 {
        client.send_json(json!({"type":"chat","message":format!("quick question {n}")})).await;
        assert_eq!(client.recv_non_ping().await["type"], "chat_response", "answered while writes fail");
    }
    assert!(metric_value(&app, "pam_outbox_journaled_total").await >= 6.0, "3 user messages and 3 answers journaled");
    // Keep the files: the next start uses them.
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    app.shutdown().await;
    assert!(std::path::Path::new(&journal).exists(), "the journal outlives the process");
    use sqlx::Connection;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    let (db_url, journal_path) = (format!("sqlite://{}", path.display()), journal.clone());
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal_path;
        },
        Default::default(),
    )
    .await;
    let db = format!("sqlite://{}", path.display());
    wait_until("the journal is replayed", || async { rows(&db, USER).await.len() == 6 }).await;
    assert_eq!(assert_each_turn_stored_once(&rows(&db, USER).await, "sqlite"), 3);
    wait_until("the journal is removed once stored", || async { !std::path::Path::new(&journal).exists() }).await;
    assert_eq!(metric_value(&app, "pam_outbox_replayed_total").await, 6.0);
    app.shutdown().await;
    drop(db_file);
}

#[tokio::test]
async fn a_drain_past_its_grace_answers_or_records_every_chat_it_read() {
    let model = SlowModel::new(Duration::from_secs(3));
    let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
    let mut app = spawn_app_with(|s| s.shutdown_grace_ms = 1_000, overrides).await;
    let path = app.db.0.clone();
    let db = format!("sqlite://{}", path.display());
    let mut legacy = Vec::new();
    for n in 0..4 {
        let mut client = app.connect_ready().await;
        client.send_json(json!({"type":"chat","message":format!("slow legacy {n}")})).await;
        legacy.push(client);
    }
    let mut quick = app.connect_ready().await;
    quick.send_json(json!({"type":"chat","message":"quick legacy"})).await;
    assert_eq!(quick.recv_non_ping().await["type"], "chat_response");
    let (mut v2, _) = connect_welcomed(&app, &token_for(USER)).await;
    for n in 0..2 {
        v2.send_json(json!({"type":"chat","id":format!("v2-{n}"),"message":format!("slow v2 {n}")})).await;
    }
    frames_until(&mut v2, "ack").await;
    wait_until("every chat was read", || async { metric_value(&app, "pam_turns_accepted_total").await == 7.0 }).await;
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    app.shutdown().await;

    let metrics = pam_gateway::telemetry::metrics_handle().render();
    let abandoned = metric(&metrics, "pam_turns_abandoned_total").unwrap_or(0.0);
    let stored = rows(&db, USER).await;
    let users: Vec<&Row> = stored.iter().filter(|r| r.role == "user").collect();
    assert_eq!(users.len(), 7, "every chat the server read has its user row: {stored:?}");
    let mut unanswered = 0;
    for user_row in &users {
        let id = user_row.client_msg_id.clone().unwrap();
        let answered = stored.iter().any(|r| r.role == "assistant" && r.metadata["client_msg_id"] == id.as_str());
        if !answered {
            unanswered += 1;
            assert_eq!(user_row.metadata["unanswered"], "shutdown", "{id} is neither answered nor recorded: {stored:?}");
        }
    }
    assert!(unanswered >= 5, "the slow turns outlived the grace ({unanswered})");
    assert_eq!(abandoned, f64::from(unanswered), "each is counted");

    // A client repeating an abandoned v2 id gets a real answer at the next start.
    let (db_url, journal) = (db.clone(), format!("{}{OUTBOX_JOURNAL_SUFFIX}", path.display()));
    let model = SlowModel::new(Duration::from_millis(10));
    let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal;
        },
        overrides,
    )
    .await;
    let (mut v2, _) = connect_welcomed(&app, &token_for(USER)).await;
    v2.send_json(json!({"type":"chat","id":"v2-0","message":"slow v2 0"})).await;
    let end = frames_until(&mut v2, "chat_end").await.pop().unwrap();
    assert_eq!(end["message"], "answer to slow v2 0", "{end}");
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    settled(&app).await;
    app.shutdown().await;
    drop(db_file);
}

#[tokio::test]
async fn during_a_write_outage_v2_chats_are_acked_answered_and_stored_later() {
    let mut app = spawn_app().await;
    let path = app.db.0.clone();
    let db = format!("sqlite://{}", path.display());
    let mut lock = lock_sqlite(&path).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    for n in 0..3 {
        client.send_json(json!({"type":"chat","id":format!("down-{n}"),"message":format!("hello {n}")})).await;
        let frames = frames_until(&mut client, "chat_end").await;
        assert!(frames.iter().any(|f| f["type"] == "ack"), "durably accepted through the journal: {frames:?}");
    }
    wait_until("health reports the write outage", || async {
        let health: Value = reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap();
        health["status"] == "degraded" && health["storage"]["status"] == "degraded"
    })
    .await;
    assert_eq!(reqwest::get(app.http("/health/ready")).await.unwrap().status(), 200, "readiness is about this node");
    use sqlx::Connection;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    wait_until("the waiting writes are stored", || async { rows(&db, USER).await.len() == 6 }).await;
    assert_eq!(assert_each_turn_stored_once(&rows(&db, USER).await, "sqlite"), 3);
    // A repeat of an id answered during the outage replays it.
    client.send_json(json!({"type":"chat","id":"down-1","message":"hello 1"})).await;
    let replay = frames_until(&mut client, "chat_end").await.pop().unwrap();
    assert_eq!(replay["cached"], true, "{replay}");
    let db_file = std::mem::replace(&mut app.db, TempFile(std::path::PathBuf::new()));
    app.shutdown().await;
    drop(db_file);
}

#[tokio::test]
async fn the_response_cache_never_answers_from_another_conversation() {
    use crate::common::fake_llm::*;
    let fake = FakeLlm::start(Script::answer("The second campground is full.")).await;
    let app = spawn_app_with(|s| use_anthropic(s, &fake), Default::default()).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    let mut ask = async |id: &str, session: &str| {
        client.send_json(json!({"type":"chat","id":id,"session_id":session,"message":"and the second one?"})).await;
        frames_until(&mut client, "chat_end").await.pop().unwrap()
    };
    assert_eq!(ask("1", "trip-a").await["cached"], false);
    assert_eq!(ask("2", "trip-a").await["cached"], true, "asked again right after its answer: a true repeat");
    assert_eq!(ask("3", "trip-b").await["cached"], false, "the same words in another conversation");
    assert_eq!(fake.calls(), 2);
}

/// Every context load fails (the database is out of reach).
struct FailingContext;

impl pam_actors::ContextStore for FailingContext {
    fn load_profile<'a>(
        &'a self,
        _user: &'a pam_protocol::UserId,
    ) -> BoxFuture<'a, Result<Option<pam_actors::ProfileContext>, pam_actors::StoreError>> {
        Box::pin(async { Err(pam_actors::StoreError::Unavailable("down".into())) })
    }
    fn load_financial<'a>(
        &'a self,
        _user: &'a pam_protocol::UserId,
    ) -> BoxFuture<'a, Result<pam_actors::FinancialContext, pam_actors::StoreError>> {
        Box::pin(async { Err(pam_actors::StoreError::Unavailable("down".into())) })
    }
    fn load_social<'a>(
        &'a self,
        _user: &'a pam_protocol::UserId,
    ) -> BoxFuture<'a, Result<pam_actors::SocialContext, pam_actors::StoreError>> {
        Box::pin(async { Err(pam_actors::StoreError::Unavailable("down".into())) })
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

#[tokio::test]
async fn client_sent_context_never_poses_as_loaded_data_when_a_loader_fails() {
    use pam_actors::context_loader::{ContextLoaderActor, ContextLoaderArgs, ContextLoaders};
    use pam_actors::{ContextKind, ContextStore};
    let store: Arc<dyn ContextStore> = Arc::new(FailingContext);
    let mut loaders = Vec::new();
    for kind in [ContextKind::Profile, ContextKind::Financial, ContextKind::Social] {
        let args = ContextLoaderArgs { kind, store: store.clone(), cache: None, l1_ttl: Duration::from_secs(1), l1_capacity: 10 };
        loaders.push(ractor::Actor::spawn(None, ContextLoaderActor, args).await.unwrap().0);
    }
    let loaders = ContextLoaders {
        profile: loaders[0].clone(),
        financial: loaders[1].clone(),
        social: loaders[2].clone(),
        timeout: Duration::from_secs(2),
    };
    let recorder = Arc::new(ContextRecorder::default());
    let overrides = pam_gateway::Overrides { llm: Some(recorder.clone()), loaders: Some(loaders), ..Default::default() };
    let app = spawn_app_with(|_| {}, overrides).await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"init","context":{"financial":{"budget_left":"one million"},"context_degraded":null}})).await;
    let forged = json!({"profile":{"full_name":"Admin"},"current_location":"Moab, UT"});
    client.send_json(json!({"type":"chat","message":"how much is left?","context":forged})).await;
    assert_eq!(client.recv_non_ping().await["type"], "chat_response");
    let context = recorder.0.lock().unwrap().pop().unwrap();
    for key in ["profile", "financial", "social"] {
        assert!(!context.contains_key(key), "client-sent {key} reached the prompt as loaded data: {context:?}");
    }
    assert!(context["context_degraded"].as_str().is_some_and(|d| d.contains("financial")), "the loaders' own report: {context:?}");
    assert_eq!(context["current_location"], "Moab, UT", "other client context is kept");
}

/// Fails its first answer, then answers (slowly enough for two repeats to overlap).
struct FailsFirst(AtomicUsize);

impl LlmProvider for FailsFirst {
    fn name(&self) -> &str {
        "fails-first"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, _deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        let call = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if call == 0 {
                return Err(LlmError::Unavailable("first call fails".into()));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(LlmReply::new(format!("answer {call} to {}", request.message), "ff-1", "fails-first"))
        })
    }
}

#[tokio::test]
async fn two_repeats_of_an_unanswered_id_get_one_answer_and_never_wait_for_each_other() {
    let model = Arc::new(FailsFirst(AtomicUsize::new(0)));
    let overrides = pam_gateway::Overrides { llm: Some(model.clone()), ..Default::default() };
    let app = spawn_app_with(|_| {}, overrides).await;
    let token = token_for(USER);
    let (mut first, _) = connect_welcomed(&app, &token).await;
    first.send_json(json!({"type":"chat","id":"x","message":"plan the route"})).await;
    let failed = frames_until(&mut first, "error").await.pop().unwrap();
    assert_eq!(failed["error_code"], "LLM_UNAVAILABLE", "{failed}");
    let (mut a, _) = connect_welcomed(&app, &token).await;
    let (mut b, _) = connect_welcomed(&app, &token).await;
    let chat = json!({"type":"chat","id":"x","message":"plan the route"});
    tokio::join!(a.send_json(chat.clone()), b.send_json(chat));
    let (end_a, end_b) = tokio::join!(frames_until(&mut a, "chat_end"), frames_until(&mut b, "chat_end"));
    let (end_a, end_b) = (end_a.last().unwrap().clone(), end_b.last().unwrap().clone());
    assert_eq!(end_a["message"], end_b["message"], "one answer for both: {end_a} {end_b}");
    assert_eq!(model.0.load(Ordering::SeqCst), 2, "the model answered the repeat once");
    let db = format!("sqlite://{}", app.db.0.display());
    assert_eq!(assert_each_turn_stored_once(&rows(&db, USER).await, "sqlite"), 1);
}

#[tokio::test]
async fn on_postgres_writes_waiting_at_shutdown_are_journaled_and_stored_at_the_next_start() {
    let cluster = crate::common::cluster::Cluster::create();
    let url = cluster.url();
    let journal = std::env::temp_dir().join(format!("pam-journal-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let journal = journal.display().to_string();
    let (db_url, journal_path) = (url.clone(), journal.clone());
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal_path;
        },
        Default::default(),
    )
    .await;
    let user = uuid::Uuid::new_v4().to_string();
    let mut client = WsClient::connect(&app.ws_url(&user, Some(&token_for(&user)))).await;
    client.recv_json().await;
    cluster.stop();
    for n in 0..3 {
        client.send_json(json!({"type":"chat","message":format!("quick question {n}")})).await;
        assert_eq!(client.recv_non_ping().await["type"], "chat_response", "answered while Postgres is down");
    }
    app.shutdown().await;
    assert!(std::path::Path::new(&journal).exists(), "the journal outlives the process");
    cluster.start();
    let (db_url, journal_path) = (url.clone(), journal.clone());
    let app = spawn_app_with(
        move |s| {
            s.database_url = db_url;
            s.outbox_journal = journal_path;
        },
        Default::default(),
    )
    .await;
    wait_until("the journal is replayed into Postgres", || async { rows(&url, &user).await.len() == 6 }).await;
    assert_eq!(assert_each_turn_stored_once(&rows(&url, &user).await, "postgres"), 3);
    wait_until("the journal is removed once stored", || async { !std::path::Path::new(&journal).exists() }).await;
    app.shutdown().await;
}
