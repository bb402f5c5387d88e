//! CSRF-protected PAM preferences (the user's own, not the gateway's settings): `GET
//! /api/v1/csrf-token` issues a token for the bearer's user; `GET`/`POST /api/v1/users/{user_id}/settings` read and replace `user_settings.pam_preferences`
//! for the bearer's own user. A POST needs `X-CSRF-Token`; any bad token is 403 `CSRF_INVALID`.
//! A write evicts the user's cached context so the next chat sees fresh data.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pam_protocol::UserId;
use serde_json::{Value, json};

use super::rest::{body_rejection, require_json};
use crate::auth::csrf::CSRF_TTL_SECS;
use crate::http::bearer;
use crate::http::error::error_response;
use crate::http::state::SharedState;
use crate::storage::preferences::UserPreferences;

/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest preferences body accepted.
pub const MAX_PREFERENCES_BYTES: usize = 16 * 1024;

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// `GET /api/v1/csrf-token`.
pub async fn csrf_token(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let (user, _) = match bearer::user(&state, &headers).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let token = state.csrf.issue(&user, unix_now());
    let mut response = Json(json!({"csrf_token": token, "expires_in": CSRF_TTL_SECS, "header": "X-CSRF-Token"})).into_response();
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

/// The bearer's user, who must be the path's user.
async fn own_user(state: &SharedState, headers: &HeaderMap, path_user: &str) -> Result<UserId, Response> {
    let (user, _) = bearer::user(state, headers).await?;
    match UserId::parse(path_user) {
        Ok(path) if path == user => Ok(user),
        Ok(_) => Err(error_response(StatusCode::FORBIDDEN, "FORBIDDEN", "you can only read and change your own settings")),
        Err(_) => Err(error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "the user id in the path is not a uuid")),
    }
}

fn preferences_body(user: &UserId, preferences: UserPreferences) -> Response {
    Json(json!({"user_id": user.as_str(), "pam_preferences": preferences.pam_preferences, "updated_at": preferences.updated_at}))
        .into_response()
}

fn storage_down(error: &pam_actors::StoreError) -> Response {
    tracing::warn!(%error, "settings storage unavailable");
    error_response(StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE", "settings are out of reach right now; retry shortly")
}

/// Whether any string or key in `value` holds a NUL character.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(key, item)| key.contains('\0') || has_nul(item)),
        _ => false,
    }
}

/// `GET /api/v1/users/{user_id}/settings`.
pub async fn read(State(state): State<SharedState>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    let user = match own_user(&state, &headers, &user_id).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    match state.db.preferences(&user).await {
        Ok(settings) => preferences_body(&user, settings),
        Err(error) => storage_down(&error),
    }
}

/// `POST /api/v1/users/{user_id}/settings` with `{"pam_preferences":{…}}` (replaces them).
pub async fn write(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let user = match own_user(&state, &headers, &user_id).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let token = headers.get(CSRF_HEADER).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Err(reason) = state.csrf.verify(&user, token, unix_now()) {
        // The reason only; the token itself is never logged.
        tracing::info!(%user, %reason, "settings write refused: CSRF");
        return error_response(
            StatusCode::FORBIDDEN,
            "CSRF_INVALID",
            "missing, malformed or expired CSRF token; fetch a new one from /api/v1/csrf-token",
        );
    }
    let raw = match body {
        Ok(raw) => raw,
        Err(rejection) => return body_rejection(&rejection),
    };
    if let Some(refusal) = require_json(&headers) {
        return refusal;
    }
    let preferences = match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(mut body)) => match body.remove("pam_preferences") {
            // Postgres jsonb cannot hold NUL (`\u0000`); refuse it on both backends alike.
            Some(preferences @ Value::Object(_)) if !has_nul(&preferences) => preferences,
            _ => return error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "send {\"pam_preferences\": {…}}"),
        },
        Ok(_) => return error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "the body must be a JSON object"),
        Err(_) => return error_response(StatusCode::BAD_REQUEST, "INVALID_JSON", "the body is not valid JSON"),
    };
    match state.db.set_preferences(&user, &preferences).await {
        Ok(settings) => {
            state.deps.loaders.invalidate(&user);
            preferences_body(&user, settings)
        }
        Err(error) => storage_down(&error),
    }
}
