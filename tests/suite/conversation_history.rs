//! Conversation history for clients (`GET /api/v1/pam/conversations` and
//! `GET /api/v1/pam/conversations/{session_id}/messages?before=&limit=`), on SQLite and on
//! Postgres: the bearer's conversations newest first, one conversation's messages paged newest
//! first with `before` = a message id, `limit` bounded (default 50, at most 100, anything else
//! 400 with the JSON error body), another user's session answered 404 like a missing one, and
//! chats that arrive together stored in the order they were sent.
//! Helpers are local to this file.

use crate::common::db::{postgres_url, require_postgres};
use crate::common::rest::{assert_error_body, client, post_chat};
use crate::common::*;
use pam_gateway::Overrides;
use serde_json::{Value, json};

async fn postgres_app() -> TestApp {
    let url = postgres_url();
    require_postgres(&url).await.close().await;
    spawn_app_with(|s| s.database_url = url, Overrides::default()).await
}

/// `GET path` with `user`'s bearer token (none when `user` is `None`): status and JSON body.
async fn get(app: &TestApp, user: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = client().get(app.http(path));
    if let Some(user) = user {
        request = request.bearer_auth(token_for(user));
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got {status}: {text:?}")))
}

fn messages_path(session: &str, query: &str) -> String {
    format!("/api/v1/pam/conversations/{session}/messages{query}")
}

/// One REST chat in `session` (its `Idempotency-Key` is `{session}-{message}`, spaces as
/// dashes); returns the stored assistant row's id.
async fn chat(app: &TestApp, user: &str, session: &str, message: &str) -> String {
    let body = json!({"message": message, "session_id": session});
    let key = format!("{session}-{}", message.replace(' ', "-"));
    let (status, answer) = post_chat(app, &token_for(user), &body, Some(&key)).await;
    assert_eq!(status, 200, "{answer}");
    answer["message_id"].as_str().expect("the turn was stored").to_string()
}

/// Every page of `session`, `limit` at a time, following `next_before`: the messages in order.
async fn all_pages(app: &TestApp, user: &str, session: &str, limit: usize) -> (Vec<Value>, usize) {
    let (mut messages, mut pages, mut before) = (Vec::new(), 0, String::new());
    loop {
        let (status, page) = get(app, Some(user), &messages_path(session, &format!("?limit={limit}&before={before}"))).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["session_id"], session);
        let batch = page["messages"].as_array().unwrap().clone();
        assert!(batch.len() <= limit, "{page}");
        pages += 1;
        messages.extend(batch);
        match page["next_before"].as_str() {
            Some(next) => before = next.to_string(),
            None => return (messages, pages),
        }
    }
}

/// Three turns in `trip-a`, then one in `trip-b`: pages of 4 walk `trip-a` newest first with no
/// gap or repeat, and the list shows `trip-b` (newest activity) first.
async fn pages_walk_the_conversation_newest_first(app: &TestApp, user: &str) {
    let mut answers = Vec::new();
    for message in ["first", "second", "third"] {
        answers.push(chat(app, user, "trip-a", message).await);
    }
    chat(app, user, "trip-b", "elsewhere").await;

    let (messages, pages) = all_pages(app, user, "trip-a", 4).await;
    assert_eq!(pages, 2, "6 messages in pages of 4");
    let contents: Vec<&str> = messages.iter().map(|m| m["content"].as_str().unwrap()).collect();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["assistant", "user", "assistant", "user", "assistant", "user"]);
    assert_eq!([contents[1], contents[3], contents[5]], ["third", "second", "first"], "newest first: {contents:?}");
    assert_eq!(messages[0]["id"], answers[2].as_str(), "the newest message is the last answer");
    assert_eq!(messages[1]["client_msg_id"], "rest:trip-a-third", "the turn's client message id comes back");
    assert_eq!(messages[0]["source"], "builtin", "who answered: {}", messages[0]);
    assert!(messages[1].get("source").is_none(), "user rows name no model: {}", messages[1]);
    let times: Vec<&str> = messages.iter().map(|m| m["created_at"].as_str().unwrap()).collect();
    for pair in times.windows(2) {
        let (newer, older) =
            (chrono::DateTime::parse_from_rfc3339(pair[0]).unwrap(), chrono::DateTime::parse_from_rfc3339(pair[1]).unwrap());
        assert!(newer > older, "strictly newest first: {times:?}");
    }

    let (status, list) = get(app, Some(user), "/api/v1/pam/conversations").await;
    assert_eq!(status, 200, "{list}");
    let sessions: Vec<(&str, i64)> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["session_id"].as_str().unwrap(), c["message_count"].as_i64().unwrap()))
        .collect();
    assert_eq!(sessions, [("trip-b", 2), ("trip-a", 6)]);
    assert_eq!(list["conversations"][1]["preview"], messages[0]["content"].as_str().unwrap().chars().take(120).collect::<String>());
    let (_, one) = get(app, Some(user), "/api/v1/pam/conversations?limit=1").await;
    assert_eq!(one["conversations"].as_array().unwrap().len(), 1, "{one}");
}

