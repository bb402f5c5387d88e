//! The remote providers against a local fake: what reaches the model (PAM prompt, loaded
//! context, history, key in the right header — and in no log line), routing to the fast or
//! accurate model, and what is stored and measured for an answer.

use std::sync::OnceLock;
use std::time::Duration;

use crate::common::fake_llm::*;
use crate::common::logs::{LogBuffer, capturing_subscriber};
use crate::common::*;
use serde_json::{Value, json};

/// Every log line of this process, at every level.
fn captured_logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let (subscriber, buffer) = capturing_subscriber(tracing::Level::TRACE);
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in this test process");
        buffer
    })
    .clone()
}

/// The demo traveller (seeded expenses, friends, events) on a dev-auth socket.
async fn demo_app(configure: impl FnOnce(&mut pam_gateway::Settings)) -> (TestApp, WsClient) {
    let app = spawn_app_with(
        |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
            configure(s);
        },
        Default::default(),
    )
    .await;
    let token: Value = reqwest::Client::new().post(app.http("/dev/token")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let mut client = WsClient::connect(&app.ws_url(token["user_id"].as_str().unwrap(), token["token"].as_str())).await;
    assert_eq!(client.recv_json().await["type"], "connection");
    (app, client)
}

fn roles_and_texts(messages: &Value) -> Vec<(String, String)> {
    messages.as_array().unwrap().iter().map(|m| (m["role"].as_str().unwrap().into(), m["content"].as_str().unwrap().into())).collect()
}

fn assert_loaded_context_in(system: &str) {
    assert!(system.starts_with("You are PAM"), "{system}");
    assert!(system.contains("Wheels & Wins"), "{system}");
    assert!(system.contains("- fuel: spent 251.85 of 400.00"), "financial context: {system}");
    assert!(system.contains("Jordan Lee") && system.contains("Maya Torres"), "social context: {system}");
}

#[tokio::test]
async fn anthropic_request_carries_prompt_context_history_and_key_which_no_log_line_shows() {
    let logs = captured_logs();
    let fake = FakeLlm::start(Script::answer("You spent $251.85 on fuel.")).await;
    let (app, mut client) = demo_app(|s| use_anthropic(s, &fake)).await;
    legacy_chat(&mut client, "How much have I spent on fuel this month?").await;
    let answer = legacy_chat(&mut client, "And how much on food?").await;
    assert_eq!(answer["message"], "You spent $251.85 on fuel.");
    let request = fake.requests().pop().unwrap();
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.headers["x-api-key"], TEST_ANTHROPIC_KEY);
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert!(request.headers.get("authorization").is_none());
    assert_eq!(request.body["stream"], true);
    assert_loaded_context_in(request.body["system"].as_str().unwrap());
    let expected = [
        ("user", "How much have I spent on fuel this month?"),
        ("assistant", "You spent $251.85 on fuel."),
        ("user", "And how much on food?"),
    ];
    assert_eq!(roles_and_texts(&request.body["messages"]), expected.map(|(r, c)| (r.to_string(), c.to_string())));
    // A failure logs its reason: the capture works, and the key still appears nowhere.
    fake.set_script(Script::status(401));
    legacy_chat(&mut client, "Any events coming up?").await;
    app.shutdown().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(logs.contains("model attempt failed"), "logs were captured");
    assert!(!logs.contains(TEST_ANTHROPIC_KEY), "the API key leaked into a log line");
}

#[tokio::test]
async fn openai_request_carries_system_prompt_history_and_bearer_key_which_no_log_line_shows() {
    let logs = captured_logs();
    let fake = FakeLlm::start(Script::answer("Sure thing.")).await;
    let (app, mut client) = demo_app(|s| use_openai(s, &fake)).await;
    legacy_chat(&mut client, "Which friends are travelling nearby?").await;
    let answer = legacy_chat(&mut client, "thanks, and events?").await;
    assert_eq!((answer["message"].as_str(), answer["source"].as_str()), (Some("Sure thing."), Some("openai")));
    let request = fake.requests().pop().unwrap();
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.headers["authorization"], format!("Bearer {TEST_OPENAI_KEY}").as_str());
    assert_eq!(request.body["stream"], true);
    assert_eq!(request.body["max_tokens"], 1024, "answers are capped like Anthropic's");
    let messages = roles_and_texts(&request.body["messages"]);
    assert_eq!(messages[0].0, "system");
    assert_loaded_context_in(&messages[0].1);
    let turns: Vec<(&str, &str)> = messages[1..].iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
    assert_eq!(turns, [("user", "Which friends are travelling nearby?"), ("assistant", "Sure thing."), ("user", "thanks, and events?")]);
    fake.set_script(Script::status(500));
    legacy_chat(&mut client, "Any events coming up?").await;
    app.shutdown().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(logs.contains("model attempt failed"), "logs were captured");
    assert!(!logs.contains(TEST_OPENAI_KEY), "the API key leaked into a log line");
}

