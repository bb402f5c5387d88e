//! CORS for the browser-facing REST routes (chat, conversation history, CSRF token, settings):
//! preflights are answered for origins in `PAM_ALLOWED_ORIGINS` (any origin when unset) and
//! responses to allowed origins carry `Access-Control-Allow-Origin`. Requests without `Origin`
//! pass untouched.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::error_response;
use crate::http::state::SharedState;

/// Request headers a browser may send on these routes.
pub const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, x-csrf-token";
const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
/// Response headers scripts may read.
const EXPOSED_HEADERS: &str = "retry-after";
/// How long a browser may cache a preflight.
const PREFLIGHT_MAX_AGE_S: &str = "600";

/// Middleware: answers preflights and decorates responses for allowed origins.
pub async fn cors(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let allowed = state.origin_allowed(&origin);
    let preflight = request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return error_response(StatusCode::FORBIDDEN, "ORIGIN_NOT_ALLOWED", "this origin may not call PAM");
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        allow(&state, response.headers_mut(), &origin);
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE_S));
        return response;
    }
    let mut response = next.run(request).await;
    if allowed {
        allow(&state, response.headers_mut(), &origin);
        response.headers_mut().insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    response
}

fn allow(state: &SharedState, headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        // Credentialed requests only from a configured allow-list, never from "any origin".
        if state.allowed_origins.is_some() {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}
