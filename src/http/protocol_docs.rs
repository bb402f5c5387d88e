//! The machine-readable protocol: `GET /asyncapi.json` (AsyncAPI 3.0) and
//! `GET /schema/{name}.json` (JSON Schema draft-07 per message group), generated from the
//! pam-protocol types once per process — the same bytes `pam-schema --write docs/` commits.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pam_protocol::schema;

use crate::http::error::error_response;

/// Every document as (route name, JSON text): `asyncapi` and the schema names.
fn documents() -> &'static [(String, String)] {
    static DOCUMENTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut documents = vec![("asyncapi".to_string(), schema::to_text(&schema::asyncapi()))];
        for name in schema::SCHEMA_NAMES {
            if let Some(value) = schema::schema(name) {
                documents.push((name.to_string(), schema::to_text(&value)));
            }
        }
        documents
    })
}

fn document(name: &str) -> Option<&'static str> {
    documents().iter().find(|(known, _)| known == name).map(|(_, text)| text.as_str())
}

fn json_document(text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], text).into_response()
}

/// `GET /asyncapi.json`.
pub async fn asyncapi() -> Response {
    match document("asyncapi") {
        Some(text) => json_document(text),
        None => error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the AsyncAPI document could not be built"),
    }
}

/// `GET /schema/{name}.json`; 404 `NOT_FOUND` naming the known schemas otherwise.
pub async fn schema_file(Path(file): Path<String>) -> Response {
    let found = file.strip_suffix(".json").filter(|name| *name != "asyncapi").and_then(document);
    match found {
        Some(text) => json_document(text),
        None => error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no such schema; known: {}", schema::SCHEMA_NAMES.map(|name| format!("{name}.json")).join(", ")),
        ),
    }
}
