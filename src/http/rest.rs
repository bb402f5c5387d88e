//! REST chat, `POST /api/v1/pam/chat` (alias `/api/v1/pam-simple/chat`): the browser client's
//! fallback when its socket gives no answer. Runs the same `TurnPipeline` as the socket (context,
//! models, fallback, storage), honours `Idempotency-Key`, shares the per-user rate limit with the
//! socket (across nodes with Redis), and answers bad input with a JSON `{"error","message"}` and a 4xx, never a 500.
//! Once read, a request is answered on a task of its own and its turn is registered before the
//! rate limit is asked (on the turn's task): a client that goes away at any point loses no chat.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pam_actors::metrics_names::{CHAT_SECONDS, RATE_LIMITED_TOTAL};
use pam_actors::trace::Dialect;
use pam_actors::{LlmReply, TurnInput, TurnOrigin};
use pam_protocol::{SessionId, UserId};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::cluster::idempotency::{Decision, StoredResponse, valid_key};
use crate::http::bearer;
use crate::http::error::error_response;
use crate::http::state::SharedState;
use crate::observability::traces;

/// How long the response waits for the stored turn's ids before answering without them.
const IDS_TIMEOUT: Duration = Duration::from_secs(2);
/// Header naming the idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A validated chat body.
#[derive(Debug, Clone)]
struct ChatBody {
    message: String,
    session: SessionId,
    conversation_id: Option<String>,
    context: Map<String, Value>,
}

/// Why a body was refused: the status and the `{"error","message"}` to send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BadBody {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, &self.message)
    }
}

impl ChatBody {
    /// Parses and validates the raw body.
    fn parse(raw: &[u8], max_chars: usize) -> Result<Self, BadBody> {
        let invalid =
            |code: &'static str, message: &str| Err(BadBody { status: StatusCode::BAD_REQUEST, code, message: message.to_string() });
        let Ok(value) = serde_json::from_slice::<Value>(raw) else {
            return invalid("INVALID_JSON", "the body is not valid JSON");
        };
        let Value::Object(mut body) = value else {
            return invalid("VALIDATION_ERROR", "the body must be a JSON object");
        };
        let message = match body.remove("message").filter(|m| !m.is_null()).or_else(|| body.remove("content")) {
            Some(Value::String(message)) => message,
            None | Some(Value::Null) => return invalid("VALIDATION_ERROR", "message is required"),
            Some(_) => return invalid("VALIDATION_ERROR", "message must be a string"),
        };
        if message.trim().is_empty() {
            return invalid("EMPTY_MESSAGE", "message is empty");
        }
        // Postgres text cannot hold NUL: such a turn could never be stored and would hold up the outbox.
        if message.contains('\0') {
            return invalid("VALIDATION_ERROR", "message must not contain NUL characters");
        }
        if message.chars().count() > max_chars {
            let message = format!("message is longer than {max_chars} characters");
            return Err(BadBody { status: StatusCode::PAYLOAD_TOO_LARGE, code: "MESSAGE_TOO_LARGE", message });
        }
        let session = match body.remove("session_id") {
            None | Some(Value::Null) => SessionId::default_session(),
            Some(Value::String(raw)) => match SessionId::parse(&raw) {
                Ok(session) => session,
                Err(error) => return invalid("VALIDATION_ERROR", &error.to_string()),
            },
            Some(_) => return invalid("VALIDATION_ERROR", "session_id must be a string"),
        };
        let conversation_id = match body.remove("conversation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) if uuid::Uuid::parse_str(&raw).is_ok() => Some(raw.to_ascii_lowercase()),
            Some(_) => return invalid("VALIDATION_ERROR", "conversation_id must be a uuid"),
        };
        let context = match body.remove("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(context)) => context,
            Some(_) => return invalid("VALIDATION_ERROR", "context must be an object"),
        };
        Ok(ChatBody { message, session, conversation_id, context })
    }

    /// Identifies the request for `Idempotency-Key` (the same JSON, whatever its spacing or key order).
    fn fingerprint(&self) -> [u8; 32] {
        let canonical = json!({
            "message": self.message, "session_id": self.session.as_str(),
            "conversation_id": self.conversation_id, "context": self.context,
        });
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }
}

/// `POST /api/v1/pam/chat`.
pub async fn chat(State(state): State<SharedState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    if state.is_draining() {
        return restarting();
    }
    // The request has been read: from here on it is answered on a task of its own, and its turn
    // is handed to the turn's task before any await of that one (the rate limit is asked there).
    // A client that goes away drops only this handler, at whichever await it was (auth, the
    // idempotency claim, the rate limit, the model), never its chat.
    let answer = tokio::spawn(super::middleware::in_request_scope(answer(state, headers, body, started)).in_current_span());
    answer.await.unwrap_or_else(|error| {
        tracing::error!(%error, "REST chat task failed");
        internal_error()
    })
}

