//! Actor supervision seen from the socket: lazy orchestrators, a crashing orchestrator that
//! leaves the connection usable, a crashing connection actor that closes with 1011 and a reason,
//! and pings answered while a chat is being generated.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use pam_actors::{AuthError, Authenticator, BoxFuture, Identity, LlmError, LlmProvider, LlmReply, LlmRequest};
use pam_gateway::Overrides;
use serde_json::json;
use tokio::sync::mpsc;

/// Panics on "crash", sleeps on "slow", answers otherwise.
struct ScriptedModel {
    calls: AtomicUsize,
}

impl LlmProvider for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, _deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match request.message.as_str() {
                "crash" => panic!("scripted model crash"),
                // The model's own latency, scripted.
                "slow" => tokio::time::sleep(Duration::from_millis(1500)).await,
                _ => {}
            }
            Ok(LlmReply::new(format!("echo: {}", request.message), "scripted-1", "scripted"))
        })
    }
}

fn scripted() -> Overrides {
    Overrides { llm: Some(Arc::new(ScriptedModel { calls: AtomicUsize::new(0) })), ..Default::default() }
}

async fn orchestrators(app: &TestApp) -> Option<f64> {
    metric(&app.metrics().await, "pam_orchestrators_active")
}

#[tokio::test]
async fn a_connection_that_never_chats_starts_no_orchestrator() {
    let app = spawn_app_with(|_| {}, scripted()).await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"ping","timestamp":1})).await;
    client.recv_non_ping().await;
    assert_eq!(orchestrators(&app).await, Some(0.0));
    client.send_json(json!({"type":"chat","message":"hi"})).await;
    assert_eq!(client.recv_non_ping().await["message"], "echo: hi");
    assert_eq!(orchestrators(&app).await, Some(1.0), "the first chat starts one");
    client.send_json(json!({"type":"chat","message":"again"})).await;
    client.recv_non_ping().await;
    assert_eq!(orchestrators(&app).await, Some(1.0), "later chats reuse it");
    client.ws.close(None).await.unwrap();
    wait_until("the orchestrator stops with its connection", || async { orchestrators(&app).await == Some(0.0) }).await;
}

#[tokio::test]
async fn a_crashing_orchestrator_yields_an_error_frame_and_the_next_chat_works() {
    let app = spawn_app_with(|_| {}, scripted()).await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","message":"crash"})).await;
    // A failed turn is answered by its one terminal frame: chat_response with error true.
    let error = client.recv_non_ping().await;
    assert_eq!((error["type"].as_str(), error["error"].as_bool()), (Some("chat_response"), Some(true)), "{error}");
    assert_eq!(error["error_code"], "INTERNAL");
    client.send_json(json!({"type":"chat","message":"still there?"})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response");
    assert_eq!(answer["message"], "echo: still there?");
}

#[tokio::test]
async fn pings_are_answered_at_once_while_a_chat_is_being_generated() {
    let app = spawn_app_with(|_| {}, scripted()).await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","message":"slow"})).await;
    client.send_json(json!({"type":"ping","timestamp":99})).await;
    assert_eq!(client.recv_non_ping().await, json!({"type":"pong","timestamp":99}), "the pong overtakes the slow answer");
    assert_eq!(client.recv_non_ping().await["type"], "chat_response");
}

/// An authenticator that panics: the connection actor fails inside its own code.
struct PanickingAuthenticator;

impl Authenticator for PanickingAuthenticator {
    fn authenticate<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async { panic!("authenticator bug") })
    }
}

#[tokio::test]
async fn a_failing_connection_actor_closes_with_1011_and_a_reason() {
    let overrides = Overrides { authenticator: Some(Arc::new(PanickingAuthenticator)), ..Default::default() };
    let app = spawn_app_with(|_| {}, overrides).await;
    let mut client = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1011);
    assert!(closed.reason.contains("internal error"), "{closed:?}");
    assert_eq!(frames.last().map(|f| f["error_code"].clone()), Some(json!("INTERNAL")));
    // The failure stayed with that connection: the server still serves.
    let health = reqwest::get(app.http("/health/live")).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// Accepts the first token as `USER`, panics on every later one (a v2 `auth_refresh`).
struct PanicsOnRefresh(AtomicUsize);

impl Authenticator for PanicsOnRefresh {
    fn authenticate<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            assert_eq!(self.0.fetch_add(1, Ordering::SeqCst), 0, "authenticator bug on refresh");
            Ok(Identity {
                subject: Some(pam_protocol::UserId::parse(USER).unwrap()),
                role: "authenticated".into(),
                privileged: false,
                expires_at: None,
            })
        })
    }
}

#[tokio::test]
async fn a_v2_connection_that_fails_before_its_welcome_gets_a_numbered_1011_error_frame() {
    use crate::common::v2::*;
    let overrides = Overrides { authenticator: Some(Arc::new(PanickingAuthenticator)), ..Default::default() };
    let app = spawn_app_with(|_| {}, overrides).await;
    let (mut client, _) = connect_v2(&v2_url(&app, Some(&token_for(USER)))).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1011);
    let error = frames.last().expect("an error frame before the close");
    assert_eq!((error["type"].as_str(), error["error_code"].as_str()), (Some("error"), Some("INTERNAL")), "{error}");
    assert_eq!(error["seq"], 1, "{error}");
    assert!(error["retryable"].is_boolean(), "{error}");
}

#[tokio::test]
async fn a_v2_connection_that_fails_after_its_welcome_numbers_the_1011_error_frame_after_it() {
    use crate::common::v2::*;
    let overrides = Overrides { authenticator: Some(Arc::new(PanicsOnRefresh(AtomicUsize::new(0)))), ..Default::default() };
    let app = spawn_app_with(|_| {}, overrides).await;
    let (mut client, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"auth_refresh","token":token_for(USER)})).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 1011, "{closed:?} {frames:?}");
    let error = frames.last().expect("an error frame before the close");
    assert_eq!(error["error_code"], "INTERNAL", "{error}");
    assert!(error["seq"].as_u64().unwrap() > welcome["seq"].as_u64().unwrap(), "{welcome} then {error}");
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "pam_ws_closed_total{code=\"1011\"}"), Some(1.0), "counted once");
}
