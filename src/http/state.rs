//! `AppState`: what every HTTP handler shares (settings, the supervisor, storage, the cluster
//! view, the edge's parsed policies). A leaf of `http/`: handlers and the cluster's admin routes
//! import it; it imports no route.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use pam_actors::{ConnectionDeps, SupervisorMsg};
use ractor::ActorRef;

use crate::auth::dev::DevAuth;
use crate::http::client_ip;
use crate::settings::Settings;
use crate::storage::database::Database;

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
    pub redis: Option<Arc<crate::context::redis_cache::RedisCache>>,
    /// `Idempotency-Key`s of REST chats (across nodes with Redis).
    pub idempotency: crate::cluster::idempotency::RestIdempotency,
    /// This node's id (`PAM_NODE_ID`) and, with Redis, its handle on the shared cluster state.
    pub cluster: crate::cluster::wiring::ClusterView,
    /// Issues and checks CSRF tokens for the settings routes.
    pub csrf: crate::auth::csrf::CsrfKeys,
    /// Reads the gateway-wide abandoned-turn count into `/metrics` (at most every few seconds).
    pub abandoned: crate::storage::abandoned_turns::AbandonedExport,
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
