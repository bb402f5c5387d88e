//! The database behind `DATABASE_URL`: Postgres (production, Supabase's schema) or SQLite (the
//! embedded default). Connects, runs migrations unless `PAM_MIGRATE=false`, and answers health.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool for whichever backend the URL names.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Database {
    /// Connects and migrates. A URL with a password is never logged.
    pub async fn connect(url: &str, migrate: bool) -> anyhow::Result<Self> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect(url)
                .await
                .context("could not connect to Postgres (DATABASE_URL)")?;
            Database::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("DATABASE_URL is not a valid sqlite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // SQLite's recommendation for WAL: a commit survives a crash of the process (not
                // of the machine, until the next checkpoint) without an fsync per transaction.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(CONNECT_TIMEOUT);
            let pool =
                SqlitePoolOptions::new().max_connections(4).connect_with(options).await.context("could not open the SQLite database")?;
            Database::Sqlite(pool)
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:");
        };
        if migrate {
            db.migrate().await?;
        }
        super::schema_doctor::check(&db).await?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Database::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await.context("Postgres migrations failed")?,
            Database::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await.context("SQLite migrations failed")?,
        }
        Ok(())
    }

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
            Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
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
