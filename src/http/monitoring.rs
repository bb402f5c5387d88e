//! Admin monitoring: `GET /api/v1/monitoring/errors`, `/websockets` (with this node's latest
//! pushes per kind), `/slow-queries`. Bearer
//! `PAM_ADMIN_TOKEN` (compared in constant time) or an admin/service-role JWT; 401 otherwise.
//! Every answer comes from bounded in-process records, never from Postgres or Redis, so the
//! endpoints answer while either is down.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::http::bearer;
use crate::http::error::error_response;
use crate::http::state::SharedState;
use crate::observability::{error_log, recent_pushes, slow_queries};

pub(crate) fn iso(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Equal-length digests compared without an early exit, so timing says nothing about the token.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` when the caller is an admin; else the 401.
/// Used by the monitoring, cluster and push routes.
pub(crate) async fn refuse_non_admin(state: &SharedState, headers: &HeaderMap) -> Option<Response> {
    let unauthorized =
        || error_response(StatusCode::UNAUTHORIZED, "AUTH_INVALID", "this route needs PAM_ADMIN_TOKEN or an admin or service-role token");
    let Some(token) = bearer::bearer_token(headers) else {
        return Some(unauthorized());
    };
    if let Some(admin) = state.settings.admin_token.as_deref().filter(|t| !t.is_empty()) {
        if same_secret(token, admin) {
            return None;
        }
    }
    match state.deps.authenticator.authenticate(token).await {
        Ok(identity) if identity.privileged => None,
        _ => Some(unauthorized()),
    }
}

/// `GET /api/v1/monitoring/errors`: WARN/ERROR events by kind, and the latest occurrences.
pub async fn errors(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, &headers).await {
        return refusal;
    }
    let log = error_log();
    let kinds: Vec<Value> = log
        .kinds()
        .into_iter()
        .map(|k| {
            json!({"level": k.level, "target": k.target, "message": k.message, "count": k.count,
                   "first_seen": iso(k.first_seen), "last_seen": iso(k.last_seen)})
        })
        .collect();
    let recent: Vec<Value> =
        log.recent().into_iter().map(|o| json!({"level": o.level, "target": o.target, "message": o.message, "at": iso(o.at)})).collect();
    Json(json!({"generated_at": iso(chrono::Utc::now()), "kinds": kinds, "recent": recent})).into_response()
}

/// `GET /api/v1/monitoring/websockets`: connections by state, last five minutes' opens/closes.
pub async fn websockets(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, &headers).await {
        return refusal;
    }
    let snapshot = pam_actors::ws_monitor().snapshot(Instant::now());
    let closes: serde_json::Map<String, Value> = snapshot.closes_by_code.iter().map(|(code, n)| (code.to_string(), json!(n))).collect();
    Json(json!({
        "generated_at": iso(chrono::Utc::now()),
        "window_seconds": pam_actors::WsMonitor::WINDOW.as_secs(),
        "connections": {
            "by_state": snapshot.by_state,
            "sockets": state.live_sockets.load(std::sync::atomic::Ordering::Acquire),
            "max": state.settings.max_connections,
            "max_per_user": state.settings.max_connections_per_user,
        },
        "last_5_minutes": {
            "opened": snapshot.opened,
            "closed": snapshot.closed,
            "closes_by_code": closes,
            "user_cap_hits": snapshot.user_cap_hits,
        },
        "draining": state.is_draining(),
        "pushes": latest_pushes(),
    }))
    .into_response()
}

/// `{"latest":{"timer_expired":[…],"proactive_alert":[…]}}`: the newest pushes this node
/// published, newest first (at most `PUSHES_PER_KIND` per kind).
fn latest_pushes() -> Value {
    use pam_actors::NotificationKind;
    let latest = |kind: NotificationKind| -> Vec<Value> {
        recent_pushes()
            .latest(kind)
            .into_iter()
            .map(|p| json!({"id": p.id, "user_id": p.user, "outcome": p.outcome, "summary": p.summary, "at": iso(p.at)}))
            .collect()
    };
    json!({"latest": {
        "timer_expired": latest(NotificationKind::TimerExpired),
        "proactive_alert": latest(NotificationKind::ProactiveAlert),
    }})
}

/// `GET /api/v1/monitoring/slow-queries`: the latest queries over the threshold.
pub async fn slow_queries_report(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, &headers).await {
        return refusal;
    }
    let ring = slow_queries();
    let queries: Vec<Value> = ring
        .recent()
        .into_iter()
        .map(|q| json!({"name": q.name, "duration_ms": q.duration.as_secs_f64() * 1000.0, "at": iso(q.at)}))
        .collect();
    Json(json!({
        "generated_at": iso(chrono::Utc::now()),
        "threshold_ms": ring.threshold().as_secs_f64() * 1000.0,
        "total": ring.total(),
        "queries": queries,
    }))
    .into_response()
}
