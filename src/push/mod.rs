//! Pushes: server-initiated frames to a user, stored durably first (`notifications.rs`), and what
//! raises them — timers and alarms (`timers/`) and budget alerts (`budget_alerts/`). Publishing
//! across nodes is the cluster's bus (`crate::cluster`); the HTTP routes live in `crate::http::push`.
//! Imports storage, settings and the cluster's bus; never a route.

pub mod budget_alerts;
pub mod notifications;
pub mod timers;
