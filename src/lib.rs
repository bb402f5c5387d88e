//! pam-gateway: the realtime WebSocket backend of PAM. `Application` wires settings, auth,
//! storage, models and the actor system behind an axum router. One folder per thing a reader
//! looks for: `http/` (the edge), `auth/`, `settings/`, `storage/`, `context/`, `models/`,
//! `push/` (timers, budget alerts), `cluster/` (Redis), `redis_target.rs` (reaching Redis, TLS),
//! `observability/`.

pub mod app;
pub mod auth;
pub mod breaker;
pub mod cluster;
pub mod context;
pub mod http;
pub mod models;
pub mod observability;
pub mod push;
pub mod redis_target;
pub mod settings;
pub mod storage;

pub use app::{Application, Overrides, shutdown_signal};
pub use settings::Settings;
