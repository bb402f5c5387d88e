//! The JSON error body every HTTP route answers with (`{"error", "message", "request_id"}`).
//! It reads only the request id the edge middleware set (`request_id.rs`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::request_id::current_request_id;

/// The JSON error body every HTTP route uses; inside a request it carries the request id.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = match current_request_id() {
        Some(request_id) => json!({"error": code, "message": message, "request_id": request_id}),
        None => json!({"error": code, "message": message}),
    };
    (status, Json(body)).into_response()
}
