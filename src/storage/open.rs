//! Opening the database behind `DATABASE_URL`: connect (Postgres or SQLite), run the migrations
//! unless `PAM_MIGRATE=false` (on Postgres on `DATABASE_DIRECT_URL` when set: see `pooler.rs`),
//! then let the schema doctor check what the gateway needs. Apart from
//! `database.rs` so the doctor, which reads a `Database`, is not imported by the file it reads.
//!
//! A database that cannot be opened stops the start with one line (main.rs prints it) that names
//! `DATABASE_URL` with its password redacted, what is wrong and what to do. A SQLite file in a
//! directory that does not exist gets that directory created (like the file itself); only a
//! directory that cannot be created is refused, naming the path.

use std::error::Error as StdError;
use std::path::Path;
use std::str::FromStr;

use anyhow::anyhow;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::settings::secret::redact_url;
use crate::storage::database::{CONNECT_TIMEOUT, Database};
use crate::storage::pooler::{named_as_transaction_pooler, strip_pgbouncer_flag, transaction_pooled};
use crate::storage::postgres_pool::PostgresPool;

/// An opened database and, on Postgres, where what needs a session of its own connects
/// (`LISTEN`; the migrations have already run there).
pub struct Opened {
    pub db: Database,
    pub session: Option<PgConnectOptions>,
}

/// A Postgres URL's options with the setting that named it and the URL as it may be shown.
struct Named {
    options: PgConnectOptions,
    setting: &'static str,
    shown: String,
}

impl Database {
    /// Connects and migrates, everything on `url` (refused behind a transaction pooler, which
    /// needs [`Database::open`] with a direct URL). A URL with a password is never logged or shown.
    pub async fn connect(url: &str, migrate: bool) -> anyhow::Result<Self> {
        Ok(Self::open(url, None, migrate).await?.db)
    }

    /// Connects and migrates; on Postgres the migrations and `LISTEN` use `direct_url` when given
    /// (a blank one counts as unset), since behind a transaction pooler they need a session.
    pub async fn open(url: &str, direct_url: Option<&str>, migrate: bool) -> anyhow::Result<Opened> {
        let shown = redact_url(url);
        let (db, session) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let direct_url = direct_url.map(str::trim).filter(|d| !d.is_empty());
            let (pool, session) = open_postgres(url, direct_url).await?;
            (Database::Postgres(pool), Some(session))
        } else if url.starts_with("sqlite:") {
            (Database::Sqlite(open_sqlite(url, &shown).await?), None)
        } else {
            anyhow::bail!(
                "DATABASE_URL={shown}: not a database URL; it must start with postgres://, postgresql:// or sqlite: (unset, it is sqlite://pam-gateway.db)"
            );
        };
        if migrate {
            let (setting, on) = session.as_ref().map_or(("DATABASE_URL", shown.clone()), |s| (s.setting, s.shown.clone()));
            db.migrate(session.as_ref().map(|s| &s.options)).await.map_err(|error| {
                anyhow!(
                    "{setting}={on}: the {} migrations failed: {}; fix the database, or start with PAM_MIGRATE=false if its schema is managed elsewhere",
                    db.backend(),
                    causes(&error)
                )
            })?;
        }
        crate::storage::schema_doctor::check(&db).await?;
        Ok(Opened { db, session: session.map(|s| s.options) })
    }

    /// On Postgres the migrations run on a connection of their own to `session`: sqlx's migrator
    /// holds a session advisory lock and names its statements, neither of which a transaction
    /// pooler keeps on one server connection.
    async fn migrate(&self, session: Option<&PgConnectOptions>) -> Result<(), sqlx::migrate::MigrateError> {
        match (self, session) {
            (Database::Postgres(_), Some(session)) => {
                let pool = PgPoolOptions::new().max_connections(1).acquire_timeout(CONNECT_TIMEOUT).connect_with(session.clone()).await?;
                let migrated = sqlx::migrate!("./migrations/postgres").run(&pool).await;
                pool.close().await;
                migrated
            }
            (Database::Postgres(pool), None) => sqlx::migrate!("./migrations/postgres").run(&**pool).await,
            (Database::Sqlite(pool), _) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
        }
    }
}

/// The pool on `url` (all of the gateway's statements are unnamed, so it may be any pooler) and
/// where a session goes: `direct_url`, else `url` itself unless that is a transaction pooler,
/// which is refused in one line naming `DATABASE_DIRECT_URL` rather than started with migrations
/// and context-change notifications that silently fail. A `direct_url` says `url` is a pooler, so
/// the pool then pins each statement to a server connection (`postgres_pool.rs`) without asking:
/// a wrong guess there would run another client's statement, where a needless pin costs two round
/// trips.
async fn open_postgres(url: &str, direct_url: Option<&str>) -> anyhow::Result<(PostgresPool, Named)> {
    let (pooled, flagged) = postgres_options("DATABASE_URL", url)?;
    reachable(&pooled).await?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(pooled.options.clone())
        .await
        .map_err(|error| anyhow!("DATABASE_URL={}: {}", pooled.shown, postgres_refusal(&error, &pooled.options, "DATABASE_URL")))?;
    if let Some(direct_url) = direct_url {
        let (direct, _) = postgres_options("DATABASE_DIRECT_URL", direct_url)?;
        reachable(&direct).await?;
        tracing::info!(
            direct = %direct.shown,
            "migrations and LISTEN for context changes use DATABASE_DIRECT_URL; each statement on DATABASE_URL runs in a transaction of its own, as a transaction pooler needs"
        );
        return Ok((PostgresPool::new(pool, true), direct));
    }
    let named = named_as_transaction_pooler(flagged, pooled.options.get_port());
    let probed = named
        || transaction_pooled(&pool)
            .await
            .map_err(|error| anyhow!("DATABASE_URL={}: {}", pooled.shown, postgres_refusal(&error, &pooled.options, "DATABASE_URL")))?;
    if probed {
        pool.close().await;
        let why = match named {
            true => "the URL names one: pgbouncer=true or port 6543",
            false => "its connections share Postgres backends",
        };
        anyhow::bail!(
            "DATABASE_URL={} goes through a transaction pooler ({why}); the migrations and LISTEN for context changes need a session: set DATABASE_DIRECT_URL to the direct connection or the session pooler (Supabase: port 5432)",
            pooled.shown
        );
    }
    Ok((PostgresPool::new(pool, false), pooled))
}

