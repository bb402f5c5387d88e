//! `ConversationStore` on the gateway's database. A turn finds the user's newest conversation for
//! the session (or creates it), then in one transaction inserts the user and assistant rows
//! (distinct, ordered `created_at`) and bumps `message_count`/`last_activity`. Session ids are
//! bound as text, never cast to uuid.

use pam_actors::ports::{AssistantMessage, ConversationRef, StoredAnswer, UserMessage, UserSaved};
use pam_actors::{BoxFuture, ConversationStore, HistoryMessage, StoreError, TurnRecord};
use pam_protocol::{SessionId, UserId};
use sqlx::Row;
use uuid::Uuid;

use super::conversation_rows as rows;
use super::database::Database;

/// Data exceptions (SQLSTATE class 22, e.g. a NUL in Postgres text) and constraint violations are
/// the record's fault, not the database's: they are `Rejected`, everything else `Unavailable`.
fn unavailable(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let data_error = db.code().is_some_and(|code| code.starts_with("22"));
        if data_error || !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
            return StoreError::Rejected(error.to_string());
        }
    }
    StoreError::Unavailable(error.to_string())
}

fn user_uuid(user: &UserId) -> Result<Uuid, StoreError> {
    Uuid::parse_str(user.as_str()).map_err(|e| StoreError::Unavailable(format!("user id: {e}")))
}

impl ConversationStore for Database {
    fn history<'a>(
        &'a self,
        user: &'a UserId,
        session: &'a SessionId,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<HistoryMessage>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::monitor::QueryTimer::start("history");
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match self {
                Database::Postgres(pool) => sqlx::query(
                    "SELECT m.role, m.content FROM pam_messages m WHERE m.conversation_id = (
                           SELECT id FROM pam_conversations WHERE user_id = $1 AND session_id = $2 ORDER BY last_activity DESC LIMIT 1)
                         ORDER BY m.created_at DESC LIMIT $3",
                )
                .bind(user_uuid(user)?)
                .bind(session.as_str())
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(|r| HistoryMessage { role: r.get("role"), content: r.get("content") })
                .collect::<Vec<_>>(),
                Database::Sqlite(pool) => sqlx::query(
                    "SELECT m.role, m.content FROM pam_messages m WHERE m.conversation_id = (
                       SELECT id FROM pam_conversations WHERE user_id = ?1 AND session_id = ?2 ORDER BY last_activity DESC LIMIT 1)
                     ORDER BY m.created_at DESC LIMIT ?3",
                )
                .bind(user.as_str())
                .bind(session.as_str())
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(|r| HistoryMessage { role: r.get("role"), content: r.get("content") })
                .collect(),
            };
            Ok(rows.into_iter().rev().collect())
        })
    }

    fn save_turn<'a>(&'a self, turn: &'a TurnRecord) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let _timer = crate::monitor::QueryTimer::start("save_turn");
            match self {
                Database::Postgres(pool) => save_postgres(pool, turn).await.map_err(unavailable),
                Database::Sqlite(pool) => save_sqlite(pool, turn).await.map_err(unavailable),
            }
        })
    }

    fn save_user_message<'a>(&'a self, message: &'a UserMessage) -> BoxFuture<'a, Result<UserSaved, StoreError>> {
        Box::pin(async move {
            match self {
                Database::Postgres(pool) => v2::save_user_postgres(pool, message).await.map_err(unavailable),
                Database::Sqlite(pool) => v2::save_user_sqlite(pool, message).await.map_err(unavailable),
            }
        })
    }

    fn save_assistant_message<'a>(&'a self, message: &'a AssistantMessage) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match self {
                Database::Postgres(pool) => v2::save_assistant_postgres(pool, message).await.map_err(unavailable),
                Database::Sqlite(pool) => v2::save_assistant_sqlite(pool, message).await.map_err(unavailable),
            }
        })
    }
}

