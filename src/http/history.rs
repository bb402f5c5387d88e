//! Conversation history for clients, with the bearer's token like REST chat:
//!
//! - `GET /api/v1/pam/conversations?limit=` → 200 `{"conversations":[{"session_id","title",
//!   "message_count","last_activity","created_at","preview"}]}`, most recently active first.
//! - `GET /api/v1/pam/conversations/{session_id}/messages?before=&limit=` → 200
//!   `{"session_id","messages":[{"id","role","content","created_at","client_msg_id",
//!   "model"?,"source"?,"ui_actions"?}],"next_before"}`, newest first; `next_before` is the
//!   `before` of the next (older) page, `null` on the last one.
//!
//! `limit` is 1–100 (default 50), `before` a message id of that conversation: anything else is
//! 400 `VALIDATION_ERROR`. A session the bearer has no conversation in — another user's included,
//! indistinguishably — is 404 `NOT_FOUND`; the database not answering is 503.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pam_actors::StoreError;
use pam_protocol::SessionId;
use serde_json::json;
use uuid::Uuid;

use crate::http::bearer;
use crate::http::error::error_response;
use crate::http::state::SharedState;
use crate::storage::conversation_history::{CONVERSATIONS_DEFAULT_LIMIT, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, HistoryRead};

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `GET /api/v1/pam/conversations`.
pub async fn conversations(State(state): State<SharedState>, headers: HeaderMap, params: Params) -> Response {
    let (user, _) = match bearer::user(&state, &headers).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let params = match params {
        Ok(Query(params)) => params,
        Err(_) => return bad_request("the query string could not be read"),
    };
    let limit = match limit(&params, CONVERSATIONS_DEFAULT_LIMIT) {
        Ok(limit) => limit,
        Err(why) => return bad_request(&why),
    };
    match state.db.conversations(&user, limit).await {
        Ok(conversations) => Json(json!({ "conversations": conversations })).into_response(),
        Err(error) => unavailable(&error),
    }
}

/// `GET /api/v1/pam/conversations/{session_id}/messages`.
pub async fn messages(
    State(state): State<SharedState>,
    headers: HeaderMap,
    session: Result<Path<String>, PathRejection>,
    params: Params,
) -> Response {
    let (user, _) = match bearer::user(&state, &headers).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let Ok(session) = session.map_err(drop).and_then(|Path(raw)| SessionId::parse(&raw).map_err(drop)) else {
        return bad_request("session_id must be 1-100 letters, digits, '-' or '_'");
    };
    let params = match params {
        Ok(Query(params)) => params,
        Err(_) => return bad_request("the query string could not be read"),
    };
    let limit = match limit(&params, HISTORY_DEFAULT_LIMIT) {
        Ok(limit) => limit,
        Err(why) => return bad_request(&why),
    };
    let before = match params.get("before").map(|b| b.trim()).filter(|b| !b.is_empty()) {
        None => None,
        Some(raw) => match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => return bad_request("before must be a message id (a uuid)"),
        },
    };
    match state.db.history_page(&user, &session, before, limit).await {
        Ok(HistoryRead::Page(page)) => {
            Json(json!({ "session_id": session.as_str(), "messages": page.messages, "next_before": page.next_before })).into_response()
        }
        Ok(HistoryRead::NoSuchConversation) => error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such conversation"),
        Ok(HistoryRead::UnknownBefore) => bad_request("before names no message of this conversation"),
        Err(error) => unavailable(&error),
    }
}

/// `limit`: absent or empty → `default`; otherwise an integer 1..=100 (else why not).
fn limit(params: &HashMap<String, String>, default: usize) -> Result<usize, String> {
    match params.get("limit").map(|l| l.trim()).filter(|l| !l.is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!("limit must be a whole number from 1 to {HISTORY_MAX_LIMIT}")),
        },
    }
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

fn unavailable(error: &StoreError) -> Response {
    tracing::warn!(%error, "reading conversation history failed");
    error_response(StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE", "storage is unavailable; retry shortly")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: &str) -> HashMap<String, String> {
        HashMap::from([("limit".to_string(), limit.to_string())])
    }

    #[test]
    fn limits_default_when_absent_and_are_bounded() {
        assert_eq!(limit(&HashMap::new(), 50).ok(), Some(50));
        assert_eq!(limit(&params(""), 50).ok(), Some(50));
        assert_eq!(limit(&params("1"), 50).ok(), Some(1));
        assert_eq!(limit(&params("100"), 50).ok(), Some(100));
        for bad in ["0", "101", "-1", "ten", "1.5", "99999999999999999999999"] {
            assert!(limit(&params(bad), 50).unwrap_err().contains("from 1 to 100"), "{bad}");
        }
    }
}