/// `url`'s options, and whether it carried `pgbouncer=true` (accepted and taken out).
fn postgres_options(setting: &'static str, url: &str) -> anyhow::Result<(Named, bool)> {
    let shown = redact_url(url);
    let (url, flagged) = strip_pgbouncer_flag(url);
    let options = PgConnectOptions::from_str(&url).map_err(|error| {
        anyhow!("{setting}={shown}: not a valid Postgres URL ({error}); the form is postgres://user:password@host:port/database")
    })?;
    // PgBouncer refuses a startup parameter it does not know unless told to ignore it, and since
    // Postgres 12 the server's default already prints floats exactly.
    let options = options.extra_float_digits(None);
    Ok((Named { options, setting, shown }, flagged))
}

/// One connection first, for its error: the pool retries until its timeout and then says only
/// "pool timed out", without the host or why.
async fn reachable(named: &Named) -> anyhow::Result<()> {
    let Named { options, setting, shown } = named;
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => anyhow::bail!("{setting}={shown}: {}", postgres_refusal(&error, options, setting)),
        Err(_) => anyhow::bail!("{setting}={shown}: {}", postgres_refusal(&sqlx::Error::PoolTimedOut, options, setting)),
    }
}

/// Why Postgres could not be reached or refused us, and what to do, in words an operator acts on.
fn postgres_refusal(error: &sqlx::Error, options: &PgConnectOptions, setting: &str) -> String {
    let (host, port, user) = (options.get_host(), options.get_port(), options.get_username());
    let database = options.get_database().unwrap_or(user);
    let at = format!("{host}:{port}");
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("Postgres is not reachable at {at} (connection refused); start it there, or point {setting} at a running server")
        }
        sqlx::Error::Io(io) => format!("Postgres is not reachable at {at} ({io}); check the host and port in {setting}"),
        sqlx::Error::PoolTimedOut => format!(
            "Postgres at {at} did not answer within {} s; check that it runs there and that the network lets this host in",
            CONNECT_TIMEOUT.as_secs()
        ),
        sqlx::Error::Tls(tls) => format!("the TLS handshake with Postgres at {at} failed ({tls}); check sslmode in {setting}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!(
                "Postgres at {at} has no database \"{database}\"; create it (createdb -h {host} -p {port} -U {user} {database}) or name an existing one in {setting}"
            ),
            Some("28P01") => format!("Postgres at {at} refused the password of user \"{user}\"; fix the user or password in {setting}"),
            Some("28000") if db.message().contains("does not exist") => format!(
                "Postgres at {at} has no role \"{user}\"; create it (createuser -h {host} -p {port} {user}) or fix the user in {setting}"
            ),
            Some("28000") => format!(
                "Postgres at {at} refused user \"{user}\" ({}); fix the user in {setting}, or allow it in the server's pg_hba.conf",
                db.message()
            ),
            Some(code) => format!("Postgres at {at} refused the connection ({}, SQLSTATE {code})", db.message()),
            None => format!("Postgres at {at} refused the connection ({})", db.message()),
        },
        sqlx::Error::Protocol(_) => {
            format!("what answers at {at} does not speak the Postgres protocol ({}); check the host and port in {setting}", causes(error))
        }
        other => format!("could not connect to Postgres at {at} ({})", causes(other)),
    }
}

/// Opens (and creates) the SQLite file, creating its directory when missing.
async fn open_sqlite(url: &str, shown: &str) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|error| anyhow!("DATABASE_URL={shown}: not a valid SQLite URL ({error}); the form is sqlite://path/to/file.db"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // SQLite's recommendation for WAL: a commit survives a crash of the process (not
        // of the machine, until the next checkpoint) without an fsync per transaction.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(CONNECT_TIMEOUT);
    let file = std::path::absolute(options.get_filename()).unwrap_or_else(|_| options.get_filename().to_path_buf());
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory {
        create_parent_directory(&file, shown)?;
    }
    SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(|error| {
        let why = match &error {
            sqlx::Error::Database(db) => db.message().to_string(),
            other => causes(other),
        };
        anyhow!(
            "DATABASE_URL={shown}: cannot open the SQLite file {} ({why}); check that this user may write it and its directory, or choose another path in DATABASE_URL",
            file.display()
        )
    })
}

fn create_parent_directory(file: &Path, shown: &str) -> anyhow::Result<()> {
    let Some(directory) = file.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    if directory.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(directory).map_err(|error| {
        anyhow!(
            "DATABASE_URL={shown}: the directory {} of the SQLite file does not exist and cannot be created ({error}); create it, or choose a writable path in DATABASE_URL",
            directory.display()
        )
    })?;
    tracing::info!(directory = %directory.display(), "created the directory of the SQLite file (DATABASE_URL)");
    Ok(())
}

/// An error and its sources on one line, each said once (sqlx's errors repeat their source).
fn causes(error: &dyn StdError) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}
