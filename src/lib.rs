//! pam-gateway: the realtime WebSocket backend of PAM. `Application` wires settings, auth,
//! storage, models and the actor system behind an axum router.

pub mod adapters;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod context;
pub mod http;
pub mod monitor;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use app::{Application, Overrides, shutdown_signal};
pub use config::Settings;