/// Everything after the request was read: auth, the body, then the turn (with or without an
/// `Idempotency-Key`).
async fn answer(state: SharedState, headers: HeaderMap, body: Result<Bytes, BytesRejection>, started: Instant) -> Response {
    let (user, _) = match bearer::user(&state, &headers).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let raw = match body {
        Ok(raw) => raw,
        Err(rejection) => return body_rejection(&rejection),
    };
    if let Some(refusal) = require_json(&headers) {
        return refusal;
    }
    let body = match ChatBody::parse(&raw, state.settings.max_message_chars) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let key = match headers.get(IDEMPOTENCY_KEY).map(|k| k.to_str().map(str::trim)) {
        None => None,
        Some(Ok(key)) if valid_key(key) => Some(key.to_string()),
        Some(_) => {
            return error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Idempotency-Key must be 1-255 visible ASCII characters");
        }
    };
    // A caller's W3C `traceparent`: the turn's trace joins the caller's.
    let parent = traces::remote_parent(&headers);
    let Some(key) = key else {
        let client_msg_id = format!("rest:{}", uuid::Uuid::new_v4());
        return match run_turn(&state, &user, &body, client_msg_id, started, parent).await {
            Ok(response) => Json(response).into_response(),
            Err(refusal) => refusal,
        };
    };
    claim_and_answer(&state, &user, &body, &key, started, parent).await
}

/// Replay, 409 while in flight (on any node), 422 for another body, or run once.
async fn claim_and_answer(
    state: &SharedState,
    user: &UserId,
    body: &ChatBody,
    key: &str,
    started: Instant,
    parent: Option<opentelemetry::Context>,
) -> Response {
    match state.idempotency.claim(user, key, body.fingerprint()).await {
        Decision::Replay(stored) => {
            let mut response = Json(stored.body).into_response();
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Decision::InFlight => {
            error_response(StatusCode::CONFLICT, "IDEMPOTENCY_IN_FLIGHT", "a request with this Idempotency-Key is still being answered")
        }
        Decision::Mismatch => error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request body",
        ),
        Decision::Run(ticket) => {
            // The turn runs in its own task: a client that disconnects mid-answer leaves the key
            // completed (its retry gets the replay), never stuck in flight.
            let task = (state.clone(), user.clone(), body.clone(), key.to_string(), ticket.clone());
            let turn = tokio::spawn(super::middleware::in_request_scope(async move {
                let (state, user, body, key, ticket) = task;
                // The shared claim's lease is renewed while the turn runs, and only then.
                let turn = run_turn(&state, &user, &body, format!("rest:{key}"), started, parent);
                let outcome = tokio::select! {
                    outcome = turn => outcome,
                    never = state.idempotency.hold(&user, &key, &ticket) => match never {},
                };
                match &outcome {
                    Ok(response) => state.idempotency.complete(&user, &key, &ticket, StoredResponse { body: response.clone() }).await,
                    Err(_) => state.idempotency.release(&user, &key, &ticket).await,
                }
                outcome
            }));
            match turn.await {
                Ok(Ok(response)) => Json(response).into_response(),
                Ok(Err(refusal)) => refusal,
                Err(error) => {
                    state.idempotency.release(user, key, &ticket).await;
                    tracing::error!(%error, "REST chat turn task failed");
                    internal_error()
                }
            }
        }
    }
}

