//! Server pushes and timers over HTTP.
//!
//! - `POST /api/v1/pam/push` (bearer `PAM_ADMIN_TOKEN` or an admin/service-role JWT): stores a
//!   `proactive_alert` or `timer_expired` for a user, then publishes it on the push bus (every
//!   socket of the user on every node) → 202 `{"id","online"}`.
//! - `POST /api/v1/pam/timers`, `GET /api/v1/pam/timers`, `DELETE /api/v1/pam/timers/{timer_id}`,
//!   `POST /api/v1/pam/internal/dismiss-timer` (the user's own bearer): timers and alarms, fired
//!   by the scheduler (`crate::push::timers::scheduler`).
//!
//! Errors are `{"error","message"}`: 400 for a body that is no JSON object or an unknown `type`,
//! 422 for a field out of its bounds, 409 over the pending-timer limit, 503 when the database
//! does not answer. Nothing is stored for a refused request.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use pam_actors::{Inserted, NewNotification, Notification, NotificationKind, NotificationStore, StoreError};
use pam_protocol::{AlertContent, AlertPriority, TimerType, UserId};
use serde_json::{Map, Value, json};

use crate::http::bearer;
use crate::http::error::error_response;
use crate::http::monitoring;
use crate::http::rest;
use crate::http::state::SharedState;
use crate::push::timers::scheduler::publish;
use crate::push::timers::{MAX_PENDING_TIMERS, MAX_TIMER_AHEAD, parse_fire_at, rfc3339};

/// `ttl_s` when a push names none, and the most it may name (7 days).
const DEFAULT_TTL_S: i64 = 3600;
const MAX_TTL_S: i64 = 7 * 24 * 3600;
const MAX_LABEL_CHARS: usize = 200;
const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_FIELD_CHARS: usize = 100;
const MAX_ACTIONS: usize = 10;

type Refusal = Box<Response>;

fn bad_request(message: &str) -> Refusal {
    Box::new(error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message))
}

fn unprocessable(message: &str) -> Refusal {
    Box::new(error_response(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", message))
}

fn storage(error: &StoreError) -> Response {
    tracing::warn!(%error, "notification storage failed");
    match error {
        StoreError::Rejected(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", "the database refused this record"),
        StoreError::Unavailable(_) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE", "storage is unavailable; retry shortly")
        }
    }
}

/// The body as a JSON object (400 otherwise).
fn object(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, Refusal> {
    let body = body.map_err(|rejection| Box::new(rest::body_rejection(&rejection)))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad_request("the body must be a JSON object")),
        Err(_) => Err(Box::new(error_response(StatusCode::BAD_REQUEST, "INVALID_JSON", "the body is not valid JSON"))),
    }
}

/// A string field of at most `max` characters, without NUL (422 otherwise); `None` when absent.
fn text(object: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, Refusal> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(unprocessable(&format!("'{key}' is longer than {max} characters"))),
        Some(Value::String(s)) if s.contains('\0') => Err(unprocessable(&format!("'{key}' contains a NUL character"))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(unprocessable(&format!("'{key}' must be a string"))),
    }
}

fn required_text(object: &Map<String, Value>, key: &str, max: usize) -> Result<String, Refusal> {
    text(object, key, max)?.filter(|s| !s.trim().is_empty()).ok_or_else(|| unprocessable(&format!("'{key}' is required")))
}

fn timer_type(object: &Map<String, Value>) -> Result<TimerType, Refusal> {
    match object.get("timer_type").and_then(Value::as_str) {
        None if object.get("timer_type").is_none_or(Value::is_null) => Ok(TimerType::Timer),
        Some("timer") => Ok(TimerType::Timer),
        Some("alarm") => Ok(TimerType::Alarm),
        _ => Err(unprocessable("'timer_type' must be \"timer\" or \"alarm\"")),
    }
}

fn timer_type_str(kind: TimerType) -> &'static str {
    match kind {
        TimerType::Timer => "timer",
        TimerType::Alarm => "alarm",
    }
}