async fn save_postgres(pool: &sqlx::PgPool, turn: &TurnRecord) -> Result<bool, sqlx::Error> {
    let user = Uuid::parse_str(turn.user.as_str()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let mut tx = pool.begin().await?;
    let conversation = rows::pg_conversation(&mut tx, user, &turn.session, turn.received_at).await?;
    if !rows::pg_insert_user(&mut tx, conversation, &turn.user_text, turn.received_at, turn.client_msg_id.as_deref()).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    rows::pg_insert_assistant(&mut tx, conversation, &turn.assistant_text, &turn.metadata, turn.answered_at).await?;
    rows::pg_count(&mut tx, conversation, 2, turn.answered_at).await?;
    tx.commit().await?;
    Ok(true)
}

async fn save_sqlite(pool: &sqlx::SqlitePool, turn: &TurnRecord) -> Result<bool, sqlx::Error> {
    let iso = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // BEGIN IMMEDIATE: take the write lock up front so two turns cannot both create the conversation.
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        let received = iso(turn.received_at);
        let conversation = rows::sqlite_conversation(&mut conn, &turn.user, &turn.session, &received).await?;
        if !rows::sqlite_insert_user(&mut conn, &conversation, &turn.user_text, &received, turn.client_msg_id.as_deref()).await? {
            return Ok(false);
        }
        rows::sqlite_insert_assistant(&mut conn, &conversation, &turn.assistant_text, &turn.metadata, &iso(turn.answered_at)).await?;
        rows::sqlite_count(&mut conn, &conversation, 2, &iso(turn.answered_at)).await?;
        Ok::<bool, sqlx::Error>(true)
    }
    .await;
    let finish = if matches!(result, Ok(true)) { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(finish).execute(&mut *conn).await?;
    result
}

/// v2 storage: the user row first (its own transaction, so the `ack` means durable), the
/// assistant row later, linked by `metadata.client_msg_id`.
mod v2 {
    use super::*;

    fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    pub(super) async fn save_user_postgres(pool: &sqlx::PgPool, message: &UserMessage) -> Result<UserSaved, sqlx::Error> {
        let user = Uuid::parse_str(message.user.as_str()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let mut tx = pool.begin().await?;
        let conversation = rows::pg_conversation(&mut tx, user, &message.session, message.received_at).await?;
        if !rows::pg_insert_user(&mut tx, conversation, &message.text, message.received_at, Some(&message.client_msg_id)).await? {
            tx.rollback().await?;
            let row = sqlx::query(
                "SELECT content, metadata FROM pam_messages WHERE conversation_id = $1 AND role = 'assistant'
                   AND metadata->>'client_msg_id' = $2 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(conversation)
            .bind(&message.client_msg_id)
            .fetch_optional(pool)
            .await?;
            return Ok(UserSaved::Repeat(row.map(|r| StoredAnswer { text: r.get("content"), metadata: r.get("metadata") })));
        }
        rows::pg_count(&mut tx, conversation, 1, message.received_at).await?;
        tx.commit().await?;
        Ok(UserSaved::New(ConversationRef(conversation.to_string())))
    }

    pub(super) async fn save_assistant_postgres(pool: &sqlx::PgPool, message: &AssistantMessage) -> Result<(), sqlx::Error> {
        let conversation = Uuid::parse_str(&message.conversation.0).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let mut tx = pool.begin().await?;
        rows::pg_insert_assistant(&mut tx, conversation, &message.text, &message.metadata, message.answered_at).await?;
        rows::pg_count(&mut tx, conversation, 1, message.answered_at).await?;
        tx.commit().await
    }

    pub(super) async fn save_user_sqlite(pool: &sqlx::SqlitePool, message: &UserMessage) -> Result<UserSaved, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        // BEGIN IMMEDIATE: take the write lock up front so two turns cannot both create the conversation.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            let at = iso(message.received_at);
            let conversation = rows::sqlite_conversation(&mut conn, &message.user, &message.session, &at).await?;
            let inserted = rows::sqlite_insert_user(&mut conn, &conversation, &message.text, &at, Some(&message.client_msg_id)).await?;
            if inserted {
                rows::sqlite_count(&mut conn, &conversation, 1, &at).await?;
            }
            Ok::<(String, bool), sqlx::Error>((conversation, inserted))
        }
        .await;
        let finish = if matches!(result, Ok((_, true))) { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(finish).execute(&mut *conn).await?;
        let (conversation, inserted) = result?;
        if inserted {
            return Ok(UserSaved::New(ConversationRef(conversation)));
        }
        let row = sqlx::query(
            "SELECT content, metadata FROM pam_messages WHERE conversation_id = ?1 AND role = 'assistant'
               AND json_extract(metadata, '$.client_msg_id') = ?2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&conversation)
        .bind(&message.client_msg_id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(UserSaved::Repeat(row.map(|r| {
            let metadata: String = r.get("metadata");
            StoredAnswer { text: r.get("content"), metadata: serde_json::from_str(&metadata).unwrap_or_default() }
        })))
    }

    pub(super) async fn save_assistant_sqlite(pool: &sqlx::SqlitePool, message: &AssistantMessage) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        let at = iso(message.answered_at);
        rows::sqlite_insert_assistant(&mut tx, &message.conversation.0, &message.text, &message.metadata, &at).await?;
        rows::sqlite_count(&mut tx, &message.conversation.0, 1, &at).await?;
        tx.commit().await
    }
}

/// Where a stored turn landed, for the REST chat response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTurnIds {
    pub conversation_id: String,
    /// The assistant row of the turn.
    pub message_id: String,
}

impl Database {
    /// Finds the turn stored with `client_msg_id` in the user's `session`: its conversation and
    /// the assistant row that answered it (the first one after the user row, preferring the one
    /// with `answer` as its text when turns of one session interleave).
    pub async fn stored_turn_ids(
        &self,
        user: &UserId,
        session: &SessionId,
        client_msg_id: &str,
        answer: &str,
    ) -> Result<Option<StoredTurnIds>, StoreError> {
        let _timer = crate::monitor::QueryTimer::start("stored_turn_ids");
        let row: Option<(String, Option<String>)> = match self {
            Database::Postgres(pool) => sqlx::query_as(
                "SELECT c.id::text, (SELECT a.id::text FROM pam_messages a WHERE a.conversation_id = c.id AND a.role = 'assistant'
                        AND a.created_at > u.created_at ORDER BY (a.content = $4) DESC, a.created_at LIMIT 1)
                 FROM pam_messages u JOIN pam_conversations c ON c.id = u.conversation_id
                 WHERE c.user_id = $1 AND c.session_id = $2 AND u.client_msg_id = $3 LIMIT 1",
            )
            .bind(user_uuid(user)?)
            .bind(session.as_str())
            .bind(client_msg_id)
            .bind(answer)
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?,
            Database::Sqlite(pool) => sqlx::query_as(
                "SELECT c.id, (SELECT a.id FROM pam_messages a WHERE a.conversation_id = c.id AND a.role = 'assistant'
                        AND a.created_at > u.created_at ORDER BY (a.content = ?4) DESC, a.created_at LIMIT 1)
                 FROM pam_messages u JOIN pam_conversations c ON c.id = u.conversation_id
                 WHERE c.user_id = ?1 AND c.session_id = ?2 AND u.client_msg_id = ?3 LIMIT 1",
            )
            .bind(user.as_str())
            .bind(session.as_str())
            .bind(client_msg_id)
            .bind(answer)
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?,
        };
        Ok(row.and_then(|(conversation_id, message_id)| Some(StoredTurnIds { conversation_id, message_id: message_id? })))
    }
}
