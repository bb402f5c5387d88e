//! Development routes (dev auth only): `POST /dev/token` and the demo chat page at `/` (its
//! script and styles are files of their own, so its CSP allows nothing inline).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pam_protocol::UserId;
use serde::Deserialize;

use super::{SharedState, error_response};
use crate::auth::dev::DEMO_USER_ID;

const DEMO_PAGE: &str = include_str!("../../web/index.html");
const DEMO_SCRIPT: &str = include_str!("../../web/demo.js");
const DEMO_STYLES: &str = include_str!("../../web/demo.css");
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                        base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    user_id: Option<String>,
}

/// Mints a token for `user_id` (or the demo traveller). Body may be empty.
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
    match dev.mint(&user) {
        Ok(token) => Json(token).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not mint a dev token");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "could not mint a token")
        }
    }
}

/// The demo chat page.
pub async fn demo_page() -> Response {
    demo_file("text/html; charset=utf-8", DEMO_PAGE)
}

/// `/demo.js`.
pub async fn demo_script() -> Response {
    demo_file("text/javascript; charset=utf-8", DEMO_SCRIPT)
}

/// `/demo.css`.
pub async fn demo_styles() -> Response {
    demo_file("text/css; charset=utf-8", DEMO_STYLES)
}

/// The three parts are built into the binary and change together: no caching across restarts.
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