/// `proactive_alert.content`: `message` required; `type` defaults to `proactive_alert`,
/// `category`/`alert_type` to `general`, `priority` to `normal`, `actions` to `[]`.
fn alert_content(object: &Map<String, Value>) -> Result<AlertContent, Refusal> {
    let Some(Value::Object(content)) = object.get("content") else {
        return Err(unprocessable("'content' must be an object with at least a 'message'"));
    };
    let priority = match content.get("priority") {
        None | Some(Value::Null) => AlertPriority::Normal,
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| unprocessable("'content.priority' must be \"urgent\", \"high\", \"normal\" or \"low\""))?,
    };
    let actions = match content.get("actions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_ACTIONS => items
            .iter()
            .map(|item| match item.as_str() {
                Some(s) if !s.is_empty() && s.chars().count() <= MAX_FIELD_CHARS => Ok(s.to_string()),
                _ => Err(unprocessable(&format!("'content.actions' items are strings of 1-{MAX_FIELD_CHARS} characters"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(unprocessable(&format!("'content.actions' must be an array of at most {MAX_ACTIONS} strings"))),
    };
    let field = |key: &str, default: &str| -> Result<String, Refusal> {
        Ok(text(content, key, MAX_FIELD_CHARS)
            .map_err(|_| unprocessable(&format!("'content.{key}' must be a string of at most {MAX_FIELD_CHARS} characters")))?
            .unwrap_or_else(|| default.to_string()))
    };
    Ok(AlertContent {
        kind: field("type", "proactive_alert")?,
        category: field("category", "general")?,
        alert_type: field("alert_type", "general")?,
        message: required_text(content, "message", MAX_MESSAGE_CHARS)
            .map_err(|_| unprocessable(&format!("'content.message' is required, a string of at most {MAX_MESSAGE_CHARS} characters")))?,
        priority,
        actions,
    })
}

/// A validated push request.
fn push_row(object: &Map<String, Value>, now: DateTime<Utc>) -> Result<NewNotification, Refusal> {
    let kind = match object.get("type").and_then(Value::as_str) {
        Some(kind) => NotificationKind::parse(kind)
            .ok_or_else(|| Box::new(error_response(StatusCode::BAD_REQUEST, "UNKNOWN_TYPE", &format!("unknown push type '{kind}'"))))?,
        None => return Err(bad_request("'type' is required: \"proactive_alert\" or \"timer_expired\"")),
    };
    let user = object
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(|raw| UserId::parse(raw).ok())
        .ok_or_else(|| unprocessable("'user_id' must be a uuid"))?;
    let (payload, expires_at) = match kind {
        NotificationKind::ProactiveAlert => {
            let ttl_s = match object.get("ttl_s") {
                None | Some(Value::Null) => DEFAULT_TTL_S,
                Some(value) => value
                    .as_i64()
                    .filter(|ttl| (1..=MAX_TTL_S).contains(ttl))
                    .ok_or_else(|| unprocessable(&format!("'ttl_s' must be an integer of 1-{MAX_TTL_S} seconds")))?,
            };
            (json!({"content": alert_content(object)?}), Some(now + Duration::seconds(ttl_s)))
        }
        NotificationKind::TimerExpired => {
            let label = required_text(object, "label", MAX_LABEL_CHARS)?;
            let message = text(object, "message", MAX_MESSAGE_CHARS)?.unwrap_or_else(|| label.clone());
            (json!({"label": label, "timer_type": timer_type_str(timer_type(object)?), "message": message}), None)
        }
    };
    Ok(NewNotification { user, kind, payload, fire_at: now, fired: true, expires_at, dedupe_key: None, max_pending: None })
}

/// `POST /api/v1/pam/push` → 202 `{"id","online"}`.
pub async fn push(State(state): State<SharedState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    if let Some(refusal) = monitoring::refuse_non_admin(&state, &headers).await {
        return refusal;
    }
    let now = Utc::now();
    let row = match object(body).and_then(|object| push_row(&object, now)) {
        Ok(row) => row,
        Err(refusal) => return *refusal,
    };
    let store: &dyn NotificationStore = &state.db;
    let id = match store.insert(&row).await {
        Ok(Inserted::New(id)) => id,
        Ok(other) => {
            tracing::error!(?other, "an unlimited push without a dedupe key was not stored");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the push was not stored");
        }
        Err(error) => return storage(&error),
    };
    let stored = Notification {
        id: id.clone(),
        user: row.user.clone(),
        kind: row.kind,
        payload: row.payload,
        fire_at: now,
        fired_at: Some(now),
        delivered_at: None,
        expires_at: row.expires_at,
        created_at: now,
    };
    // A socket marks it delivered once its client proved it has it (a pong to a later ping, an ack).
    let online = publish(&*state.deps.push_bus, &stored).await;
    (StatusCode::ACCEPTED, Json(json!({"id": id, "online": online}))).into_response()
}

/// A validated timer request.
fn timer_row(user: UserId, object: &Map<String, Value>, now: DateTime<Utc>) -> Result<NewNotification, Refusal> {
    let label = required_text(object, "label", MAX_LABEL_CHARS)?;
    let timer_type = timer_type(object)?;
    let message = text(object, "message", MAX_MESSAGE_CHARS)?.unwrap_or_else(|| label.clone());
    let duration = object.get("duration_s").filter(|v| !v.is_null());
    let at = object.get("fire_at").filter(|v| !v.is_null());
    let fire_at = match (duration, at) {
        (Some(duration), None) => {
            let seconds = duration
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| unprocessable("'duration_s' must be a positive number of seconds"))?;
            if seconds > MAX_TIMER_AHEAD.num_seconds() as f64 {
                return Err(unprocessable("a timer fires within 30 days"));
            }
            now + Duration::milliseconds((seconds * 1000.0).round() as i64)
        }
        (None, Some(at)) => at
            .as_str()
            .and_then(parse_fire_at)
            .ok_or_else(|| unprocessable("'fire_at' must be an RFC 3339 time with its offset and seconds 0-59"))?,
        (Some(_), Some(_)) => return Err(unprocessable("give either 'duration_s' or 'fire_at', not both")),
        (None, None) => return Err(unprocessable("'duration_s' or 'fire_at' is required")),
    };
    if fire_at <= now {
        return Err(unprocessable("'fire_at' must be in the future"));
    }
    if fire_at > now + MAX_TIMER_AHEAD {
        return Err(unprocessable("a timer fires within 30 days"));
    }
    Ok(NewNotification {
        user,
        kind: NotificationKind::TimerExpired,
        payload: json!({"label": label, "timer_type": timer_type_str(timer_type), "message": message}),
        fire_at,
        fired: false,
        expires_at: None,
        dedupe_key: None,
        max_pending: Some(MAX_PENDING_TIMERS),
    })
}

/// `POST /api/v1/pam/timers` → 201 `{"timer_id","fire_at"}`.
pub async fn create_timer(State(state): State<SharedState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let user = match bearer::user(&state, &headers).await {
        Ok((user, _)) => user,
        Err(refusal) => return refusal,
    };
    let row = match object(body).and_then(|object| timer_row(user, &object, Utc::now())) {
        Ok(row) => row,
        Err(refusal) => return *refusal,
    };
    let store: &dyn NotificationStore = &state.db;
    match store.insert(&row).await {
        Ok(Inserted::New(id)) => (StatusCode::CREATED, Json(json!({"timer_id": id, "fire_at": rfc3339(row.fire_at)}))).into_response(),
        Ok(Inserted::TooManyPending) => error_response(
            StatusCode::CONFLICT,
            "TOO_MANY_TIMERS",
            &format!("at most {MAX_PENDING_TIMERS} timers may be pending; dismiss one first"),
        ),
        Ok(Inserted::Duplicate) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the timer was not stored"),
        Err(error) => storage(&error),
    }
}

/// `GET /api/v1/pam/timers` → `{"timers":[{"timer_id","label","timer_type","message","fire_at",
/// "fired_at"}]}`: pending timers (`fired_at` null) and fired ones not yet dismissed (re-sent on
/// every connect for 24 h), by `fire_at`.
pub async fn list_timers(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let user = match bearer::user(&state, &headers).await {
        Ok((user, _)) => user,
        Err(refusal) => return refusal,
    };
    match state.db.listed_timers(&user).await {
        Ok(rows) => {
            let timers: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "timer_id": row.id,
                        "label": row.payload.get("label"),
                        "timer_type": row.payload.get("timer_type"),
                        "message": row.payload.get("message"),
                        "fire_at": rfc3339(row.fire_at),
                        "fired_at": row.fired_at.map(rfc3339),
                    })
                })
                .collect();
            Json(json!({"timers": timers})).into_response()
        }
        Err(error) => storage(&error),
    }
}

