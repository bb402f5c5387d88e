//! `Authorization: Bearer` for the REST routes: verifies the token with the same
//! `Authenticator` the sockets use and maps refusals to 401/503 JSON errors.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use pam_actors::metrics_names::AUTH_FAILURES_TOTAL;
use pam_actors::{AuthError, Identity};
use pam_protocol::UserId;

use crate::http::error::error_response;
use crate::http::state::AppState;

/// The raw bearer token, if the header has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The verified identity behind the request's bearer token, or the error response.
pub async fn identity(state: &AppState, headers: &HeaderMap) -> Result<Identity, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(refusal(AuthError::Missing));
    };
    state.deps.authenticator.authenticate(token).await.map_err(refusal)
}

/// The user a bearer token speaks for (its `sub`); service keys without one are refused.
pub async fn user(state: &AppState, headers: &HeaderMap) -> Result<(UserId, Identity), Response> {
    let identity = identity(state, headers).await?;
    match identity.subject.clone() {
        Some(user) => Ok((user, identity)),
        None => Err(error_response(StatusCode::FORBIDDEN, "FORBIDDEN", "this token names no user")),
    }
}

fn refusal(error: AuthError) -> Response {
    metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => error.metric_reason()).increment(1);
    let (status, code, message) = match &error {
        AuthError::Missing => (StatusCode::UNAUTHORIZED, "AUTH_INVALID", "an Authorization: Bearer token is required".to_string()),
        AuthError::Expired => (StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED", "the token has expired; sign in again".to_string()),
        AuthError::Invalid(_) => (StatusCode::UNAUTHORIZED, "AUTH_INVALID", error.to_string()),
        AuthError::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN", error.to_string()),
        AuthError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "AUTH_UNAVAILABLE", "tokens cannot be verified right now; retry shortly".into())
        }
    };
    let mut response = error_response(status, code, &message);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}
