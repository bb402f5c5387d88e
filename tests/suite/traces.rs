//! OpenTelemetry traces (design.md "Observability: OpenTelemetry traces"): the real binary with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a fake OTLP/HTTP collector exports one trace per turn
//! — the turn, its context loads, its model attempts with the GenAI attributes and token usage,
//! its storage writes — joining a REST caller's `traceparent`, with no message text unless
//! `PAM_TRACE_CONTENT=true` (REST, v2 and legacy turns alike); without an endpoint or with a malformed setting it runs untraced.

use std::time::Duration;

use serde_json::json;

use crate::common::fake_llm::{FakeLlm, Script, TEST_ANTHROPIC_KEY, legacy_chat};
use crate::common::otlp::{CollectedSpan, FakeCollector, TracedGateway};
use crate::common::rest::client;
use crate::common::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn traced_gateway(collector: &FakeCollector, llm: &FakeLlm, more: &[(&str, &str)]) -> TracedGateway {
    let (endpoint, base) = (collector.url(), llm.url());
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY),
        ("ANTHROPIC_BASE_URL", base.as_str()),
        ("PAM_ANTHROPIC_MODEL", "fake-accurate"),
        ("PAM_ANTHROPIC_FAST_MODEL", "fake-fast"),
    ];
    env.extend_from_slice(more);
    TracedGateway::start(&env).await
}

/// The spans of the trace whose turn span satisfies `turn`, once the turn span and its answer's
/// storage write are both exported (the turn span ends last).
async fn turn_trace(collector: &FakeCollector, turn: impl Fn(&CollectedSpan) -> bool) -> (CollectedSpan, Vec<CollectedSpan>) {
    poll_until(WAIT, wait::POLL, "the turn's trace is exported", async || {
        let spans = collector.spans();
        let Some(root) = spans.iter().find(|s| s.name == "chat turn" && turn(s)) else { return Err(format!("{spans:#?}")) };
        let trace: Vec<_> = spans.iter().filter(|s| s.trace_id == root.trace_id).cloned().collect();
        if trace.iter().any(|s| s.name == "store answer") { Ok((root.clone(), trace)) } else { Err(format!("{trace:#?}")) }
    })
    .await
}

fn named<'a>(trace: &'a [CollectedSpan], name: &str) -> &'a CollectedSpan {
    trace.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name} in {trace:#?}"))
}

#[tokio::test]
async fn a_rest_chat_is_one_trace_in_the_callers_with_context_model_and_storage_spans_and_no_text() {
    let collector = FakeCollector::start().await;
    let llm = FakeLlm::start(Script::answer("You spent 120 on diesel")).await;
    let gateway = traced_gateway(&collector, &llm, &[("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20dGVzdA==")]).await;
    let message = "how much did I spend on fuel?";
    let response = client()
        .post(gateway.http("/api/v1/pam/chat"))
        .bearer_auth(token_for(USER))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (turn, trace) = turn_trace(&collector, |s| s.trace_id == CALLER_TRACE).await;
    assert_eq!(turn.parent_span_id, CALLER_SPAN, "the turn joins the caller's span");
    assert_eq!((turn.attr("dialect"), turn.attr("outcome")), (Some("rest"), Some("answered")), "{turn:#?}");
    assert!(turn.attr("client_msg_id").is_some_and(|id| id.starts_with("rest:")) && turn.attr("session").is_some(), "{turn:#?}");
    assert_eq!(turn.service, "pam-gateway", "OTEL_SERVICE_NAME's default");
    for kind in ["profile", "financial", "social"] {
        let load = named(&trace, &format!("context {kind}"));
        assert_eq!(load.parent_span_id, turn.span_id);
        assert_eq!(load.attr("kind"), Some(kind));
        assert!(matches!(load.attr("cache"), Some("hit" | "miss")) && load.attr("source").is_some(), "{load:#?}");
    }
    let attempt = named(&trace, "chat fake-accurate");
    assert_eq!(attempt.parent_span_id, turn.span_id);
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.model", "fake-accurate"),
        ("gen_ai.response.model", "fake-accurate"),
        ("gen_ai.usage.input_tokens", "10"),
        ("gen_ai.usage.output_tokens", "5"),
    ] {
        assert_eq!(attempt.attr(key), Some(value), "{key} in {attempt:#?}");
    }
    assert!(attempt.attr("error.type").is_none(), "{attempt:#?}");
    assert!(attempt.events.iter().any(|e| e == "gen_ai.first_token"), "{attempt:#?}");
    for write in ["store user_message", "store answer"] {
        assert_eq!(named(&trace, write).attr("outcome"), Some("stored"));
    }
    let all = format!("{:?}", collector.spans());
    assert!(!all.contains("fuel") && !all.contains("diesel"), "no message text without PAM_TRACE_CONTENT: {all}");
    let headers = collector.export_headers();
    assert_eq!(headers[0].get("authorization").unwrap(), "Basic dGVzdA==", "OTEL_EXPORTER_OTLP_HEADERS, decoded");

    let metrics = reqwest::get(gateway.http("/metrics")).await.unwrap().text().await.unwrap();
    let tokens = |model: &str, direction: &str| {
        metric(&metrics, &format!("pam_llm_tokens_total{{provider=\"anthropic\",model=\"{model}\",direction=\"{direction}\"}}"))
    };
    assert_eq!((tokens("fake-accurate", "input"), tokens("fake-accurate", "output")), (Some(10.0), Some(5.0)), "{metrics}");
    assert_eq!(tokens("fake-fast", "input"), Some(0.0), "every configured model is registered at zero");
}

