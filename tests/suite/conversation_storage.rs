//! Every answered turn is stored per schema.md on both backends: free-text session ids
//! (including `default`), two ordered rows per turn, counters kept, history back into the prompt.

use std::sync::Arc;

use crate::common::db::{postgres_url, require_postgres};
use crate::common::*;
use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use pam_gateway::Overrides;
use serde_json::json;
use tokio::sync::mpsc;

/// Answers with how much history it was given, so the test can see it reach the prompt.
struct HistoryCounter;

impl LlmProvider for HistoryCounter {
    fn name(&self) -> &str {
        "history-counter"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, _deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        let first = request.history.first().map(|m| format!("{}:{}", m.role, m.content)).unwrap_or_default();
        let text = format!("history={} first={first}", request.history.len());
        Box::pin(async move { Ok(LlmReply::new(text, "counter-1", "history-counter")) })
    }
}

fn overrides() -> Overrides {
    Overrides { llm: Some(Arc::new(HistoryCounter)), ..Default::default() }
}

async fn chat(client: &mut WsClient, message: &str, session: Option<&str>) -> String {
    let mut frame = json!({"type":"chat","message":message});
    if let Some(session) = session {
        frame["session_id"] = json!(session);
    }
    client.send_json(frame).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    answer["message"].as_str().unwrap().to_string()
}

/// Two turns in `default`, one in `trip-1`; history of the second `default` turn holds the first.
async fn converse(app: &TestApp, user: &str) {
    let mut client = WsClient::connect(&app.ws_url(user, Some(&token_for(user)))).await;
    client.recv_json().await;
    assert_eq!(chat(&mut client, "first", None).await, "history=0 first=");
    assert_eq!(chat(&mut client, "second", Some("default")).await, "history=2 first=user:first");
    assert_eq!(chat(&mut client, "elsewhere", Some("trip-1")).await, "history=0 first=");
}

#[tokio::test]
async fn turns_are_stored_in_sqlite_and_history_reaches_the_model() {
    let app = spawn_app_with(|_| {}, overrides()).await;
    converse(&app, USER).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db.0.display())).await.unwrap();
    let conversations: Vec<(String, i64)> =
        sqlx::query_as("SELECT session_id, message_count FROM pam_conversations WHERE user_id = ?1 ORDER BY session_id")
            .bind(USER)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(conversations, vec![("default".to_string(), 4), ("trip-1".to_string(), 2)]);
    let messages: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT m.role, m.content, m.metadata FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.session_id = 'default' ORDER BY m.created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages[2].1, "second");
    let metadata: serde_json::Value = serde_json::from_str(&messages[3].2).unwrap();
    assert_eq!(metadata["model"], "counter-1");
    assert_eq!(metadata["provider"], "history-counter");
}

#[tokio::test]
async fn turns_are_stored_in_postgres_with_text_session_ids() {
    let url = postgres_url();
    let pool = require_postgres(&url).await;
    let user = uuid::Uuid::new_v4().to_string();
    let app = spawn_app_with(|s| s.database_url = url.clone(), overrides()).await;
    converse(&app, &user).await;
    let user_uuid = uuid::Uuid::parse_str(&user).unwrap();
    let conversations: Vec<(String, i32)> =
        sqlx::query_as("SELECT session_id, message_count FROM pam_conversations WHERE user_id = $1 ORDER BY session_id")
            .bind(user_uuid)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(conversations, vec![("default".to_string(), 4), ("trip-1".to_string(), 2)]);
    let ordered: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.role, m.content FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
         WHERE c.user_id = $1 AND c.session_id = 'default' ORDER BY m.created_at",
    )
    .bind(user_uuid)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        ordered.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(),
        ["first", "history=0 first=", "second", "history=2 first=user:first"]
    );
}

fn key(user: &str, client_msg_id: &str) -> pam_actors::TurnKey {
    pam_actors::TurnKey {
        user: pam_protocol::UserId::parse(user).unwrap(),
        session: pam_protocol::SessionId::parse("v2-session").unwrap(),
        client_msg_id: client_msg_id.into(),
    }
}

fn user_message(user: &str, client_msg_id: &str) -> pam_actors::UserMessage {
    pam_actors::UserMessage {
        key: key(user, client_msg_id),
        text: "plan my route".into(),
        received_at: chrono::Utc::now(),
        node: "n1".into(),
        boot: None,
    }
}