/// `DELETE /api/v1/pam/timers/{timer_id}` → 204; 404 when the user has no such timer.
pub async fn delete_timer(State(state): State<SharedState>, headers: HeaderMap, Path(timer_id): Path<String>) -> Response {
    let user = match bearer::user(&state, &headers).await {
        Ok((user, _)) => user,
        Err(refusal) => return refusal,
    };
    dismiss(&state, &user, &timer_id, |_| StatusCode::NO_CONTENT.into_response()).await
}

/// `POST /api/v1/pam/internal/dismiss-timer` `{"timer_id","user_id"}` → 200 `{"dismissed":true}`;
/// `user_id` must be the bearer's own (403 otherwise), 404 when there is no such timer.
pub async fn dismiss_timer(State(state): State<SharedState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let user = match bearer::user(&state, &headers).await {
        Ok((user, _)) => user,
        Err(refusal) => return refusal,
    };
    let object = match object(body) {
        Ok(object) => object,
        Err(refusal) => return *refusal,
    };
    let Some(timer_id) = object.get("timer_id").and_then(Value::as_str).filter(|id| !id.is_empty() && id.len() <= 64) else {
        return *unprocessable("'timer_id' is required");
    };
    match object.get("user_id").and_then(Value::as_str).map(UserId::parse) {
        Some(Ok(named)) if named == user => {}
        Some(Ok(_)) => return error_response(StatusCode::FORBIDDEN, "FORBIDDEN", "'user_id' must be the token's own user"),
        _ => return *unprocessable("'user_id' must be a uuid"),
    }
    dismiss(&state, &user, timer_id, |_| Json(json!({"dismissed": true})).into_response()).await
}

async fn dismiss(state: &SharedState, user: &UserId, id: &str, done: impl FnOnce(()) -> Response) -> Response {
    let store: &dyn NotificationStore = &state.db;
    match store.dismiss(user, id).await {
        Ok(true) => done(()),
        Ok(false) => error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such timer"),
        Err(error) => storage(&error),
    }
}
