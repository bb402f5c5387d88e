//! Conversation history read back for clients (`GET /api/v1/pam/conversations` and
//! `…/conversations/{session_id}/messages`): the user's conversations, most recently active
//! first, and one conversation's messages, newest first, paged by keyset on (`created_at`, id)
//! with `before` = a message id. Every statement filters by the user id, so another user's
//! session reads as no conversation at all. Postgres and SQLite statements side by side; the
//! writes are `conversations.rs` and `conversation_rows.rs`.

use chrono::{DateTime, Utc};
use pam_actors::StoreError;
use pam_protocol::{SessionId, UserId};
use serde_json::Value;
use sqlx::{PgConnection, Row, SqliteConnection};
use uuid::Uuid;

use super::conversation_rows::sqlite_json;
use super::database::Database;
use crate::storage::sql::{store_error, user_uuid};

/// What a page of history holds when the client names no `limit`, and the most it may name.
pub const HISTORY_DEFAULT_LIMIT: usize = 50;
pub const HISTORY_MAX_LIMIT: usize = 100;
/// Conversations listed when the client names no `limit` (at most [`HISTORY_MAX_LIMIT`]).
pub const CONVERSATIONS_DEFAULT_LIMIT: usize = 50;

impl Database {
    /// The user's conversations, most recently active first, at most `limit`.
    pub async fn conversations(&self, user: &UserId, limit: usize) -> Result<Vec<ConversationSummary>, StoreError> {
        let _timer = crate::observability::QueryTimer::start("conversations");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match self {
            Database::Postgres(pool) => sqlx::query(
                "SELECT c.session_id, MAX(c.title) AS title, SUM(COALESCE(c.message_count, 0))::bigint AS message_count,
                        MAX(c.last_activity) AS last_activity, MIN(c.created_at) AS created_at,
                        (SELECT left(m.content, 120) FROM pam_messages m JOIN pam_conversations n ON n.id = m.conversation_id
                          WHERE n.user_id = $1 AND n.session_id = c.session_id ORDER BY m.created_at DESC NULLS LAST LIMIT 1) AS preview
                 FROM pam_conversations c WHERE c.user_id = $1
                 GROUP BY c.session_id ORDER BY MAX(c.last_activity) DESC NULLS LAST, c.session_id LIMIT $2",
            )
            .persistent(false)
            .bind(user_uuid(user)?)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(pg_summary)
            .collect(),
            Database::Sqlite(pool) => sqlx::query(
                "SELECT c.session_id, MAX(c.title) AS title, SUM(COALESCE(c.message_count, 0)) AS message_count,
                        MAX(c.last_activity) AS last_activity, MIN(c.created_at) AS created_at,
                        (SELECT substr(m.content, 1, 120) FROM pam_messages m JOIN pam_conversations n ON n.id = m.conversation_id
                          WHERE n.user_id = ?1 AND n.session_id = c.session_id ORDER BY m.created_at DESC LIMIT 1) AS preview
                 FROM pam_conversations c WHERE c.user_id = ?1
                 GROUP BY c.session_id ORDER BY MAX(c.last_activity) DESC, c.session_id LIMIT ?2",
            )
            .bind(user.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(sqlite_summary)
            .collect(),
        };
        Ok(rows)
    }

    /// One page of the user's `session`, newest first: at most `limit` messages older than the
    /// message `before` (ordered by `created_at`, then id), across every conversation row of the
    /// session.
    pub async fn history_page(
        &self,
        user: &UserId,
        session: &SessionId,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<HistoryRead, StoreError> {
        let _timer = crate::observability::QueryTimer::start("history_page");
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = match self {
            Database::Postgres(pool) => {
                let user = user_uuid(user)?;
                // A transaction, not just a connection: behind a transaction pooler only that keeps
                // the reads (and each one's parse and execute) on one server connection.
                let mut conn = pool.begin().await.map_err(store_error)?;
                if !pg_has_session(&mut conn, user, session).await.map_err(store_error)? {
                    return Ok(HistoryRead::NoSuchConversation);
                }
                let cursor = match before {
                    None => None,
                    Some(id) => match pg_cursor(&mut conn, user, session, id).await.map_err(store_error)? {
                        Some(cursor) => Some(cursor),
                        None => return Ok(HistoryRead::UnknownBefore),
                    },
                };
                pg_page(&mut conn, user, session, cursor, fetch).await.map_err(store_error)?
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await.map_err(store_error)?;
                if !sqlite_has_session(&mut conn, user, session).await.map_err(store_error)? {
                    return Ok(HistoryRead::NoSuchConversation);
                }
                let cursor = match before {
                    None => None,
                    Some(id) => match sqlite_cursor(&mut conn, user, session, id).await.map_err(store_error)? {
                        Some(cursor) => Some(cursor),
                        None => return Ok(HistoryRead::UnknownBefore),
                    },
                };
                sqlite_page(&mut conn, user, session, cursor, fetch).await.map_err(store_error)?
            }
        };
        Ok(HistoryRead::Page(page_of(rows, limit)))
    }
}

/// Cuts the `limit + 1` rows read to `limit`; the extra row says an older page exists.
fn page_of(mut messages: Vec<HistoryEntry>, limit: usize) -> HistoryPage {
    let more = messages.len() > limit;
    messages.truncate(limit);
    let next_before = if more { messages.last().map(|m| m.id.clone()) } else { None };
    HistoryPage { messages, next_before }
}

/// One of the user's conversations (all rows of one `session_id`, merged: a production table
/// may hold duplicates).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConversationSummary {
    pub session_id: String,
    pub title: Option<String>,
    pub message_count: i64,
    /// RFC 3339, milliseconds, UTC.
    pub last_activity: Option<String>,
    pub created_at: Option<String>,
    /// The first 120 characters of its newest message.
    pub preview: Option<String>,
}

/// A stored message as clients read it back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    /// The row's id (a uuid): what `before` names to page on.
    pub id: String,
    /// `user`, `assistant` or `system`.
    pub role: String,
    pub content: String,
    /// RFC 3339, milliseconds, UTC.
    pub created_at: Option<String>,
    /// The client's message id of the turn (v2 `id`; `rest:…` for REST chats), when known.
    pub client_msg_id: Option<String>,
    /// Assistant rows: the model and provider that answered, and the answer's ui actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_actions: Option<serde_json::Value>,
}

