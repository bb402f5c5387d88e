//! `ConversationStore` on the gateway's database. The user row of a turn is stored first, its
//! answer later; each write is one transaction (rolled back if its future is dropped) under the
//! (user, session) lock, finds the session's one conversation (or creates it), is idempotent by
//! `client_msg_id` (a repeated write stores nothing) and bumps `message_count`/`last_activity`.
//! Session ids are bound as text, never cast to uuid.

use pam_actors::{
    AbandonedTurn, AnswerRecord, BoxFuture, ConversationStore, HistoryMessage, StoreError, StoredAnswer, StoredTurn, TurnKey,
    UnansweredMark, UserMessage, UserSaved,
};
use pam_protocol::{SessionId, UserId};
use sqlx::Row;
use uuid::Uuid;

use super::abandoned_turns;
use super::conversation_rows as rows;
use super::database::Database;
use crate::storage::sql::{store_error, user_uuid};

impl ConversationStore for Database {
    fn history<'a>(&'a self, turn: &'a TurnKey, limit: usize) -> BoxFuture<'a, Result<Vec<HistoryMessage>, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("history");
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match self {
                Database::Postgres(pool) => sqlx::query(
                    "SELECT m.role, m.content FROM pam_messages m WHERE m.conversation_id = (
                           SELECT id FROM pam_conversations WHERE user_id = $1 AND session_id = $2 ORDER BY last_activity DESC LIMIT 1)
                         AND m.client_msg_id IS DISTINCT FROM $4
                         ORDER BY m.created_at DESC LIMIT $3",
                )
                .persistent(false)
                .bind(user_uuid(&turn.user)?)
                .bind(turn.session.as_str())
                .bind(limit)
                .bind(&turn.client_msg_id)
                .fetch_all(pool)
                .await
                .map_err(store_error)?
                .iter()
                .map(|r| HistoryMessage { role: r.get("role"), content: r.get("content") })
                .collect::<Vec<_>>(),
                Database::Sqlite(pool) => sqlx::query(
                    "SELECT m.role, m.content FROM pam_messages m WHERE m.conversation_id = (
                       SELECT id FROM pam_conversations WHERE user_id = ?1 AND session_id = ?2 ORDER BY last_activity DESC LIMIT 1)
                     AND m.client_msg_id IS NOT ?4
                     ORDER BY m.created_at DESC LIMIT ?3",
                )
                .bind(turn.user.as_str())
                .bind(turn.session.as_str())
                .bind(limit)
                .bind(&turn.client_msg_id)
                .fetch_all(pool)
                .await
                .map_err(store_error)?
                .iter()
                .map(|r| HistoryMessage { role: r.get("role"), content: r.get("content") })
                .collect(),
            };
            Ok(rows.into_iter().rev().collect())
        })
    }

    fn save_user_message<'a>(&'a self, message: &'a UserMessage) -> BoxFuture<'a, Result<UserSaved, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("save_user_message");
            match self {
                Database::Postgres(pool) => postgres::save_user(pool, message).await.map_err(store_error),
                Database::Sqlite(pool) => sqlite::save_user(pool, message).await.map_err(store_error),
            }
        })
    }

    fn save_answer<'a>(&'a self, answer: &'a AnswerRecord) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("save_answer");
            match self {
                Database::Postgres(pool) => postgres::save_answer(pool, answer).await.map_err(store_error),
                Database::Sqlite(pool) => sqlite::save_answer(pool, answer).await.map_err(store_error),
            }
        })
    }

    fn mark_unanswered<'a>(&'a self, mark: &'a UnansweredMark) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("mark_unanswered");
            let key = &mark.key;
            let abandoned = [mark.abandoned()];
            match self {
                Database::Postgres(pool) => {
                    let mut tx = pool.begin().await.map_err(store_error)?;
                    sqlx::query(
                        "UPDATE pam_messages SET metadata = COALESCE(metadata, '{}'::jsonb) || jsonb_build_object('unanswered', $4::text)
                         WHERE role = 'user' AND client_msg_id = $3
                           AND conversation_id IN (SELECT id FROM pam_conversations WHERE user_id = $1 AND session_id = $2)",
                    )
                    .persistent(false)
                    .bind(user_uuid(&key.user)?)
                    .bind(key.session.as_str())
                    .bind(&key.client_msg_id)
                    .bind(&mark.reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                    abandoned_turns::insert_postgres(&mut *tx, &abandoned).await?;
                    tx.commit().await.map_err(store_error)
                }
                Database::Sqlite(pool) => {
                    let mut tx = pool.begin().await.map_err(store_error)?;
                    sqlx::query(
                        "UPDATE pam_messages SET metadata = json_set(COALESCE(metadata, '{}'), '$.unanswered', ?4)
                         WHERE role = 'user' AND client_msg_id = ?3
                           AND conversation_id IN (SELECT id FROM pam_conversations WHERE user_id = ?1 AND session_id = ?2)",
                    )
                    .bind(key.user.as_str())
                    .bind(key.session.as_str())
                    .bind(&key.client_msg_id)
                    .bind(&mark.reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                    abandoned_turns::insert_sqlite(&mut tx, &abandoned).await?;
                    tx.commit().await.map_err(store_error)
                }
            }
        })
    }

    fn record_abandoned<'a>(&'a self, turns: &'a [AbandonedTurn]) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let _timer = crate::observability::QueryTimer::start("record_abandoned");
            match self {
                Database::Postgres(pool) => abandoned_turns::insert_postgres(pool, turns).await,
                Database::Sqlite(pool) => {
                    let mut tx = pool.begin().await.map_err(store_error)?;
                    let new = abandoned_turns::insert_sqlite(&mut tx, turns).await?;
                    tx.commit().await.map_err(store_error)?;
                    Ok(new)
                }
            }
        })
    }
}

