//! The HTTP edge: the accept loop and TLS, the router, the WebSocket upgrade, REST chat and
//! conversation history, push and timer routes, health, monitoring, the edge middleware. Route
//! files import `state` and `error` (leaves) and the domain folders; no domain folder imports a
//! route.

pub mod bearer;
pub mod client_ip;
pub mod conformance;
pub mod cors;
pub mod dev;
pub mod error;
pub mod health;
pub mod history;
pub mod middleware;
pub mod monitoring;
pub mod preferences;
pub mod protocol_docs;
pub mod push;
pub mod request_id;
pub mod rest;
pub mod server;
pub mod state;
pub mod tls;
pub mod ws;
pub mod ws_failure;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

pub use error::error_response;
pub use state::{AppState, SharedState};

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
        .route("/api/v1/monitoring/nodes", get(crate::cluster::admin::nodes))
        .route("/api/v1/pam/presence/{user_id}", get(crate::cluster::admin::presence))
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

/// The routes browsers call across origins (CORS): REST chat, conversation history, CSRF token,
/// settings.
fn browser_routes(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route("/api/v1/pam/chat", post(rest::chat))
        .route("/api/v1/pam-simple/chat", post(rest::chat))
        .route("/api/v1/pam/conversations", get(history::conversations))
        .route("/api/v1/pam/conversations/{session_id}/messages", get(history::messages))
        .route("/api/v1/csrf-token", get(preferences::csrf_token))
        .route(
            "/api/v1/users/{user_id}/settings",
            get(preferences::read).post(preferences::write).layer(DefaultBodyLimit::max(preferences::MAX_PREFERENCES_BYTES)),
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
