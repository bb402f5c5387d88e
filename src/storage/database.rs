//! The database behind `DATABASE_URL`: Postgres (production, Supabase's schema) or SQLite (the
//! embedded default): the pool, its backend name, health and close. Opening it (connect, migrate,
//! check the schema) is `open.rs`.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::time::Instant;

use crate::storage::postgres_pool::PostgresPool;

/// How long opening a connection may take (and SQLite's busy timeout).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool for whichever backend the URL names.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PostgresPool),
    Sqlite(SqlitePool),
}

impl Database {
    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Round-trip time of `SELECT 1`, or why it failed.
    pub async fn ping(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let result = match self {
            Database::Postgres(pool) => sqlx::query("SELECT 1").persistent(false).execute(pool).await.map(|_| ()),
            Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
        };
        result.map(|()| started.elapsed()).map_err(|e| e.to_string())
    }

    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }
}
