//! The cluster view (admin, like the monitoring routes): `GET /api/v1/monitoring/nodes` lists the
//! live nodes and `GET /api/v1/pam/presence/{user_id}` says where a user's sockets are. With
//! Redis both read the shared registry; without it (or while Redis is unavailable, then marked
//! `"degraded": true`) they answer for this node alone.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pam_protocol::UserId;
use serde_json::json;

use crate::http::error::error_response;
use crate::http::monitoring::{iso, refuse_non_admin};
use crate::http::state::SharedState;

/// `GET /api/v1/monitoring/nodes`: `{"generated_at","node","source","degraded","nodes":[…]}`.
pub async fn nodes(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, &headers).await {
        return refusal;
    }
    let view = &state.cluster;
    let (source, degraded, nodes) = match &view.redis {
        None => ("local", false, vec![view.local_node()]),
        Some(redis) => match redis.nodes().await {
            Ok(nodes) => ("redis", false, nodes),
            Err(_) => ("local", true, vec![view.local_node()]),
        },
    };
    Json(json!({
        "generated_at": iso(chrono::Utc::now()),
        "node": &*view.node,
        "source": source,
        "degraded": degraded,
        "nodes": nodes,
    }))
    .into_response()
}

/// `GET /api/v1/pam/presence/{user_id}`: `{"user_id","online","sockets","nodes":[{"id","sockets"}]}`.
pub async fn presence(State(state): State<SharedState>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, &headers).await {
        return refusal;
    }
    let Ok(user) = UserId::parse(&user_id) else {
        return error_response(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "the user id in the path is not a uuid");
    };
    let view = &state.cluster;
    let local = || {
        let held = view.slots.held(&user);
        let nodes = if held > 0 { vec![(view.node.to_string(), held)] } else { Vec::new() };
        (held, nodes)
    };
    let (degraded, (sockets, nodes)) = match &view.redis {
        None => (false, local()),
        Some(redis) => match redis.presence(&user).await {
            Ok(found) => (false, (found.sockets, found.nodes)),
            Err(_) => (true, local()),
        },
    };
    let nodes: Vec<_> = nodes.into_iter().map(|(id, sockets)| json!({"id": id, "sockets": sockets})).collect();
    Json(json!({"user_id": user.to_string(), "online": sockets > 0, "sockets": sockets, "nodes": nodes, "degraded": degraded}))
        .into_response()
}