#[tokio::test]
async fn short_turns_use_the_fast_model_and_questions_the_accurate_one() {
    let fake = FakeLlm::start(Script::answer("Noted.")).await;
    let app = spawn_app_with(|s| use_anthropic(s, &fake), Default::default()).await;
    let mut client = app.connect_ready().await;
    let quick = legacy_chat(&mut client, "hi PAM").await;
    let thorough = legacy_chat(&mut client, "Which campgrounds near Moab take a 40 ft rig?").await;
    assert_eq!((quick["model"].as_str(), thorough["model"].as_str()), (Some("fake-fast"), Some("fake-accurate")));
    let asked: Vec<Value> = fake.requests().iter().map(|r| r.body["model"].clone()).collect();
    assert_eq!(asked, [json!("fake-fast"), json!("fake-accurate")]);
    let stored: Vec<Value> = assistant_metadata(&app).await.iter().map(|m| m["model"].clone()).collect();
    assert_eq!(stored, [json!("fake-fast"), json!("fake-accurate")]);
    let metrics = app.metrics().await;
    for model in ["fake-fast", "fake-accurate"] {
        let series = format!("pam_llm_requests_total{{provider=\"anthropic\",model=\"{model}\",outcome=\"ok\"}}");
        assert_eq!(metric(&metrics, &series), Some(1.0), "{series}");
    }
}

#[tokio::test]
async fn first_token_time_is_stored_and_measured() {
    let script =
        Script { first_token_delay: Duration::from_millis(200), tokens_per_second: Some(50.0), ..Script::answer("one two three four") };
    let fake = FakeLlm::start(script).await;
    let app = spawn_app_with(|s| use_anthropic(s, &fake), Default::default()).await;
    let mut client = app.connect_ready().await;
    let answer = legacy_chat(&mut client, "hello there").await;
    assert_eq!(answer["message"], "one two three four");
    let metadata = assistant_metadata(&app).await.pop().unwrap();
    assert_eq!((metadata["provider"].as_str(), metadata["cached"].as_bool()), (Some("anthropic"), Some(false)));
    let (first, total) = (metadata["first_token_ms"].as_u64().unwrap(), metadata["latency_ms"].as_u64().unwrap());
    assert!(first >= 200, "the first token came after the scripted delay: {metadata}");
    assert!(total >= first + 60, "three more tokens at 50/s came after it: {metadata}");
    assert_eq!(metadata["fallback_reason"], Value::Null);
    let metrics = app.metrics().await;
    wait_until("the chat is timed", || {
        let app = &app;
        async move { metric(&app.metrics().await, "pam_chat_seconds_count") == Some(1.0) }
    })
    .await;
    assert_eq!(metric(&metrics, "pam_chat_first_token_seconds_count"), Some(1.0));
    assert_eq!(metric(&metrics, "pam_chat_first_token_seconds_bucket{le=\"0.1\"}"), Some(0.0), "200 ms is not under 100 ms");
}

/// Three chats (the breaker opens after three failures in a row) against `fake` via `configure`:
/// each is the provider's whole answer, never the builtin's, and no attempt counted as failed.
async fn answers_complete_streams(fake: &FakeLlm, provider: &str, configure: fn(&mut pam_gateway::Settings, &FakeLlm)) {
    let app = spawn_app_with(|s| configure(s, fake), Default::default()).await;
    let mut client = app.connect_ready().await;
    for question in ["Where can I camp near Moab tonight?", "Is the road to Arches open?", "Any dump stations on the way?"] {
        let answer = legacy_chat(&mut client, question).await;
        assert_eq!((answer["message"].as_str(), answer["source"].as_str()), (Some("All good on the road."), Some(provider)), "{answer}");
    }
    assert_eq!(fake.calls(), 3, "every chat reached the provider: its breaker stayed closed");
    let stored: Vec<Value> = assistant_metadata(&app).await.iter().map(|m| m["fallback_reason"].clone()).collect();
    assert_eq!(stored, [Value::Null, Value::Null, Value::Null]);
    let metrics = app.metrics().await;
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("pam_llm_requests_total{{provider=\"{provider}\"")) && !l.contains("outcome=\"ok\""))
        .collect();
    assert!(failed.is_empty(), "no attempt counted as failed: {failed:?}");
    assert_eq!(metric(&metrics, &format!("pam_llm_circuit_open{{provider=\"{provider}\"}}")), Some(0.0));
}

#[tokio::test]
async fn openai_stream_whose_last_chunk_carries_content_and_finish_reason_then_eof_is_a_complete_answer() {
    let fake = FakeLlm::start(Script::answer("All good on the road.").ending(Ending::StopInLastChunk)).await;
    answers_complete_streams(&fake, "openai", use_openai).await;
}

#[tokio::test]
async fn anthropic_pings_with_an_empty_data_line_are_skipped() {
    let fake = FakeLlm::start(Script::answer("All good on the road.").with_empty_pings()).await;
    answers_complete_streams(&fake, "anthropic", use_anthropic).await;
}

#[tokio::test]
async fn streams_with_bare_cr_line_endings_are_complete_answers_for_both_providers() {
    let fake = FakeLlm::start(Script::answer("All good on the road.").with_bare_cr()).await;
    answers_complete_streams(&fake, "anthropic", use_anthropic).await;
    let fake = FakeLlm::start(Script::answer("All good on the road.").with_bare_cr().ending(Ending::StopInLastChunk)).await;
    answers_complete_streams(&fake, "openai", use_openai).await;
}
