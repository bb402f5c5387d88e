//! The row-level statements both conversation write paths share (legacy whole turns and v2's
//! user-then-assistant rows), once per backend. Callers own the transaction.

use chrono::{DateTime, Utc};
use pam_protocol::{SessionId, UserId};
use serde_json::Value;
use sqlx::{PgConnection, SqliteConnection};
use uuid::Uuid;

/// The user's newest conversation for `session`, locked; created at `at` when there is none.
pub(super) async fn pg_conversation(
    tx: &mut PgConnection,
    user: Uuid,
    session: &SessionId,
    at: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM pam_conversations WHERE user_id = $1 AND session_id = $2 ORDER BY last_activity DESC LIMIT 1 FOR UPDATE",
    )
    .bind(user)
    .bind(session.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    match existing {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar("INSERT INTO pam_conversations (user_id, session_id, last_activity) VALUES ($1, $2, $3) RETURNING id")
                .bind(user)
                .bind(session.as_str())
                .bind(at)
                .fetch_one(&mut *tx)
                .await
        }
    }
}

/// Inserts the user row; `false` when its `client_msg_id` is already stored in the conversation.
pub(super) async fn pg_insert_user(
    tx: &mut PgConnection,
    conversation: Uuid,
    text: &str,
    at: DateTime<Utc>,
    client_msg_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO pam_messages (conversation_id, role, content, metadata, created_at, client_msg_id) VALUES ($1, 'user', $2, '{}'::jsonb, $3, $4)
         ON CONFLICT (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
    )
    .bind(conversation)
    .bind(text)
    .bind(at)
    .bind(client_msg_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

pub(super) async fn pg_insert_assistant(
    tx: &mut PgConnection,
    conversation: Uuid,
    text: &str,
    metadata: &Value,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO pam_messages (conversation_id, role, content, metadata, created_at) VALUES ($1, 'assistant', $2, $3, $4)")
        .bind(conversation)
        .bind(text)
        .bind(metadata)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Adds `added` messages to the conversation's counter and moves its `last_activity` to `at`.
pub(super) async fn pg_count(tx: &mut PgConnection, conversation: Uuid, added: i32, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pam_conversations SET message_count = COALESCE(message_count, 0) + $3, last_activity = $2, updated_at = now() WHERE id = $1",
    )
    .bind(conversation)
    .bind(at)
    .bind(added)
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

/// SQLite twin of [`pg_insert_user`].
pub(super) async fn sqlite_insert_user(
    conn: &mut SqliteConnection,
    conversation: &str,
    text: &str,
    at: &str,
    client_msg_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO pam_messages (id, conversation_id, role, content, metadata, created_at, client_msg_id) VALUES (?1, ?2, 'user', ?3, '{}', ?4, ?5)
         ON CONFLICT (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(conversation)
    .bind(text)
    .bind(at)
    .bind(client_msg_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

pub(super) async fn sqlite_insert_assistant(
    conn: &mut SqliteConnection,
    conversation: &str,
    text: &str,
    metadata: &Value,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pam_messages (id, conversation_id, role, content, metadata, created_at) VALUES (?1, ?2, 'assistant', ?3, ?4, ?5)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(conversation)
    .bind(text)
    .bind(metadata.to_string())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// SQLite twin of [`pg_count`].
pub(super) async fn sqlite_count(conn: &mut SqliteConnection, conversation: &str, added: i32, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pam_conversations SET message_count = COALESCE(message_count, 0) + ?3, last_activity = ?2, updated_at = ?2 WHERE id = ?1",
    )
    .bind(conversation)
    .bind(at)
    .bind(added)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
