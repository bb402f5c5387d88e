//! `ConversationStore` on the gateway's database. A turn finds the user's newest conversation for
//! the session (or creates it), then in one transaction inserts the user and assistant rows
//! (distinct, ordered `created_at`) and bumps `message_count`/`last_activity`. Session ids are
//! bound as text, never cast to uuid.

use pam_actors::{BoxFuture, ConversationStore, HistoryMessage, StoreError, TurnRecord};
use pam_protocol::{SessionId, UserId};
use sqlx::Row;
use uuid::Uuid;

use super::database::Database;

fn unavailable(error: sqlx::Error) -> StoreError {
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
            match self {
                Database::Postgres(pool) => save_postgres(pool, turn).await.map_err(unavailable),
                Database::Sqlite(pool) => save_sqlite(pool, turn).await.map_err(unavailable),
            }
        })
    }
}

async fn save_postgres(pool: &sqlx::PgPool, turn: &TurnRecord) -> Result<bool, sqlx::Error> {
    let user = Uuid::parse_str(turn.user.as_str()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let mut tx = pool.begin().await?;
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM pam_conversations WHERE user_id = $1 AND session_id = $2 ORDER BY last_activity DESC LIMIT 1 FOR UPDATE",
    )
    .bind(user)
    .bind(turn.session.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let conversation = match existing {
        Some(id) => id,
        None => {
            sqlx::query_scalar("INSERT INTO pam_conversations (user_id, session_id, last_activity) VALUES ($1, $2, $3) RETURNING id")
                .bind(user)
                .bind(turn.session.as_str())
                .bind(turn.received_at)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO pam_messages (conversation_id, role, content, metadata, created_at, client_msg_id) VALUES ($1, 'user', $2, '{}'::jsonb, $3, $4)
         ON CONFLICT (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
    )
    .bind(conversation)
    .bind(&turn.user_text)
    .bind(turn.received_at)
    .bind(turn.client_msg_id.as_deref())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query("INSERT INTO pam_messages (conversation_id, role, content, metadata, created_at) VALUES ($1, 'assistant', $2, $3, $4)")
        .bind(conversation)
        .bind(&turn.assistant_text)
        .bind(&turn.metadata)
        .bind(turn.answered_at)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE pam_conversations SET message_count = COALESCE(message_count, 0) + 2, last_activity = $2, updated_at = now() WHERE id = $1",
    )
    .bind(conversation)
    .bind(turn.answered_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn save_sqlite(pool: &sqlx::SqlitePool, turn: &TurnRecord) -> Result<bool, sqlx::Error> {
    let iso = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // BEGIN IMMEDIATE: take the write lock up front so two turns cannot both create the conversation.
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM pam_conversations WHERE user_id = ?1 AND session_id = ?2 ORDER BY last_activity DESC LIMIT 1")
                .bind(turn.user.as_str())
                .bind(turn.session.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        let conversation = match existing {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4().to_string();
                sqlx::query("INSERT INTO pam_conversations (id, user_id, session_id, last_activity) VALUES (?1, ?2, ?3, ?4)")
                    .bind(&id)
                    .bind(turn.user.as_str())
                    .bind(turn.session.as_str())
                    .bind(iso(turn.received_at))
                    .execute(&mut *conn)
                    .await?;
                id
            }
        };
        let inserted = sqlx::query(
            "INSERT INTO pam_messages (id, conversation_id, role, content, metadata, created_at, client_msg_id) VALUES (?1, ?2, 'user', ?3, '{}', ?4, ?5)
             ON CONFLICT (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(&conversation)
        .bind(&turn.user_text)
        .bind(iso(turn.received_at))
        .bind(turn.client_msg_id.as_deref())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO pam_messages (id, conversation_id, role, content, metadata, created_at) VALUES (?1, ?2, 'assistant', ?3, ?4, ?5)")
            .bind(Uuid::new_v4().to_string())
            .bind(&conversation)
            .bind(&turn.assistant_text)
            .bind(turn.metadata.to_string())
            .bind(iso(turn.answered_at))
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE pam_conversations SET message_count = COALESCE(message_count, 0) + 2, last_activity = ?2, updated_at = ?2 WHERE id = ?1")
            .bind(&conversation)
            .bind(iso(turn.answered_at))
            .execute(&mut *conn)
            .await?;
        Ok::<bool, sqlx::Error>(true)
    }
    .await;
    let finish = if matches!(result, Ok(true)) { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(finish).execute(&mut *conn).await?;
    result
}