/// One page of a conversation, newest first; `next_before` names the oldest message of the page
/// when older ones exist (the `before` of the next page).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryPage {
    pub messages: Vec<HistoryEntry>,
    pub next_before: Option<String>,
}

/// The outcome of reading a page: the user has no such conversation (or it is another user's:
/// the same answer), `before` names no message of it, or the page.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryRead {
    NoSuchConversation,
    UnknownBefore,
    Page(HistoryPage),
}

/// Where a page starts: the `before` message's time and id (older rows come after it).
pub(super) struct PgCursor(DateTime<Utc>, Uuid);

/// Whether the user has any conversation row for `session`.
pub(super) async fn pg_has_session(conn: &mut PgConnection, user: Uuid, session: &SessionId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pam_conversations WHERE user_id = $1 AND session_id = $2)")
        .persistent(false)
        .bind(user)
        .bind(session.as_str())
        .fetch_one(&mut *conn)
        .await
}

/// The `before` message, if it is one of (user, session)'s.
pub(super) async fn pg_cursor(
    conn: &mut PgConnection,
    user: Uuid,
    session: &SessionId,
    before: Uuid,
) -> Result<Option<PgCursor>, sqlx::Error> {
    let row: Option<(Option<DateTime<Utc>>, Uuid)> = sqlx::query_as(
        "SELECT m.created_at, m.id FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE m.id = $3 AND c.user_id = $1 AND c.session_id = $2",
    )
    .persistent(false)
    .bind(user)
    .bind(session.as_str())
    .bind(before)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(at, id)| PgCursor(at.unwrap_or(DateTime::UNIX_EPOCH), id)))
}

/// Up to `fetch` messages of (user, session) older than `cursor`, newest first.
pub(super) async fn pg_page(
    conn: &mut PgConnection,
    user: Uuid,
    session: &SessionId,
    cursor: Option<PgCursor>,
    fetch: i64,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let (at, id) = cursor.map_or((None, None), |PgCursor(at, id)| (Some(at), Some(id)));
    let rows = sqlx::query(
        "SELECT m.id::text AS id, m.role, m.content, m.created_at, m.client_msg_id, m.metadata
         FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = $1 AND c.session_id = $2
           AND ($3::timestamptz IS NULL OR (COALESCE(m.created_at, 'epoch'), m.id) < ($3, $4::uuid))
         ORDER BY COALESCE(m.created_at, 'epoch') DESC, m.id DESC LIMIT $5",
    )
    .persistent(false)
    .bind(user)
    .bind(session.as_str())
    .bind(at)
    .bind(id)
    .bind(fetch)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let at = r.get::<Option<DateTime<Utc>>, _>("created_at").map(rfc3339);
            let metadata = r.get::<Option<Value>, _>("metadata").unwrap_or(Value::Null);
            entry(r.get("id"), r.get("role"), r.get("content"), at, r.get("client_msg_id"), &metadata)
        })
        .collect())
}

