//! "Nothing lost": a chat the server has read is answered and stored exactly once, whatever its
//! socket or HTTP client does next — on SQLite and Postgres. Cancelled writes, turns that
//! outlive their socket or REST client (gone at any await of the request), racing first turns of
//! a session, repeated ids, client context that must not pose as loaded data, and the response
//! cache scoped to its conversation. Shutdown and outage cases are in shutdown_storage.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::turns::*;
use crate::common::v2::*;
use crate::common::*;
use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use serde_json::json;
use tokio::sync::mpsc;

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
            // Why a fixed (random) pause: the socket closes at a random point of its chat, on purpose.
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
async fn a_rest_chat_whose_client_hangs_up_at_any_await_is_stored_and_answered_once() {
    // Auth, the shared rate limit and the model each take a while, so the hang-ups below land in
    // every await of a request: before its turn is handed over, while its rate limit is asked,
    // while the model answers, and after; with and without an Idempotency-Key.
    const STEP: Duration = Duration::from_millis(40);
    const HANG_UP_AFTER_MS: [u64; 10] = [0, 1, 5, 20, 35, 50, 70, 90, 120, 200];
    for postgres in both_backends() {
        let url = postgres.clone();
        let overrides = pam_gateway::Overrides {
            llm: Some(SlowModel::new(STEP)),
            authenticator: Some(Arc::new(SlowAuthenticator(STEP))),
            shared_rate_limit: Some(Arc::new(SlowRateLimit(STEP))),
            ..Default::default()
        };
        let app = spawn_app_with(move |s| s.database_url = url.unwrap_or(s.database_url.clone()), overrides).await;
        let db = database_url(&app, &postgres);
        let user = uuid::Uuid::new_v4().to_string();
        let chats: Vec<(String, Option<String>, Duration)> = HANG_UP_AFTER_MS
            .iter()
            .flat_map(|ms| {
                let after = Duration::from_millis(*ms);
                [
                    (format!("hung up after {ms} ms"), None, after),
                    (format!("hung up after {ms} ms, keyed"), Some(format!("hang-up-{ms}")), after),
                ]
            })
            .collect();
        // The slow authenticator takes the user id as the token.
        let (app_ref, token) = (&app, &user);
        let hang_ups = chats.iter().map(|(message, key, after)| async move {
            let body = json!({"message": message});
            crate::common::rest::post_chat_and_hang_up(app_ref, token, &body, key.as_deref(), *after).await;
        });
        futures_util::future::join_all(hang_ups).await;
        wait_until("every chat is stored with its answer", || async { rows(&db, &user).await.len() == 2 * chats.len() }).await;
        settled(&app).await;
        let stored = rows(&db, &user).await;
        assert_eq!(assert_each_turn_stored_once(&stored, &db), chats.len(), "{db}");
        for (message, _, _) in &chats {
            let answer = format!("answer to {message}");
            assert_eq!(stored.iter().filter(|r| r.role == "user" && r.content == *message).count(), 1, "{db}: {message}");
            assert_eq!(stored.iter().filter(|r| r.role == "assistant" && r.content == answer).count(), 1, "{db}: {message}");
        }
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
        // The recorder is per process and this test runs two apps in turn.
        let accepted_before = metric_value(&app, "pam_turns_accepted_total").await;
        client.send_json(json!({"type":"chat","message":"where can I camp tonight?"})).await;
        wait_until("the server has read the chat", async || metric_value(&app, "pam_turns_accepted_total").await > accepted_before).await;
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

#[tokio::test]
async fn client_sent_context_never_poses_as_loaded_data_when_a_loader_fails() {
    use pam_actors::{ContextKind, ContextStore};
    use pam_actors::{ContextLoaderActor, ContextLoaderArgs, ContextLoaders};
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
            // The model's own latency: long enough for the two repeats to overlap.
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
