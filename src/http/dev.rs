//! Development routes (dev auth only): `POST /dev/token`, `GET /dev/config` (the limits the demo
//! page enforces before sending) and the demo chat page at `/` on the pam-client SDK (served at
//! `/pam-client.js`; the page's script and styles are files of their own, so its CSP allows
//! nothing inline).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pam_protocol::UserId;
use serde::Deserialize;

use crate::auth::dev::{DEMO_USER_ID, DEV_TOKEN_TTL_RANGE, DEV_TOKEN_TTL_SECS};
use crate::http::error::error_response;
use crate::http::state::SharedState;

const DEMO_PAGE: &str = include_str!("../../web/index.html");
const DEMO_SCRIPT: &str = include_str!("../../web/demo.js");
const DEMO_STYLES: &str = include_str!("../../web/demo.css");
/// The pam-client SDK's one-file ESM bundle (built by web/client's `npm run build`, committed).
const SDK_BUNDLE: &str = include_str!("../../web/client/dist/pam-client.min.js");
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                        base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    user_id: Option<String>,
    /// Lifetime in seconds, within `DEV_TOKEN_TTL_RANGE` (default `DEV_TOKEN_TTL_SECS`).
    ttl_s: Option<u64>,
}

/// Mints a token for `user_id` (or the demo traveller), valid `ttl_s` seconds (10–86400, default
/// 3600). Body may be empty. 200 `{"token","user_id","expires_at"}`; 400 bad JSON, 422 a bad
/// user id or lifetime.
pub async fn token(State(state): State<SharedState>, body: axum::body::Bytes) -> Response {
    let Some(dev) = state.dev.as_ref() else {
        return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "dev auth is off");
    };
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "INVALID_JSON",
                    &format!("body must be JSON like {{\"user_id\":\"<uuid>\"}}: {e}"),
                );
            }
        }
    };
    let user = match UserId::parse(request.user_id.as_deref().unwrap_or(DEMO_USER_ID)) {
        Ok(user) => user,
        Err(e) => return error_response(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", &e.to_string()),
    };
    let ttl = request.ttl_s.unwrap_or(DEV_TOKEN_TTL_SECS);
    if !DEV_TOKEN_TTL_RANGE.contains(&ttl) {
        let message = format!("ttl_s must be {}..={} seconds", DEV_TOKEN_TTL_RANGE.start(), DEV_TOKEN_TTL_RANGE.end());
        return error_response(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", &message);
    }
    match dev.mint(&user, ttl) {
        Ok(token) => Json(token).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not mint a dev token");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "could not mint a token")
        }
    }
}

/// `GET /dev/config`: what a client checks before sending — `{"max_message_chars":n}`
/// (`PAM_MAX_MESSAGE_CHARS`, counted in Unicode scalar values like the server does).
pub async fn config(State(state): State<SharedState>) -> Response {
    Json(serde_json::json!({ "max_message_chars": state.settings.max_message_chars })).into_response()
}

/// The demo chat page.
pub async fn demo_page() -> Response {
    demo_file("text/html; charset=utf-8", DEMO_PAGE)
}

/// `/demo.js`.
pub async fn demo_script() -> Response {
    demo_file("text/javascript; charset=utf-8", DEMO_SCRIPT)
}

/// `/pam-client.js`: the SDK bundle the page imports.
pub async fn sdk_bundle() -> Response {
    demo_file("text/javascript; charset=utf-8", SDK_BUNDLE)
}

/// `/demo.css`.
pub async fn demo_styles() -> Response {
    demo_file("text/css; charset=utf-8", DEMO_STYLES)
}

/// The page's parts are built into the binary and change together: no caching across restarts.
fn demo_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, DEMO_CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// No icon: answer 204 so browsers stop asking (and log no 404).
pub async fn favicon() -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}
