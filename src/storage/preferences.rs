//! The user's PAM preferences: `user_settings.pam_preferences` read and replaced for one user, on
//! Postgres (jsonb) and SQLite (JSON text). The row is created when missing; other columns are
//! left alone. Every query filters by the user id.

use pam_actors::StoreError;
use pam_protocol::UserId;
use serde_json::Value;

use super::database::Database;
use crate::observability::timed_query;
use crate::storage::sql::user_uuid;

/// One user's PAM preferences as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPreferences {
    /// `{}` when nothing was stored yet.
    pub pam_preferences: Value,
    /// ISO-8601, `None` before the first write.
    pub updated_at: Option<String>,
}

const PG_READ: &str = "SELECT pam_preferences::text, updated_at::text FROM user_settings WHERE user_id = $1";
const PG_WRITE: &str = "INSERT INTO user_settings (user_id, pam_preferences, created_at, updated_at) VALUES ($1, $2::jsonb, now(), now())
     ON CONFLICT (user_id) DO UPDATE SET pam_preferences = EXCLUDED.pam_preferences, updated_at = now()
     RETURNING pam_preferences::text, updated_at::text";
const SQLITE_READ: &str = "SELECT pam_preferences, updated_at FROM user_settings WHERE user_id = ?1";
const SQLITE_WRITE: &str = "INSERT INTO user_settings (user_id, pam_preferences, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
     ON CONFLICT (user_id) DO UPDATE SET pam_preferences = excluded.pam_preferences, updated_at = excluded.updated_at
     RETURNING pam_preferences, updated_at";

fn preferences_from(row: Option<(Option<String>, Option<String>)>) -> UserPreferences {
    let (preferences, updated_at) = row.unwrap_or((None, None));
    let pam_preferences = preferences
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .filter(|value| !value.is_null())
        .unwrap_or_else(|| Value::Object(Default::default()));
    UserPreferences { pam_preferences, updated_at }
}

impl Database {
    /// The user's stored PAM preferences (`{}` when there are none).
    pub async fn preferences(&self, user: &UserId) -> Result<UserPreferences, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = match self {
            Database::Postgres(pool) => {
                timed_query("settings_read", sqlx::query_as(PG_READ).persistent(false).bind(user_uuid(user)?).fetch_optional(pool)).await?
            }
            Database::Sqlite(pool) => {
                timed_query("settings_read", sqlx::query_as(SQLITE_READ).bind(user.as_str()).fetch_optional(pool)).await?
            }
        };
        Ok(preferences_from(row))
    }

    /// Replaces the user's PAM preferences and returns what is now stored.
    pub async fn set_preferences(&self, user: &UserId, preferences: &Value) -> Result<UserPreferences, StoreError> {
        let json = preferences.to_string();
        let row: (Option<String>, Option<String>) = match self {
            Database::Postgres(pool) => {
                timed_query("settings_write", sqlx::query_as(PG_WRITE).persistent(false).bind(user_uuid(user)?).bind(json).fetch_one(pool))
                    .await?
            }
            Database::Sqlite(pool) => {
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                timed_query("settings_write", sqlx::query_as(SQLITE_WRITE).bind(user.as_str()).bind(json).bind(now).fetch_one(pool)).await?
            }
        };
        Ok(preferences_from(Some(row)))
    }
}
