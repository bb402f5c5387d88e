//! What operators see: logging and the Prometheus recorder (`telemetry.rs`, which also describes
//! every metric the domains record), and the in-process records behind the monitoring endpoints —
//! the slow-query ring (fed by every timed database query), the recent-errors log (fed by a
//! tracing layer) and the latest pushes (fed by every publish). The WebSocket recorder lives in
//! `pam_actors::ws_monitor`. All are bounded and read without touching the database or Redis. A
//! leaf for the domains: it imports none of them except metric names in `telemetry.rs`.

pub mod errors;
pub mod pushes;
pub mod slow_queries;
pub mod telemetry;
pub mod traces;

/// Histogram of query time, labelled `query`.
pub const DB_QUERY_SECONDS: &str = "pam_db_query_seconds";

use std::future::Future;

use pam_actors::StoreError;
use tokio::time::Instant;

pub use errors::{ErrorLayer, error_log};
pub use pushes::recent_pushes;
pub use slow_queries::slow_queries;

/// Records one query's time in `pam_db_query_seconds{query}` and in the slow-query ring when
/// dropped: `let _timer = QueryTimer::start("history");` times the rest of the scope.
pub struct QueryTimer {
    name: &'static str,
    started: Instant,
}

impl QueryTimer {
    pub fn start(name: &'static str) -> Self {
        Self { name, started: Instant::now() }
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        metrics::histogram!(DB_QUERY_SECONDS, "query" => self.name).record(elapsed.as_secs_f64());
        slow_queries().record(self.name, elapsed);
    }
}

/// Runs one query under a [`QueryTimer`] and maps its error.
pub async fn timed_query<T>(name: &'static str, query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
    let _timer = QueryTimer::start(name);
    query.await.map_err(|e| StoreError::Unavailable(format!("{name} query failed: {e}")))
}