/// Another user's session reads as no conversation at all (404), their `before` ids are not
/// ours to page on (400), and they see none of it in their own list.
async fn another_users_session_is_not_found(app: &TestApp, owner: &str, stranger: &str) {
    let id = chat(app, owner, "private-trip", "where do I park tonight").await;
    let (status, body) = get(app, Some(stranger), &messages_path("private-trip", "")).await;
    assert_eq!(status, 404, "{body}");
    assert_error_body(&body, "NOT_FOUND");
    let (status, missing) = get(app, Some(owner), &messages_path("never-used", "")).await;
    assert_eq!((status, &missing["error"]), (404, &body["error"]), "another user's session is indistinguishable from none");
    chat(app, stranger, "mine", "hello").await;
    let (status, body) = get(app, Some(stranger), &messages_path("mine", &format!("?before={id}"))).await;
    assert_eq!(status, 400, "{body}");
    assert_error_body(&body, "VALIDATION_ERROR");
    let (_, list) = get(app, Some(stranger), "/api/v1/pam/conversations").await;
    let sessions: Vec<&str> = list["conversations"].as_array().unwrap().iter().map(|c| c["session_id"].as_str().unwrap()).collect();
    assert_eq!(sessions, ["mine"]);
}

#[tokio::test]
async fn history_pages_newest_first_on_sqlite() {
    let app = spawn_app().await;
    pages_walk_the_conversation_newest_first(&app, USER).await;
}

#[tokio::test]
async fn history_pages_newest_first_on_postgres() {
    let app = postgres_app().await;
    pages_walk_the_conversation_newest_first(&app, &uuid::Uuid::new_v4().to_string()).await;
}

#[tokio::test]
async fn another_users_session_is_404_on_sqlite() {
    let app = spawn_app().await;
    another_users_session_is_not_found(&app, USER, OTHER_USER).await;
}

#[tokio::test]
async fn another_users_session_is_404_on_postgres() {
    let app = postgres_app().await;
    another_users_session_is_not_found(&app, &uuid::Uuid::new_v4().to_string(), &uuid::Uuid::new_v4().to_string()).await;
}

