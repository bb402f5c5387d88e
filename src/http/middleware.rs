//! The edge middleware on every HTTP response: security headers (HSTS only with TLS on) and a
//! request id — the client's `X-Request-Id` when it is sane, a fresh one otherwise — echoed in
//! the response, recorded on the request's tracing span and put in JSON error bodies through a
//! task-local that `error_response` reads. Plain-text rejections from axum's extractors (a GET
//! without the upgrade headers on a socket route, a malformed path) become the same JSON error
//! body as every other error.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::http::request_id::with_request_id;
pub use crate::http::request_id::{REQUEST_ID, current_request_id, in_request_scope};

/// Longest client-supplied request id that is kept.
const MAX_REQUEST_ID_LEN: usize = 128;
/// For JSON and other non-page responses: nothing may load, nobody may frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const HSTS: &str = "max-age=31536000; includeSubDomains";
/// Longest rejection text carried into the JSON body.
const MAX_REJECTION_TEXT: usize = 4 * 1024;

/// What the middleware needs to know about the deployment.
#[derive(Debug, Clone, Copy)]
pub struct EdgePolicy {
    /// TLS is terminated here: send `Strict-Transport-Security`.
    pub hsts: bool,
}

/// `axum::middleware::from_fn_with_state(policy, edge)`.
pub async fn edge(State(policy): State<EdgePolicy>, mut request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    // The path only: query strings may carry tokens.
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let handled = async { json_rejection(next.run(request).await).await };
    let mut response = with_request_id(id.clone(), handled).instrument(span).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    add_security_headers(headers, policy);
    response
}

/// A sane incoming id (1–128 of `A-Z a-z 0-9 - _ . :`), else a new uuid.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// An error response with a plain-text body (axum's rejections) rewritten as the JSON error
/// body, keeping status and headers (`Allow`, `Retry-After`, …); everything else untouched.
async fn json_rejection(response: Response) -> Response {
    let status = response.status();
    let plain = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text =
        axum::body::to_bytes(body, MAX_REJECTION_TEXT).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("request failed").to_lowercase() } else { text };
    let json = crate::http::error::error_response(status, rejection_code(status), &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json.headers().clone());
    Response::from_parts(parts, json.into_body())
}

/// The `error` code for a rejection, by status (the REST handlers' own names where they exist).
fn rejection_code(status: axum::http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        405 => "METHOD_NOT_ALLOWED",
        413 => "MESSAGE_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "VALIDATION_ERROR",
        426 => "UPGRADE_REQUIRED",
        s if s >= 500 => "INTERNAL_ERROR",
        _ => "REQUEST_REJECTED",
    }
}

fn is_sane_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Handlers may set their own (the demo page sets its CSP); these fill in what is missing.
fn add_security_headers(headers: &mut HeaderMap, policy: EdgePolicy) {
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, API_CSP),
    ];
    for (name, value) in defaults {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if policy.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(is_sane_request_id("abc-123_x.y:z"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id(&"a".repeat(129)));
        assert!(!is_sane_request_id("a b"));
        assert!(!is_sane_request_id("<script>"));
    }

    #[tokio::test]
    async fn the_request_id_is_visible_inside_the_scope_only() {
        assert_eq!(current_request_id(), None);
        let seen = with_request_id("r-1".into(), async { current_request_id() }).await;
        assert_eq!(seen.as_deref(), Some("r-1"));
    }
}
