//! Deltas are pushed as they arrive (before the provider's stream ends), and a stream that stops
//! mid-answer is cut at the whole-answer deadline and answered by the fallback.

use std::time::Duration;

use crate::common::fake_llm::*;
use crate::common::*;
use pam_actors::{LlmProvider, LlmRequest};
use pam_gateway::models::{AnthropicProvider, OpenAiProvider, Standalone};
use pam_protocol::UserId;
use tokio::sync::mpsc;

fn request() -> LlmRequest {
    LlmRequest {
        user_id: UserId::parse(USER).unwrap(),
        session: pam_protocol::SessionId::default_session(),
        message: "hello".into(),
        context: Default::default(),
        history: Vec::new(),
        fast: true,
        turn_id: "t1".into(),
    }
}

/// Starts `provider.generate` and returns the first delta, which must arrive while the fake's
/// stream is still open (it hangs after its tokens, so the answer never completes).
async fn first_delta_while_streaming(provider: impl LlmProvider) -> String {
    let (tx, mut rx) = mpsc::channel(16);
    let generating = tokio::spawn(async move { provider.generate(&request(), tx).await });
    let first = tokio::time::timeout(WAIT, rx.recv()).await.expect("a delta arrives before the stream ends").unwrap();
    assert!(!generating.is_finished(), "the stream has not ended, so the delta was pushed as it arrived");
    generating.abort();
    first
}

#[tokio::test]
async fn anthropic_deltas_are_pushed_as_they_arrive() {
    rustls::crypto::ring::default_provider().install_default().ok();
    let fake = FakeLlm::start(Script::answer("Howdy partner").ending(Ending::Hang)).await;
    let models = ("big".to_string(), "small".to_string());
    let provider = AnthropicProvider::new(reqwest::Client::new(), &fake.url(), "k", models).unwrap();
    assert_eq!(first_delta_while_streaming(Standalone(provider)).await, "Howdy ");
    assert_eq!(fake.requests()[0].body["model"], "small", "a fast request uses the fast model");
}

#[tokio::test]
async fn openai_deltas_are_pushed_as_they_arrive() {
    rustls::crypto::ring::default_provider().install_default().ok();
    let fake = FakeLlm::start(Script::answer("Howdy partner").ending(Ending::Hang)).await;
    let models = ("big".to_string(), "small".to_string());
    let provider = OpenAiProvider::new(reqwest::Client::new(), &fake.url(), "k", models).unwrap();
    assert_eq!(first_delta_while_streaming(Standalone(provider)).await, "Howdy ");
}

#[tokio::test]
async fn a_stream_that_stops_mid_answer_is_cut_at_the_deadline_and_builtin_answers() {
    let fake = FakeLlm::start(Script { first_token_delay: Duration::ZERO, ..Script::answer("Let me think ").ending(Ending::Hang) }).await;
    let app = spawn_app_with(
        |s| {
            use_anthropic(s, &fake);
            // The first token comes at once; only the whole-answer deadline can end this attempt.
            (s.llm_first_token_timeout_ms, s.llm_timeout_ms) = (1_000, 1_000);
        },
        Default::default(),
    )
    .await;
    let mut client = app.connect_ready().await;
    let answer = legacy_chat(&mut client, "hello").await;
    assert_eq!(answer["error"], false, "the fallback answers inside the turn's outer deadline: {answer}");
    assert!(answer["message"].as_str().unwrap().starts_with("Hi there!"), "{answer}");
    let metadata = assistant_metadata(&app).await.pop().unwrap();
    assert_eq!(metadata["fallback_reason"], "anthropic: no complete answer within 1000 ms", "{metadata}");
    let series = "pam_llm_requests_total{provider=\"anthropic\",model=\"fake-fast\",outcome=\"timeout\"}";
    assert_eq!(metric(&app.metrics().await, series), Some(1.0));
}
