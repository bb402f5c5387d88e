//! Health (`/api/v1/pam/health` and aliases, `/health/live`, `/health/ready`) and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pam_actors::{SupervisorMsg, SupervisorStats};
use serde_json::json;

use super::SharedState;

/// How long health waits for the database before calling it down.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The PAM health document of protocol.md.
pub async fn pam_health(State(state): State<SharedState>) -> Response {
    let database = probe_database(&state).await;
    let connections = stats(&state).await.live;
    let db_ok = database.is_ok();
    let cache_status = state.redis.as_ref().map_or("in_process", |r| r.status());
    let status = if !db_ok {
        "unhealthy"
    } else if state.is_draining() || matches!(cache_status, "open" | "unreachable") {
        "degraded"
    } else {
        "healthy"
    };
    let mut cache = json!({"status": cache_status, "hit_rate": cache_hit_rate(&state)});
    if let Some(error) = state.redis.as_ref().and_then(|r| r.startup_error()) {
        cache["error"] = json!(format!("unreachable since startup: {error}"));
    }
    let body = json!({
        "status": status,
        "timestamp": pam_actors::connection::iso_now(),
        "service": "PAM",
        "version": env!("CARGO_PKG_VERSION"),
        "llm": crate::adapters::llm::health_block(state.deps.llm.name(), &state.settings),
        "database": match &database {
            Ok(latency) => json!({"status": "healthy", "backend": state.db.backend(), "latency_ms": latency.as_secs_f64() * 1000.0}),
            Err(e) => json!({"status": "unhealthy", "backend": state.db.backend(), "latency_ms": null, "error": e}),
        },
        "cache": cache,
        "connections": connections,
        "draining": state.is_draining(),
    });
    let code = if db_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
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

/// 503 while draining or when the database is unreachable.
pub async fn ready(State(state): State<SharedState>) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"}))).into_response();
    }
    match probe_database(&state).await {
        Ok(_) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unready", "database": e}))).into_response(),
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<SharedState>) -> Response {
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
