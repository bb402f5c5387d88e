//! What the `pam-loadtest` scenarios share, and what the in-process benchmarks (`pam-bench`,
//! benches/) reuse from them: tokens, v2/legacy sockets, reconnect backoff, progress lines,
//! k6-shaped summaries, the server under test and the stamp clock. Socket-only: nothing here links
//! the gateway.

pub mod auth;
pub mod client;
pub mod clock;
pub mod progress;
pub mod reconnect;
pub mod summary;
pub mod target;