/// The shared pipeline, rate limit first (on the turn's task); the 200 body or the error response.
async fn run_turn(
    state: &SharedState,
    user: &UserId,
    body: &ChatBody,
    client_msg_id: String,
    started: Instant,
    parent: Option<opentelemetry::Context>,
) -> Result<Value, Response> {
    // Asked again right before the turn is registered (nothing awaits in between): a drain that
    // started meanwhile either sees the turn running and waits for it, or refuses it here.
    if state.is_draining() {
        return Err(restarting());
    }
    let request_id = super::middleware::current_request_id().unwrap_or_else(|| "unknown".into());
    let span = pam_actors::trace::turn_span(Dialect::Rest, body.session.as_str(), &client_msg_id);
    if let Some(parent) = parent {
        // Before anything runs under the span, so every span of the turn has the caller's trace id.
        let _ = span.set_parent(parent);
    }
    let input = TurnInput {
        user: user.clone(),
        session: body.session.clone(),
        message: body.message.clone(),
        context: body.context.clone(),
        client_msg_id: client_msg_id.clone(),
        origin: TurnOrigin::Rest(request_id),
        span,
    };
    let (deps, limited) = (state.deps.clone(), user.clone());
    let admit = async move { deps.rate_limiter.check(&limited).await };
    // The turn runs on its own task, registered as running before its rate limit is asked: a
    // client that disconnects drops this handler, not the turn, which is still answered and stored.
    let answer = match state.deps.pipeline().start(input, admit).await {
        Ok(Some(answer)) => answer,
        Ok(None) => return Err(rate_limited(state)),
        Err(error) => {
            tracing::error!(%error, "REST chat turn failed");
            return Err(internal_error());
        }
    };
    metrics::histogram!(CHAT_SECONDS).record(started.elapsed().as_secs_f64());
    let reply =
        answer.result.map_err(|failure| error_response(StatusCode::SERVICE_UNAVAILABLE, failure.code.as_str(), &failure.message))?;
    let ids = stored_ids(state, user, &body.session, &client_msg_id, &reply).await;
    Ok(json!({
        "response": reply.text,
        "actions": reply.ui_actions,
        "session_id": body.session.as_str(),
        "conversation_id": ids.as_ref().map(|i| i.conversation_id.clone()).or_else(|| body.conversation_id.clone()),
        "message_id": ids.map(|i| i.message_id),
        "processing_time_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "timestamp": pam_actors::iso_now(),
        "source": reply.source,
        "model": reply.model,
    }))
}

/// 429 with `Retry-After`, for a chat over the per-user rate limit.
fn rate_limited(state: &SharedState) -> Response {
    metrics::counter!(RATE_LIMITED_TOTAL).increment(1);
    let message = format!("more than {} messages a minute; slow down", state.settings.rate_limit_per_minute);
    let mut refusal = error_response(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", &message);
    refusal.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    refusal
}

/// 503 while this node drains.
fn restarting() -> Response {
    error_response(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_RESTART", "PAM is restarting; please retry in a moment")
}

/// 500, for a task that failed.
fn internal_error() -> Response {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "PAM hit an internal error; please retry")
}

/// The stored turn's ids; `None` while storage is down (the turn waits in the outbox).
async fn stored_ids(
    state: &SharedState,
    user: &UserId,
    session: &SessionId,
    client_msg_id: &str,
    reply: &LlmReply,
) -> Option<crate::storage::conversations::StoredTurnIds> {
    match tokio::time::timeout(IDS_TIMEOUT, state.db.stored_turn_ids(user, session, client_msg_id, &reply.text)).await {
        Ok(Ok(ids)) => ids,
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not read the stored turn's ids; answering without them");
            None
        }
        Err(_) => {
            tracing::warn!("reading the stored turn's ids took too long; answering without them");
            None
        }
    }
}

/// `Content-Type` must be JSON (`application/json`, any parameters, or a `+json` type).
pub fn require_json(headers: &HeaderMap) -> Option<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    (!json).then(|| error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json"))
}

/// A body that could not be read: too large → 413, anything else → 400.
pub fn body_rejection(rejection: &BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        error_response(StatusCode::PAYLOAD_TOO_LARGE, "MESSAGE_TOO_LARGE", "the request body is too large")
    } else {
        error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "the request body could not be read")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<ChatBody, StatusCode> {
        ChatBody::parse(raw.as_bytes(), 10).map_err(|r| r.status)
    }

    #[test]
    fn bodies_are_validated_field_by_field() {
        assert_eq!(parse(r#"{"message":"hi","extra":1}"#).unwrap().session.as_str(), "default");
        assert_eq!(parse(r#"{"content":"hi"}"#).unwrap().message, "hi");
        assert_eq!(parse("not json").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(parse(r#"{"message":"12345678901"}"#).unwrap_err(), StatusCode::PAYLOAD_TOO_LARGE);
        for bad in [
            r#"[]"#,
            r#"{"message":5}"#,
            r#"{"message":"  "}"#,
            r#"{"message":"hi","session_id":"a b"}"#,
            r#"{"message":"hi","context":[]}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_spacing_and_key_order_but_not_content() {
        let a = ChatBody::parse(br#"{"message":"hi","context":{"a":1,"b":2}}"#, 10).unwrap();
        let b = ChatBody::parse(br#"{ "context": {"b":2, "a":1}, "message": "hi" }"#, 10).unwrap();
        let c = ChatBody::parse(br#"{"message":"hi!"}"#, 10).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
