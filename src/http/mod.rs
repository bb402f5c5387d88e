//! HTTP surface: the router, shared state and the small handlers (health, metrics, dev).

pub mod dev;
pub mod health;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use pam_actors::{ConnectionDeps, SupervisorMsg};
use ractor::ActorRef;
use serde_json::json;

use crate::adapters::database::Database;
use crate::auth::dev::DevAuth;
use crate::config::Settings;

/// What every handler shares.
pub struct AppState {
    pub settings: Settings,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub deps: Arc<ConnectionDeps>,
    pub db: Database,
    pub dev: Option<Arc<DevAuth>>,
    pub metrics: PrometheusHandle,
    pub draining: AtomicBool,
    /// Upgraded sockets being served (the `PAM_MAX_CONNECTIONS` cap counts these).
    pub live_sockets: AtomicUsize,
    /// `PAM_ALLOWED_ORIGINS`, parsed; `None` = any origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Tasks that live as long as the app (the invalidation listener); aborted at shutdown.
    pub background: Vec<tokio::task::JoinHandle<()>>,
    /// The Redis context cache, when `REDIS_URL` is set.
    pub redis: Option<Arc<crate::adapters::redis_cache::RedisCache>>,
}

impl AppState {
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a.eq_ignore_ascii_case(origin.trim_end_matches('/'))))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

pub type SharedState = Arc<AppState>;

/// Every route of protocol.md that exists so far.
pub fn router(state: SharedState) -> Router {
    let mut router = Router::new()
        .route("/api/v1/pam/ws/{user_id}", get(ws::upgrade))
        .route("/api/v1/pam-simple/ws/{user_id}", get(ws::upgrade))
        .route("/pam/ws/{user_id}", get(ws::upgrade))
        .route("/api/v1/pam/health", get(health::pam_health))
        .route("/health", get(health::pam_health))
        .route("/api/health", get(health::pam_health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics));
    if state.dev.is_some() {
        router = router.route("/dev/token", post(dev::token)).route("/", get(dev::demo_page)).route("/favicon.ico", get(dev::favicon));
    }
    router.fallback(not_found).with_state(state)
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}

/// The JSON error body every HTTP route uses.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}