/// A row of the conversation list query.
pub(super) fn pg_summary(r: &sqlx::postgres::PgRow) -> ConversationSummary {
    ConversationSummary {
        session_id: r.get("session_id"),
        title: r.get("title"),
        message_count: r.get::<Option<i64>, _>("message_count").unwrap_or(0),
        last_activity: r.get::<Option<DateTime<Utc>>, _>("last_activity").map(rfc3339),
        created_at: r.get::<Option<DateTime<Utc>>, _>("created_at").map(rfc3339),
        preview: r.get("preview"),
    }
}

/// SQLite twin of [`PgCursor`] (times are ISO-8601 text, which compares in time order).
pub(super) struct SqliteCursor(String, String);

/// SQLite twin of [`pg_has_session`].
pub(super) async fn sqlite_has_session(conn: &mut SqliteConnection, user: &UserId, session: &SessionId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pam_conversations WHERE user_id = ?1 AND session_id = ?2)")
        .bind(user.as_str())
        .bind(session.as_str())
        .fetch_one(&mut *conn)
        .await
}

/// SQLite twin of [`pg_cursor`].
pub(super) async fn sqlite_cursor(
    conn: &mut SqliteConnection,
    user: &UserId,
    session: &SessionId,
    before: Uuid,
) -> Result<Option<SqliteCursor>, sqlx::Error> {
    let row: Option<(Option<String>, String)> = sqlx::query_as(
        "SELECT m.created_at, m.id FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE m.id = ?3 AND c.user_id = ?1 AND c.session_id = ?2",
    )
    .bind(user.as_str())
    .bind(session.as_str())
    .bind(before.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(at, id)| SqliteCursor(at.unwrap_or_default(), id)))
}

/// SQLite twin of [`pg_page`].
pub(super) async fn sqlite_page(
    conn: &mut SqliteConnection,
    user: &UserId,
    session: &SessionId,
    cursor: Option<SqliteCursor>,
    fetch: i64,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let (at, id) = cursor.map_or((None, None), |SqliteCursor(at, id)| (Some(at), Some(id)));
    let rows = sqlx::query(
        "SELECT m.id, m.role, m.content, m.created_at, m.client_msg_id, m.metadata
         FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = ?1 AND c.session_id = ?2
           AND (?3 IS NULL OR (COALESCE(m.created_at, ''), m.id) < (?3, ?4))
         ORDER BY COALESCE(m.created_at, '') DESC, m.id DESC LIMIT ?5",
    )
    .bind(user.as_str())
    .bind(session.as_str())
    .bind(at)
    .bind(id)
    .bind(fetch)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let at = r.get::<Option<String>, _>("created_at").map(|t| sqlite_rfc3339(&t));
            entry(r.get("id"), r.get("role"), r.get("content"), at, r.get("client_msg_id"), &sqlite_json(r.get("metadata")))
        })
        .collect())
}

/// SQLite twin of [`pg_summary`].
pub(super) fn sqlite_summary(r: &sqlx::sqlite::SqliteRow) -> ConversationSummary {
    ConversationSummary {
        session_id: r.get("session_id"),
        title: r.get("title"),
        message_count: r.get::<Option<i64>, _>("message_count").unwrap_or(0),
        last_activity: r.get::<Option<String>, _>("last_activity").map(|t| sqlite_rfc3339(&t)),
        created_at: r.get::<Option<String>, _>("created_at").map(|t| sqlite_rfc3339(&t)),
        preview: r.get("preview"),
    }
}

/// A message row as clients read it: the client message id from the column (user rows) or the
/// metadata (assistant rows), and who answered.
fn entry(
    id: String,
    role: String,
    content: String,
    created_at: Option<String>,
    column_msg_id: Option<String>,
    metadata: &Value,
) -> HistoryEntry {
    let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_string);
    let assistant = role == "assistant";
    HistoryEntry {
        id,
        content,
        created_at,
        client_msg_id: column_msg_id.or_else(|| text("client_msg_id")),
        model: text("model").filter(|_| assistant),
        source: text("provider").filter(|_| assistant),
        ui_actions: metadata.get("ui_actions").filter(|a| assistant && a.is_array()).cloned(),
        role,
    }
}

/// RFC 3339 with milliseconds and `Z`: what every browser's `Date` parses.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A stored SQLite time as [`rfc3339`]; text that is no time is passed on as stored.
fn sqlite_rfc3339(text: &str) -> String {
    DateTime::parse_from_rfc3339(text).map_or_else(|_| text.to_string(), |t| rfc3339(t.with_timezone(&Utc)))
}
