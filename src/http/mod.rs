//! HTTP surface: the router, shared state and the small handlers (health, metrics, dev).

pub mod bearer;
pub mod client_ip;
pub mod cluster;
pub mod conformance;
pub mod cors;
pub mod dev;
pub mod health;
pub mod idempotency;
pub mod middleware;
pub mod monitoring;
pub mod protocol_docs;
pub mod push;
pub mod rest;
pub mod settings;
pub mod ws;
pub mod ws_failure;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
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
    /// `PAM_TRUSTED_PROXIES`, parsed: who may name the client address.
    pub trusted_proxies: client_ip::TrustedProxies,
    /// Tasks that live as long as the app (the invalidation listener); aborted at shutdown.
    pub background: Vec<tokio::task::JoinHandle<()>>,
    /// The outbox flusher; stopped by the drain, which then flushes once more itself.
    pub flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The Redis context cache, when `REDIS_URL` is set.
    pub redis: Option<Arc<crate::adapters::redis_cache::RedisCache>>,
    /// `Idempotency-Key`s of REST chats (across nodes with Redis).
    pub idempotency: idempotency::RestIdempotency,
    /// This node's id (`PAM_NODE_ID`) and, with Redis, its handle on the shared cluster state.
    pub cluster: crate::cluster::ClusterView,
    /// Issues and checks CSRF tokens for the settings routes.
    pub csrf: crate::auth::csrf::CsrfKeys,
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
        .route("/api/v2/pam/ws", get(ws::upgrade_v2))
        .route("/api/v1/pam/health", get(health::pam_health))
        .route("/health", get(health::pam_health))
        .route("/api/health", get(health::pam_health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/monitoring/errors", get(monitoring::errors))
        .route("/api/v1/monitoring/websockets", get(monitoring::websockets))
        .route("/api/v1/monitoring/slow-queries", get(monitoring::slow_queries_report))
        .route("/api/v1/monitoring/nodes", get(cluster::nodes))
        .route("/api/v1/pam/presence/{user_id}", get(cluster::presence))
        .route("/api/v1/pam/push", post(push::push))
        .route("/api/v1/pam/timers", post(push::create_timer).get(push::list_timers))
        .route("/api/v1/pam/timers/{timer_id}", axum::routing::delete(push::delete_timer))
        .route("/api/v1/pam/internal/dismiss-timer", post(push::dismiss_timer))
        .route("/asyncapi.json", get(protocol_docs::asyncapi))
        .route("/schema/{file}", get(protocol_docs::schema_file))
        .merge(browser_routes(&state));
    if state.dev.is_some() {
        router = router
            .route("/dev/token", post(dev::token))
            .route("/dev/config", get(dev::config))
            .route("/", get(dev::demo_page))
            .route("/demo.js", get(dev::demo_script))
            .route("/demo.css", get(dev::demo_styles))
            .route("/pam-client.js", get(dev::sdk_bundle))
            .route("/favicon.ico", get(dev::favicon));
    }
    if state.settings.conformance_echo {
        router = router.route("/conformance/echo", get(conformance::echo));
    }
    let policy = middleware::EdgePolicy { hsts: state.settings.tls_paths().is_some() };
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(policy, middleware::edge))
}

/// The routes browsers call across origins (CORS): REST chat, CSRF token, settings.
fn browser_routes(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route("/api/v1/pam/chat", post(rest::chat))
        .route("/api/v1/pam-simple/chat", post(rest::chat))
        .route("/api/v1/csrf-token", get(settings::csrf_token))
        .route(
            "/api/v1/users/{user_id}/settings",
            get(settings::read).post(settings::write).layer(DefaultBodyLimit::max(settings::MAX_SETTINGS_BYTES)),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_frame_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::cors))
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "this endpoint does not take that method")
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}

/// The JSON error body every HTTP route uses; inside a request it carries the request id.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = match middleware::current_request_id() {
        Some(request_id) => json!({"error": code, "message": message, "request_id": request_id}),
        None => json!({"error": code, "message": message}),
    };
    (status, Json(body)).into_response()
}
