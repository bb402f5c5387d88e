//! The row-level statements of the conversation store, once per backend. Callers own the
//! transaction and take the (user, session) lock first ([`pg_lock_session`]; on SQLite the
//! `BEGIN IMMEDIATE` write lock), so finding-or-creating the one conversation of a session and
//! the idempotency checks by `client_msg_id` are exact however many writers race.

use chrono::{DateTime, Utc};
use pam_protocol::{SessionId, UserId};
use serde_json::Value;
use sqlx::{PgConnection, Row, SqliteConnection};
use uuid::Uuid;

/// A stored user row found by its `client_msg_id`.
pub(super) struct UserRow<C> {
    pub(super) conversation: C,
    pub(super) created_at: DateTime<Utc>,
    pub(super) metadata: Value,
}

/// Serialises every write of one (user, session) until the transaction ends. An advisory lock,
/// not a unique constraint: a production table may already hold duplicate conversations.
pub(super) async fn pg_lock_session(tx: &mut PgConnection, user: Uuid, session: &SessionId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))")
        .persistent(false)
        .bind(user)
        .bind(session.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The user's newest conversation for `session`, created at `at` when there is none.
pub(super) async fn pg_conversation(
    tx: &mut PgConnection,
    user: Uuid,
    session: &SessionId,
    at: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM pam_conversations WHERE user_id = $1 AND session_id = $2 ORDER BY last_activity DESC LIMIT 1")
            .persistent(false)
            .bind(user)
            .bind(session.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    match existing {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar("INSERT INTO pam_conversations (user_id, session_id, last_activity) VALUES ($1, $2, $3) RETURNING id")
                .persistent(false)
                .bind(user)
                .bind(session.as_str())
                .bind(at)
                .fetch_one(&mut *tx)
                .await
        }
    }
}

/// The user row stored with `client_msg_id` in any conversation of (user, session).
pub(super) async fn pg_user_row(
    tx: &mut PgConnection,
    user: Uuid,
    session: &SessionId,
    client_msg_id: &str,
) -> Result<Option<UserRow<Uuid>>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT m.conversation_id, m.created_at, m.metadata FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = $1 AND c.session_id = $2 AND m.client_msg_id = $3 AND m.role = 'user' LIMIT 1",
    )
    .persistent(false)
    .bind(user)
    .bind(session.as_str())
    .bind(client_msg_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|r| UserRow {
        conversation: r.get("conversation_id"),
        // Unknown age reads as old, so a repeat of it is answered rather than refused as busy.
        created_at: r.get::<Option<DateTime<Utc>>, _>("created_at").unwrap_or(DateTime::UNIX_EPOCH),
        metadata: r.get::<Option<Value>, _>("metadata").unwrap_or(Value::Null),
    }))
}

/// The answer stored for `client_msg_id` in `conversation`: its text and metadata.
pub(super) async fn pg_answer(
    tx: &mut PgConnection,
    conversation: Uuid,
    client_msg_id: &str,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT content, metadata FROM pam_messages WHERE conversation_id = $1 AND role = 'assistant'
           AND metadata->>'client_msg_id' = $2 ORDER BY created_at DESC LIMIT 1",
    )
    .persistent(false)
    .bind(conversation)
    .bind(client_msg_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|r| (r.get("content"), r.get::<Option<Value>, _>("metadata").unwrap_or(Value::Null))))
}

/// Inserts a message row (`client_msg_id` only on user rows).
pub(super) async fn pg_insert(
    tx: &mut PgConnection,
    conversation: Uuid,
    role: &str,
    text: &str,
    metadata: &Value,
    at: DateTime<Utc>,
    client_msg_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pam_messages (conversation_id, role, content, metadata, created_at, client_msg_id) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .persistent(false)
    .bind(conversation)
    .bind(role)
    .bind(text)
    .bind(metadata)
    .bind(at)
    .bind(client_msg_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Adds one message to the conversation's counter; `last_activity` only moves forward (a write
/// replayed from the outbox may be older than one stored since).
pub(super) async fn pg_count(tx: &mut PgConnection, conversation: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pam_conversations SET message_count = COALESCE(message_count, 0) + 1,
           last_activity = GREATEST(COALESCE(last_activity, $2), $2), updated_at = now() WHERE id = $1",
    )
    .persistent(false)
    .bind(conversation)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// SQLite twin of [`pg_conversation`]; the caller holds the write lock (`BEGIN IMMEDIATE`).
pub(super) async fn sqlite_conversation(
    conn: &mut SqliteConnection,
    user: &UserId,
    session: &SessionId,
    at: &str,
) -> Result<String, sqlx::Error> {
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM pam_conversations WHERE user_id = ?1 AND session_id = ?2 ORDER BY last_activity DESC LIMIT 1")
            .bind(user.as_str())
            .bind(session.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO pam_conversations (id, user_id, session_id, last_activity) VALUES (?1, ?2, ?3, ?4)")
        .bind(&id)
        .bind(user.as_str())
        .bind(session.as_str())
        .bind(at)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// SQLite twin of [`pg_user_row`].
pub(super) async fn sqlite_user_row(
    conn: &mut SqliteConnection,
    user: &UserId,
    session: &SessionId,
    client_msg_id: &str,
) -> Result<Option<UserRow<String>>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT m.conversation_id, m.created_at, m.metadata FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = ?1 AND c.session_id = ?2 AND m.client_msg_id = ?3 AND m.role = 'user' LIMIT 1",
    )
    .bind(user.as_str())
    .bind(session.as_str())
    .bind(client_msg_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| UserRow {
        conversation: r.get("conversation_id"),
        created_at: r
            .get::<Option<String>, _>("created_at")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map_or(DateTime::UNIX_EPOCH, |t| t.with_timezone(&Utc)),
        metadata: sqlite_json(r.get("metadata")),
    }))
}

/// SQLite twin of [`pg_answer`].
pub(super) async fn sqlite_answer(
    conn: &mut SqliteConnection,
    conversation: &str,
    client_msg_id: &str,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT content, metadata FROM pam_messages WHERE conversation_id = ?1 AND role = 'assistant'
           AND json_extract(metadata, '$.client_msg_id') = ?2 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(conversation)
    .bind(client_msg_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| (r.get("content"), sqlite_json(r.get("metadata")))))
}

/// SQLite twin of [`pg_insert`].
pub(super) async fn sqlite_insert(
    conn: &mut SqliteConnection,
    conversation: &str,
    role: &str,
    text: &str,
    metadata: &Value,
    at: &str,
    client_msg_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pam_messages (id, conversation_id, role, content, metadata, created_at, client_msg_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(conversation)
    .bind(role)
    .bind(text)
    .bind(metadata.to_string())
    .bind(at)
    .bind(client_msg_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// SQLite twin of [`pg_count`] (ISO-8601 UTC text compares in time order).
pub(super) async fn sqlite_count(conn: &mut SqliteConnection, conversation: &str, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pam_conversations SET message_count = COALESCE(message_count, 0) + 1,
           last_activity = MAX(COALESCE(last_activity, ?2), ?2), updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
    )
    .bind(conversation)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) fn sqlite_json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
}

/// Timestamps as SQLite stores them: ISO-8601 UTC with microseconds.
pub(super) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
