//! Opening the database behind `DATABASE_URL`: connect (Postgres or SQLite), run the migrations
//! unless `PAM_MIGRATE=false`, then let the schema doctor check what the gateway needs. Apart from
//! `database.rs` so the doctor, which reads a `Database`, is not imported by the file it reads.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::storage::database::{CONNECT_TIMEOUT, Database};

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
        crate::storage::schema_doctor::check(&db).await?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Database::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await.context("Postgres migrations failed")?,
            Database::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await.context("SQLite migrations failed")?,
        }
        Ok(())
    }
}
