//! What every SQL store shares, whatever its domain (conversations, context, pushes, budgets,
//! preferences): how a `sqlx::Error` becomes a `StoreError`, the user id as the uuid the tables
//! key on, and SQLite's stored time format. The statements themselves stay with their store,
//! Postgres and SQLite side by side per method.

use chrono::{DateTime, Utc};
use pam_actors::StoreError;
use pam_protocol::UserId;
use uuid::Uuid;

/// A data error (SQLSTATE class 22) or a constraint violation is the row's fault and retrying it
/// cannot help (`Rejected`); anything else is the database's (`Unavailable`, retried by the outbox).
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let data_error = db.code().is_some_and(|code| code.starts_with("22"));
        if data_error || !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
            return StoreError::Rejected(error.to_string());
        }
    }
    StoreError::Unavailable(error.to_string())
}

/// The user id as the uuid every table keys on; an id that is no uuid can never be stored.
pub(crate) fn user_uuid(user: &UserId) -> Result<Uuid, StoreError> {
    Uuid::parse_str(user.as_str()).map_err(|e| StoreError::Rejected(format!("user id: {e}")))
}

/// A timestamp in SQLite's stored text format (RFC 3339, milliseconds, `Z`).
pub(crate) fn sqlite_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The tail every multi-row read of every store shares: the fetched rows, each mapped by `row`,
/// with the store's error mapping (`.fetch_all(pool).await.rows(pg_row)?`).
pub(crate) trait FetchedRows<R> {
    /// Maps every fetched row, or the fetch's error as `store_error` does.
    fn rows<T>(self, row: impl FnMut(&R) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError>;
}

impl<R> FetchedRows<R> for Result<Vec<R>, sqlx::Error> {
    fn rows<T>(self, row: impl FnMut(&R) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
        self.map_err(store_error)?.iter().map(row).collect()
    }
}