#[tokio::test]
async fn a_v2_chat_is_one_trace_with_its_id_and_context_model_and_storage_spans() {
    let collector = FakeCollector::start().await;
    let llm = FakeLlm::start(Script::answer("Quartzsite has free camping")).await;
    let gateway = traced_gateway(&collector, &llm, &[]).await;
    let url = format!("ws://127.0.0.1:{}/api/v2/pam/ws?token={}", gateway.port, token_for(USER));
    let (mut socket, _) = crate::common::v2::connect_v2(&url).await;
    assert_eq!(socket.recv_non_ping().await["type"], "welcome");
    socket.send_json(json!({"type":"chat","id":"trace-v2-1","message":"where can I camp near Quartzsite?"})).await;
    let end = crate::common::v2::frames_until(&mut socket, "chat_end").await.pop().unwrap();
    assert_eq!(end["id"], "trace-v2-1", "{end}");

    let (turn, trace) = turn_trace(&collector, |s| s.attr("client_msg_id") == Some("trace-v2-1")).await;
    assert_eq!((turn.attr("dialect"), turn.attr("outcome")), (Some("v2"), Some("answered")), "{turn:#?}");
    assert_eq!(turn.parent_span_id, "", "a socket turn is a trace of its own");
    for kind in ["profile", "financial", "social"] {
        assert_eq!(named(&trace, &format!("context {kind}")).parent_span_id, turn.span_id);
    }
    let attempt = named(&trace, "chat fake-accurate");
    assert_eq!(
        (attempt.attr("gen_ai.operation.name"), attempt.attr("gen_ai.usage.output_tokens")),
        (Some("chat"), Some("5")),
        "{attempt:#?}"
    );
    for write in ["store user_message", "store answer"] {
        assert_eq!(named(&trace, write).attr("outcome"), Some("stored"));
    }
    let all = format!("{:?}", collector.spans());
    assert!(!all.contains("Quartzsite"), "no message text without PAM_TRACE_CONTENT: {all}");
}

#[tokio::test]
async fn a_socket_turn_that_falls_back_has_error_type_and_with_trace_content_the_text() {
    let collector = FakeCollector::start().await;
    let llm = FakeLlm::start(Script::status(500)).await;
    let gateway = traced_gateway(&collector, &llm, &[("PAM_TRACE_CONTENT", "true"), ("OTEL_SERVICE_NAME", "pam-test")]).await;
    let mut socket = WsClient::connect(&gateway.ws_url(USER)).await;
    assert_eq!(socket.recv_json().await["type"], "connection");
    let answer = legacy_chat(&mut socket, "hello there pam").await;
    let (turn, trace) = turn_trace(&collector, |s| s.attr("dialect") == Some("legacy")).await;
    assert_eq!(turn.parent_span_id, "", "a socket turn is a trace of its own");
    assert_eq!((turn.attr("outcome"), turn.service.as_str()), (Some("answered"), "pam-test"));
    let failed = named(&trace, "chat fake-fast");
    assert_eq!((failed.attr("gen_ai.provider.name"), failed.attr("error.type")), (Some("anthropic"), Some("http_5xx")), "{failed:#?}");
    let builtin = trace.iter().find(|s| s.attr("gen_ai.provider.name") == Some("builtin")).expect("the fallback's attempt");
    assert!(builtin.attr("error.type").is_none());
    assert!(builtin.attr("gen_ai.input.messages").is_some_and(|m| m.contains("hello there pam")), "{builtin:#?}");
    let said = answer["message"].as_str().or(answer["response"].as_str()).unwrap_or_default().to_string();
    assert!(builtin.attr("gen_ai.output.messages").is_some_and(|m| m.contains(&said)), "{builtin:#?} {answer}");
}

#[tokio::test]
async fn without_an_endpoint_or_with_malformed_headers_the_gateway_runs_untraced() {
    let collector = FakeCollector::start().await;
    let endpoint = collector.url();
    for (case, env) in [
        ("no endpoint", vec![("OTEL_EXPORTER_OTLP_HEADERS", "x-team=abc")]),
        ("malformed headers", vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization")]),
    ] {
        let mut env = env;
        env.push(("OTEL_BSP_SCHEDULE_DELAY", "50"));
        let mut gateway = TracedGateway::start(&env).await;
        let response = client()
            .post(gateway.http("/api/v1/pam/chat"))
            .bearer_auth(token_for(USER))
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{case}: chats are answered");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(gateway.running(), "{case}");
        assert!(collector.spans().is_empty(), "{case}: nothing is exported");
        let log = gateway.log();
        let problems: Vec<_> = log.lines().filter(|l| l.contains("traces are off")).collect();
        if case == "malformed headers" {
            assert_eq!(problems.len(), 1, "{case}: one line: {log}");
            assert!(problems[0].contains("OTEL_EXPORTER_OTLP_HEADERS"), "{}", problems[0]);
        } else {
            assert!(problems.is_empty() && !log.contains("exporting traces"), "{case}: {log}");
        }
    }
}