fn answer(user: &str, client_msg_id: &str) -> pam_actors::AnswerRecord {
    pam_actors::AnswerRecord {
        key: key(user, client_msg_id),
        text: "Here is a route".into(),
        answered_at: chrono::Utc::now() + chrono::Duration::milliseconds(5),
        metadata: json!({"model": "m", "client_msg_id": client_msg_id}),
    }
}

/// A repeated `client_msg_id` stores nothing the second time, for the user row and the answer
/// alike (an outbox retry after an ambiguous commit), on both backends.
#[tokio::test]
async fn a_repeated_client_message_id_is_a_no_op() {
    use pam_actors::{ConversationStore, UserSaved};
    use pam_gateway::storage::database::Database;
    let (settings, _file) = test_settings();
    for url in [settings.database_url.clone(), postgres_url()] {
        let db = Database::connect(&url, true).await.unwrap_or_else(|e| panic!("{url}: {e:#} (start services with ./scripts/test.sh)"));
        let user = uuid::Uuid::new_v4().to_string();
        assert_eq!(db.save_user_message(&user_message(&user, "msg-1")).await.unwrap(), UserSaved::New, "{url}: first time stored");
        match db.save_user_message(&user_message(&user, "msg-1")).await.unwrap() {
            UserSaved::Repeat(stored) => assert!(stored.answer.is_none(), "{url}: no answer yet"),
            other => panic!("{url}: a repeat, got {other:?}"),
        }
        assert!(db.save_answer(&answer(&user, "msg-1")).await.unwrap(), "{url}: the answer is stored");
        assert!(!db.save_answer(&answer(&user, "msg-1")).await.unwrap(), "{url}: a repeated answer is a no-op");
        match db.save_user_message(&user_message(&user, "msg-1")).await.unwrap() {
            UserSaved::Repeat(stored) => assert_eq!(stored.answer.map(|a| a.text).as_deref(), Some("Here is a route"), "{url}"),
            other => panic!("{url}: a repeat, got {other:?}"),
        }
        assert_eq!(db.save_user_message(&user_message(&user, "msg-2")).await.unwrap(), UserSaved::New, "{url}: another id is stored");
        assert!(db.save_answer(&answer(&user, "msg-2")).await.unwrap());
        let history = db.history(&key(&user, "next"), 20).await.unwrap();
        assert_eq!(history.len(), 4, "{url}: two turns, not three");
        let without_msg_2 = db.history(&key(&user, "msg-2"), 20).await.unwrap();
        assert_eq!(without_msg_2.len(), 3, "{url}: a turn's own user message is left out of its history");
    }
}

/// The abandoned-turn record on both backends: one row per turn and accepting incarnation, however
/// many writers record it (the drain's mark, each node ending the orphan, a repeat), and the
/// window's count per cause is what `/metrics` exports.
#[tokio::test]
async fn an_abandoned_turn_is_counted_once_per_incarnation_on_both_backends() {
    use pam_actors::{AbandonCause, AbandonedTurn, ConversationStore, TurnKey, UnansweredMark};
    for store in [crate::common::db::sqlite().await, crate::common::db::private_postgres().await] {
        let db = &store.db;
        let user = pam_protocol::UserId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
        let key = TurnKey { user: user.clone(), session: pam_protocol::SessionId::default_session(), client_msg_id: "gone-1".into() };
        let mark = UnansweredMark { key, reason: "shutdown".into(), node: "node-a".into(), boot: Some("b1".into()) };
        db.mark_unanswered(&mark).await.unwrap();
        db.mark_unanswered(&mark).await.unwrap();
        let crash = |id: &str, boot: &str| AbandonedTurn {
            user: user.clone(),
            client_msg_id: id.into(),
            node: "node-a".into(),
            boot: Some(boot.into()),
            cause: AbandonCause::Crash,
        };
        // The drained turn ended again as an orphan of the same incarnation: not counted again.
        assert_eq!(db.record_abandoned(&[crash("gone-1", "b1")]).await.unwrap(), 0, "{}", db.backend());
        assert_eq!(db.record_abandoned(&[crash("gone-2", "b1"), crash("gone-2", "b2")]).await.unwrap(), 2, "{}", db.backend());
        assert_eq!(db.record_abandoned(&[crash("gone-2", "b2")]).await.unwrap(), 0, "{}", db.backend());
        let mut counts = db.abandoned_within(std::time::Duration::from_secs(900)).await.unwrap();
        counts.sort_by_key(|(cause, _)| cause.as_str());
        assert_eq!(counts, [(AbandonCause::Crash, 2), (AbandonCause::Shutdown, 1)], "{}", db.backend());
    }
}
