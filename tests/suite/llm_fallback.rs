//! When the model misbehaves — stalls, 429, 500, malformed stream, cut off mid-stream — the chat
//! still answers over a real legacy WebSocket (from the builtin assistant, never with a fragment),
//! and the stored turn says who answered and why the model did not.

use crate::common::fake_llm::*;
use crate::common::*;
use serde_json::Value;

/// Runs one "hello" chat against an Anthropic fake playing `script`; returns the answer frame,
/// the stored metadata and the metrics text.
async fn chat_with_failing_anthropic(script: Script) -> (Value, Value, String) {
    let fake = FakeLlm::start(script).await;
    let app = spawn_app_with(
        |s| {
            use_anthropic(s, &fake);
            s.llm_first_token_timeout_ms = 300;
        },
        Default::default(),
    )
    .await;
    let mut client = app.connect_ready().await;
    let answer = legacy_chat(&mut client, "hello").await;
    assert_eq!(fake.calls(), 1, "the model was asked once");
    let metadata = assistant_metadata(&app).await.pop().expect("the turn is stored");
    (answer, metadata, app.metrics().await)
}

fn assert_builtin_answered(answer: &Value, metadata: &Value, reason: &str) {
    assert_eq!(answer["error"], false, "{answer}");
    assert!(answer["message"].as_str().unwrap().starts_with("Hi there! I'm PAM"), "the builtin answers: {answer}");
    assert_eq!(answer["source"], "builtin", "{answer}");
    assert_eq!(metadata["provider"], "builtin", "{metadata}");
    assert_eq!(metadata["fallback_reason"], reason, "{metadata}");
    assert!(metadata["first_token_ms"].is_u64(), "{metadata}");
}

fn failed_attempts(metrics: &str, outcome: &str) -> Option<f64> {
    metric(metrics, &format!("pam_llm_requests_total{{provider=\"anthropic\",model=\"fake-fast\",outcome=\"{outcome}\"}}"))
}

#[tokio::test]
async fn stalled_provider_falls_back_to_builtin() {
    let (answer, metadata, metrics) = chat_with_failing_anthropic(Script::stall()).await;
    assert_builtin_answered(&answer, &metadata, "anthropic: no first token within 300 ms");
    assert_eq!(failed_attempts(&metrics, "first_token_timeout"), Some(1.0));
    assert_eq!(metric(&metrics, "pam_llm_requests_total{provider=\"builtin\",model=\"builtin\",outcome=\"ok\"}"), Some(1.0));
}

#[tokio::test]
async fn rate_limited_provider_falls_back_to_builtin() {
    let (answer, metadata, metrics) = chat_with_failing_anthropic(Script::status(429)).await;
    assert_builtin_answered(&answer, &metadata, "anthropic: HTTP 429");
    assert_eq!(failed_attempts(&metrics, "http_429"), Some(1.0));
}

#[tokio::test]
async fn failing_provider_falls_back_to_builtin() {
    let (answer, metadata, metrics) = chat_with_failing_anthropic(Script::status(500)).await;
    assert_builtin_answered(&answer, &metadata, "anthropic: HTTP 500");
    assert_eq!(failed_attempts(&metrics, "http_5xx"), Some(1.0));
}

#[tokio::test]
async fn malformed_stream_falls_back_to_builtin_without_the_fragment() {
    let (answer, metadata, metrics) = chat_with_failing_anthropic(Script::answer("Broken answer ").ending(Ending::Malformed)).await;
    let reason = metadata["fallback_reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.starts_with("anthropic: malformed stream: `content_block_delta` event data is not JSON"), "{metadata}");
    assert_builtin_answered(&answer, &metadata, &reason);
    assert!(!answer["message"].as_str().unwrap().contains("Broken"), "{answer}");
    assert_eq!(failed_attempts(&metrics, "malformed"), Some(1.0));
}

#[tokio::test]
async fn stream_cut_off_mid_answer_falls_back_to_builtin_without_the_fragment() {
    let (answer, metadata, metrics) = chat_with_failing_anthropic(Script::answer("Half of an answer ").ending(Ending::CutOff)).await;
    assert_builtin_answered(&answer, &metadata, "anthropic: stream cut off before its end event");
    assert!(!answer["message"].as_str().unwrap().contains("Half"), "{answer}");
    assert_eq!(failed_attempts(&metrics, "cut_off"), Some(1.0));
}

#[tokio::test]
async fn openai_answers_when_anthropic_fails_and_health_names_the_primary() {
    let anthropic = FakeLlm::start(Script::status(503)).await;
    let openai = FakeLlm::start(Script::answer("Here from the second provider.")).await;
    let app = spawn_app_with(
        |s| {
            use_anthropic(s, &anthropic);
            use_openai(s, &openai);
        },
        Default::default(),
    )
    .await;
    let mut client = app.connect_ready().await;
    let answer = legacy_chat(&mut client, "hello").await;
    assert_eq!(answer["message"], "Here from the second provider.", "{answer}");
    assert_eq!((answer["source"].as_str(), answer["model"].as_str()), (Some("openai"), Some("fake-gpt-mini")));
    let metadata = assistant_metadata(&app).await.pop().unwrap();
    assert_eq!(metadata["fallback_reason"], "anthropic: HTTP 503", "{metadata}");
    let health: Value = reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["llm"]["provider"], "anthropic", "{health}");
    assert_eq!(health["llm"]["model"], "fake-accurate", "{health}");
    assert_eq!(health["llm"]["fallbacks"], serde_json::json!(["openai", "builtin"]), "{health}");
}

#[tokio::test]
async fn a_provider_failing_three_turns_in_a_row_is_skipped_and_shown_in_metrics() {
    let fake = FakeLlm::start(Script::status(503)).await;
    let app = spawn_app_with(|s| use_anthropic(s, &fake), Default::default()).await;
    let mut client = app.connect_ready().await;
    assert_eq!(metric(&app.metrics().await, "pam_llm_circuit_open{provider=\"anthropic\"}"), Some(0.0));
    for _ in 0..3 {
        legacy_chat(&mut client, "hello").await;
    }
    let answer = legacy_chat(&mut client, "hello").await;
    assert_eq!(answer["source"], "builtin", "{answer}");
    assert_eq!(fake.calls(), 3, "the fourth turn did not wait on the failing provider");
    let metadata = assistant_metadata(&app).await.pop().unwrap();
    assert_eq!(metadata["fallback_reason"], "anthropic: skipped, circuit open after repeated failures", "{metadata}");
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "pam_llm_circuit_open{provider=\"anthropic\"}"), Some(1.0));
    assert_eq!(failed_attempts(&metrics, "circuit_open"), Some(1.0));
}