fn user_metadata(message: &UserMessage) -> serde_json::Value {
    match &message.boot {
        Some(boot) => serde_json::json!({ "node": message.node, "boot": boot }),
        None => serde_json::json!({ "node": message.node }),
    }
}

fn repeat(row: rows::UserRow<impl Sized>, answer: Option<(String, serde_json::Value)>) -> UserSaved {
    UserSaved::Repeat(StoredTurn {
        answer: answer.map(|(text, metadata)| StoredAnswer { text, metadata }),
        received_at: row.created_at,
        metadata: row.metadata,
    })
}

/// Postgres: every write in one transaction under the (user, session) advisory lock.
mod postgres {
    use super::*;

    fn uuid_of(user: &UserId) -> Result<Uuid, sqlx::Error> {
        Uuid::parse_str(user.as_str()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }

    pub(super) async fn save_user(
        pool: &crate::storage::postgres_pool::PostgresPool,
        message: &UserMessage,
    ) -> Result<UserSaved, sqlx::Error> {
        let key = &message.key;
        let user = uuid_of(&key.user)?;
        let mut tx = pool.begin().await?;
        rows::pg_lock_session(&mut tx, user, &key.session).await?;
        if let Some(row) = rows::pg_user_row(&mut tx, user, &key.session, &key.client_msg_id).await? {
            let answer = rows::pg_answer(&mut tx, row.conversation, &key.client_msg_id).await?;
            tx.rollback().await?;
            return Ok(repeat(row, answer));
        }
        let conversation = rows::pg_conversation(&mut tx, user, &key.session, message.received_at).await?;
        let metadata = user_metadata(message);
        rows::pg_insert(&mut tx, conversation, "user", &message.text, &metadata, message.received_at, Some(&key.client_msg_id)).await?;
        rows::pg_count(&mut tx, conversation, message.received_at).await?;
        tx.commit().await?;
        Ok(UserSaved::New)
    }

    pub(super) async fn save_answer(
        pool: &crate::storage::postgres_pool::PostgresPool,
        answer: &AnswerRecord,
    ) -> Result<bool, sqlx::Error> {
        let key = &answer.key;
        let user = uuid_of(&key.user)?;
        let mut tx = pool.begin().await?;
        rows::pg_lock_session(&mut tx, user, &key.session).await?;
        let conversation = match rows::pg_user_row(&mut tx, user, &key.session, &key.client_msg_id).await? {
            Some(row) => row.conversation,
            None => rows::pg_conversation(&mut tx, user, &key.session, answer.answered_at).await?,
        };
        if rows::pg_answer(&mut tx, conversation, &key.client_msg_id).await?.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        rows::pg_insert(&mut tx, conversation, "assistant", &answer.text, &answer.metadata, answer.answered_at, None).await?;
        rows::pg_count(&mut tx, conversation, answer.answered_at).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// SQLite: every write in one `BEGIN IMMEDIATE` transaction (the database's write lock, taken
/// up front), rolled back by sqlx if its future is dropped.
mod sqlite {
    use super::*;

    const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

    pub(super) async fn save_user(pool: &sqlx::SqlitePool, message: &UserMessage) -> Result<UserSaved, sqlx::Error> {
        let key = &message.key;
        let mut tx = pool.begin_with(BEGIN_IMMEDIATE).await?;
        if let Some(row) = rows::sqlite_user_row(&mut tx, &key.user, &key.session, &key.client_msg_id).await? {
            let answer = rows::sqlite_answer(&mut tx, &row.conversation, &key.client_msg_id).await?;
            tx.rollback().await?;
            return Ok(repeat(row, answer));
        }
        let at = rows::iso(message.received_at);
        let conversation = rows::sqlite_conversation(&mut tx, &key.user, &key.session, &at).await?;
        let metadata = user_metadata(message);
        rows::sqlite_insert(&mut tx, &conversation, "user", &message.text, &metadata, &at, Some(&key.client_msg_id)).await?;
        rows::sqlite_count(&mut tx, &conversation, &at).await?;
        tx.commit().await?;
        Ok(UserSaved::New)
    }

    pub(super) async fn save_answer(pool: &sqlx::SqlitePool, answer: &AnswerRecord) -> Result<bool, sqlx::Error> {
        let key = &answer.key;
        let at = rows::iso(answer.answered_at);
        let mut tx = pool.begin_with(BEGIN_IMMEDIATE).await?;
        let conversation = match rows::sqlite_user_row(&mut tx, &key.user, &key.session, &key.client_msg_id).await? {
            Some(row) => row.conversation,
            None => rows::sqlite_conversation(&mut tx, &key.user, &key.session, &at).await?,
        };
        if rows::sqlite_answer(&mut tx, &conversation, &key.client_msg_id).await?.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        rows::sqlite_insert(&mut tx, &conversation, "assistant", &answer.text, &answer.metadata, &at, None).await?;
        rows::sqlite_count(&mut tx, &conversation, &at).await?;
        tx.commit().await?;
        Ok(true)
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
        let _timer = crate::observability::QueryTimer::start("stored_turn_ids");
        let row: Option<(String, Option<String>)> = match self {
            Database::Postgres(pool) => sqlx::query_as(
                "SELECT c.id::text, (SELECT a.id::text FROM pam_messages a WHERE a.conversation_id = c.id AND a.role = 'assistant'
                        AND a.created_at > u.created_at ORDER BY (a.content = $4) DESC, a.created_at LIMIT 1)
                 FROM pam_messages u JOIN pam_conversations c ON c.id = u.conversation_id
                 WHERE c.user_id = $1 AND c.session_id = $2 AND u.client_msg_id = $3 LIMIT 1",
            )
            .persistent(false)
            .bind(user_uuid(user)?)
            .bind(session.as_str())
            .bind(client_msg_id)
            .bind(answer)
            .fetch_optional(pool)
            .await
            .map_err(store_error)?,
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
            .map_err(store_error)?,
        };
        Ok(row.and_then(|(conversation_id, message_id)| Some(StoredTurnIds { conversation_id, message_id: message_id? })))
    }
}
