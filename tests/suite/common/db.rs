//! Test databases: the one test Postgres URL, a check that it answers (failing with how to start
//! it), private throw-away Postgres databases for tests whose data is not per user, SQLite files,
//! and what removes each when the test ends.
//!
//! Postgres is required (`PAM_TEST_DATABASE_URL`, default the trust-auth `test` database on
//! 127.0.0.1:5432, which `./scripts/test.sh` starts when it is installed but stopped).

use pam_gateway::storage::database::Database;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::TempFile;

/// What a test that finds no Postgres says.
pub const START_POSTGRES: &str = "Start it with ./scripts/test.sh (it starts an installed server; by hand: \
                                  `pg_ctlcluster 15 main start`) or point PAM_TEST_DATABASE_URL at a server with trust auth.";

/// The shared Postgres test database.
pub fn postgres_url() -> String {
    std::env::var("PAM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A pool on `url`, or a failure that says Postgres is down and how to start it.
pub async fn require_postgres(url: &str) -> sqlx::PgPool {
    let down =
        |error: sqlx::Error| -> ! { panic!("Postgres is required for this test and is not reachable at {url}: {error}\n{START_POSTGRES}") };
    // One plain connection first: a refused one fails at once, where a pool retries for 30 s.
    match <sqlx::PgConnection as sqlx::Connection>::connect(url).await {
        Ok(probe) => {
            let _ = sqlx::Connection::close(probe).await;
        }
        Err(error) => down(error),
    }
    sqlx::PgPool::connect(url).await.unwrap_or_else(|error| down(error))
}

/// Whatever must be removed when the test ends.
pub enum Cleanup {
    None,
    /// A SQLite file (with its -wal/-shm and other siblings).
    File(TempFile),
    /// A private Postgres database, dropped from the admin URL.
    PgDatabase {
        admin_url: String,
        name: String,
    },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Cleanup::PgDatabase { admin_url, name } = self else { return };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop may run inside the test's runtime (or while panicking): use a fresh one.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(AssertSqlSafe(drop)).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// The URL of a fresh, empty Postgres database of its own, dropped when the cleanup drops.
pub async fn private_postgres_url() -> (String, Cleanup) {
    let admin_url = postgres_url();
    let admin = require_postgres(&admin_url).await;
    let name = format!("pam_ctx_test_{}", Uuid::new_v4().simple());
    let mut attempt = 0;
    loop {
        // Concurrent CREATE DATABASEs from the same template can collide; retry briefly.
        match sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&admin).await {
            Ok(_) => break,
            Err(error) if attempt < 20 => {
                attempt += 1;
                eprintln!("CREATE DATABASE {name} failed ({error}); retrying");
                // Why a fixed pause: a back-off before retrying a collision, not a wait for a state.
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(error) => panic!("could not create a private test database (the test role needs CREATEDB): {error}"),
        }
    }
    admin.close().await;
    let url = with_database(&admin_url, &name);
    (url, Cleanup::PgDatabase { admin_url, name })
}

/// `url` naming database `name` instead (query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority..].find('/').map_or(base, |slash| &base[..authority + slash]);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Databases the test opens itself (store-level tests, no gateway)

/// A migrated database plus whatever must be removed when the test ends.
pub struct StoreDb {
    pub db: Database,
    _cleanup: Cleanup,
}

/// The shared Postgres test database (per-user data only).
pub async fn shared_postgres() -> StoreDb {
    let url = postgres_url();
    require_postgres(&url).await.close().await;
    let db = Database::connect(&url, true).await.expect("connect + migrate Postgres");
    StoreDb { db, _cleanup: Cleanup::None }
}

/// A fresh Postgres database of its own, migrated, dropped at the end of the test.
pub async fn private_postgres() -> StoreDb {
    let (url, cleanup) = private_postgres_url().await;
    let db = Database::connect(&url, true).await.expect("connect + migrate private Postgres");
    StoreDb { db, _cleanup: cleanup }
}

/// A fresh SQLite file, migrated, removed at the end of the test.
pub async fn sqlite() -> StoreDb {
    let path = std::env::temp_dir().join(format!("pam-context-store-{}.db", Uuid::new_v4().simple()));
    let db = Database::connect(&format!("sqlite://{}", path.display()), true).await.expect("open + migrate SQLite");
    StoreDb { db, _cleanup: Cleanup::File(TempFile(path)) }
}

// ---------------------------------------------------------------------------------------------
// Databases a gateway under test opens

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test's gateway(s): its URL and what removes it.
pub struct TestDb {
    pub url: String,
    _cleanup: Cleanup,
}

/// A fresh SQLite file, or a private Postgres database (schedulers claim due timers of every user
/// on their database, so tests of them never share one).
pub async fn test_db(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("pam-push-{}.db", Uuid::new_v4().simple()));
            TestDb { url: format!("sqlite://{}", path.display()), _cleanup: Cleanup::File(TempFile(path)) }
        }
        Backend::Postgres => {
            let (url, cleanup) = private_postgres_url().await;
            TestDb { url, _cleanup: cleanup }
        }
    }
}