/// 120 stored messages in `long-trip`, written straight into the database.
async fn seed_long_conversation_sqlite(app: &TestApp, user: &str) {
    let pool = crate::common::rest::sqlite(app).await;
    let conversation = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO pam_conversations (id, user_id, session_id, message_count) VALUES (?1, ?2, 'long-trip', 120)")
        .bind(&conversation)
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();
    for i in 0..120 {
        let at = format!("2026-11-01T10:{:02}:{:02}.000000Z", i / 60, i % 60);
        sqlx::query("INSERT INTO pam_messages (id, conversation_id, role, content, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&conversation)
            .bind(if i % 2 == 0 { "user" } else { "assistant" })
            .bind(format!("message {i}"))
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn history_limits_default_to_50_cap_at_100_and_refuse_bad_values_with_400() {
    let app = spawn_app().await;
    seed_long_conversation_sqlite(&app, USER).await;
    let (status, page) = get(&app, Some(USER), &messages_path("long-trip", "")).await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50, "the default page");
    assert_eq!((messages[0]["content"].as_str(), messages[49]["content"].as_str()), (Some("message 119"), Some("message 70")));
    assert_eq!(page["next_before"], messages[49]["id"]);
    assert_eq!(messages[0]["created_at"], "2026-11-01T10:01:59.000Z", "RFC 3339 with milliseconds");

    let (_, most) = get(&app, Some(USER), &messages_path("long-trip", "?limit=100")).await;
    assert_eq!(most["messages"].as_array().unwrap().len(), 100);
    let before = most["next_before"].as_str().unwrap();
    let (_, rest) = get(&app, Some(USER), &messages_path("long-trip", &format!("?limit=100&before={before}"))).await;
    assert_eq!(rest["messages"].as_array().unwrap().len(), 20);
    assert_eq!(rest["messages"][19]["content"], "message 0");
    assert_eq!(rest["next_before"], Value::Null, "the last page");

    let bad = [
        "?limit=0",
        "?limit=101",
        "?limit=-1",
        "?limit=ten",
        "?limit=1.5",
        "?before=not-a-uuid",
        "?before=2b0c6a3e-0000-4000-8000-000000000000",
        "?before=%ZZ",
    ];
    for query in bad {
        let (status, body) = get(&app, Some(USER), &messages_path("long-trip", query)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error_body(&body, "VALIDATION_ERROR");
    }
    for query in ["?limit=0", "?limit=101", "?limit=x"] {
        let (status, body) = get(&app, Some(USER), &format!("/api/v1/pam/conversations{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error_body(&body, "VALIDATION_ERROR");
    }
    let (status, body) = get(&app, Some(USER), "/api/v1/pam/conversations/not%20a%20session/messages").await;
    assert_eq!(status, 400, "{body}");
    assert_error_body(&body, "VALIDATION_ERROR");
}

#[tokio::test]
async fn history_needs_the_bearer_like_the_other_rest_routes() {
    let app = spawn_app().await;
    for path in ["/api/v1/pam/conversations", "/api/v1/pam/conversations/default/messages"] {
        let (status, body) = get(&app, None, path).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_error_body(&body, "AUTH_INVALID");
    }
    let (status, body) = get(&app, Some(USER), "/api/v1/pam/conversations").await;
    assert_eq!((status, body), (200, json!({"conversations": []})), "a user with no conversations");
}

/// The user messages of `user`'s only conversation, oldest first.
async fn stored_questions(app: &TestApp, user: &str) -> Vec<String> {
    let (status, list) = get(app, Some(user), "/api/v1/pam/conversations").await;
    assert_eq!(status, 200, "{list}");
    let session = list["conversations"][0]["session_id"].as_str().expect("one conversation").to_string();
    let (messages, _) = all_pages(app, user, &session, 100).await;
    messages.iter().rev().filter(|m| m["role"] == "user").map(|m| m["content"].as_str().unwrap().to_string()).collect()
}

/// Chats that arrive together (a client flushing its offline queue on open) are stored and read
/// back in the order the socket sent them, on both dialects: each turn's store waits for the
/// previous one's, not only its model work.
async fn chats_sent_at_once_are_stored_in_order(app: &TestApp) {
    const CHATS: usize = 6;
    for round in 0..4 {
        let sent: Vec<String> = (0..CHATS).map(|i| format!("offline message {i}")).collect();
        let user = uuid::Uuid::new_v4().to_string();
        let mut legacy = WsClient::connect(&app.ws_url(&user, Some(&token_for(&user)))).await;
        for message in &sent {
            legacy.send_json(json!({"type":"chat","message":message,"user_id":user})).await;
        }
        let mut answers = 0;
        while answers < CHATS {
            let frame = legacy.recv_non_ping().await;
            answers += usize::from(frame["type"] == "chat_response");
        }
        assert_eq!(stored_questions(app, &user).await, sent, "legacy round {round}");

        let user = uuid::Uuid::new_v4().to_string();
        let (mut v2, _) = crate::common::v2::connect_welcomed(app, &token_for(&user)).await;
        for (i, message) in sent.iter().enumerate() {
            v2.send_json(json!({"type":"chat","id":format!("c{i}"),"message":message,"session_id":"offline"})).await;
        }
        let mut ends = 0;
        while ends < CHATS {
            let frame = v2.recv_non_ping().await;
            ends += usize::from(frame["type"] == "chat_end");
        }
        assert_eq!(stored_questions(app, &user).await, sent, "v2 round {round}");
    }
}

// Several worker threads, like the server's own runtime: the turns' tasks really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chats_sent_at_once_are_stored_in_order_on_sqlite() {
    let app = spawn_app().await;
    chats_sent_at_once_are_stored_in_order(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chats_sent_at_once_are_stored_in_order_on_postgres() {
    let app = postgres_app().await;
    chats_sent_at_once_are_stored_in_order(&app).await;
}
