//! Health (`/api/v1/pam/health` and aliases, `/health/live`, `/health/ready`) and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pam_actors::{SupervisorMsg, SupervisorStats};
use serde_json::json;

use crate::http::state::SharedState;

/// How long health waits for the database before calling it down.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The PAM health document of protocol.md: `degraded` (naming the problem) while the database
/// does not answer, while the cluster's shared state on Redis is degraded (per-user cap, rate
/// limit, idempotency keys and pushes node-local), while conversation writes have been failing for 5 s or more (they wait in
/// the outbox and its journal meanwhile), or while draining. Always 200: the gateway still
/// answers chats through all of these.
pub async fn pam_health(State(state): State<SharedState>) -> Response {
    let database = probe_database(&state).await;
    let connections = stats(&state).await.live;
    let outbox = &state.deps.outbox;
    let writes_failing = outbox.degraded_for();
    let cache_status = state.redis.as_ref().map_or("in_process", |r| r.status());
    let mut problems = Vec::new();
    if let Err(error) = &database {
        problems.push(format!("database unreachable: {error}"));
    }
    if let Some(failing) = writes_failing {
        problems.push(format!("conversation writes failing for {} s; {} waiting in the outbox", failing.as_secs(), outbox.len()));
    }
    if state.cluster.redis.as_ref().is_some_and(|shared| shared.degraded()) {
        problems.push(
            "redis shared state degraded: per-user cap, rate limit, idempotency keys and pushes are this node's own until Redis answers"
                .into(),
        );
    }
    if matches!(cache_status, "open" | "unreachable") {
        problems.push(format!("redis cache {cache_status}: context comes from the database"));
    }
    if state.is_draining() {
        problems.push("draining for shutdown".into());
    }
    let status = if problems.is_empty() { "healthy" } else { "degraded" };
    let mut cache = json!({"status": cache_status, "hit_rate": cache_hit_rate(&state)});
    if let Some(error) = state.redis.as_ref().and_then(|r| r.startup_error()) {
        cache["error"] = json!(format!("unreachable since startup: {error}"));
    }
    let body = json!({
        "status": status,
        "problems": problems,
        "timestamp": pam_actors::iso_now(),
        "service": "PAM",
        "version": env!("CARGO_PKG_VERSION"),
        "node": &*state.deps.node,
        "llm": crate::models::health_block(state.deps.llm.name(), &state.settings),
        "database": match &database {
            Ok(latency) => json!({"status": "healthy", "backend": state.db.backend(), "latency_ms": latency.as_secs_f64() * 1000.0}),
            Err(e) => json!({"status": "unhealthy", "backend": state.db.backend(), "latency_ms": null, "error": e}),
        },
        "storage": {
            "status": if writes_failing.is_some() { "degraded" } else { "healthy" },
            "writes_failing_ms": writes_failing.map(|f| f.as_millis() as u64),
            "pending_writes": outbox.len(),
            "spilled_to_journal": outbox.spilled(),
            "journal": outbox.journal_location(),
        },
        "cache": cache,
        "connections": connections,
        "turns_running": state.deps.running.len(),
        "draining": state.is_draining(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// Share of context lookups answered from a cache (L1 or Redis) since start; `null` before any.
fn cache_hit_rate(state: &SharedState) -> Option<f64> {
    let text = state.metrics.render();
    let sum = |result: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("pam_cache_requests_total{") && l.contains(&format!("result=\"{result}\"")))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let (hits, misses) = (sum("hit"), sum("miss"));
    (hits + misses > 0.0).then(|| (hits / (hits + misses) * 1000.0).round() / 1000.0)
}

/// 200 while the process runs.
pub async fn live() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

/// 503 only for this node's own state: draining, or at its connection cap
/// (`PAM_MAX_CONNECTIONS`). Never for a dependency every node shares: a database or Redis
/// outage would otherwise take every node out of the load balancer while they still answer.
pub async fn ready(State(state): State<SharedState>) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"}))).into_response();
    }
    let sockets = state.live_sockets.load(std::sync::atomic::Ordering::Acquire);
    if sockets >= state.settings.max_connections {
        let body = json!({"status": "full", "sockets": sockets, "max": state.settings.max_connections});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

/// Prometheus text exposition. The abandoned-turn count is read from the database first: it is
/// the one figure that must outlive the process that made it.
pub async fn metrics(State(state): State<SharedState>) -> Response {
    state.abandoned.refresh(&state.db).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn probe_database(state: &SharedState) -> Result<Duration, String> {
    match tokio::time::timeout(DB_PROBE_TIMEOUT, state.db.ping()).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", DB_PROBE_TIMEOUT.as_millis())),
    }
}

pub(crate) async fn stats(state: &SharedState) -> SupervisorStats {
    ractor::call!(state.supervisor, SupervisorMsg::Stats).unwrap_or_default()
}
