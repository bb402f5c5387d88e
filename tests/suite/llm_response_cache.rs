//! The response cache: the same question from the same user with unchanged context is answered
//! without asking the model (`cached: true` stored); once the context changes — a new expense —
//! the model is asked again.

use std::time::Duration;

use crate::common::fake_llm::*;
use crate::common::*;
use serde_json::{Value, json};

const QUESTION: &str = "How much have I spent on fuel this month?";

#[tokio::test]
async fn a_repeated_question_is_answered_from_cache_until_the_context_changes() {
    let fake = FakeLlm::start(Script::answer("You spent $251.85 on fuel.")).await;
    let app = spawn_app_with(
        |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
            s.financial_ttl_s = 1;
            use_anthropic(s, &fake);
        },
        Default::default(),
    )
    .await;
    let token: Value = reqwest::Client::new().post(app.http("/dev/token")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let user = token["user_id"].as_str().unwrap().to_string();
    let mut client = WsClient::connect(&app.ws_url(&user, token["token"].as_str())).await;
    assert_eq!(client.recv_json().await["type"], "connection");

    let first = legacy_chat(&mut client, QUESTION).await;
    // Why a fixed wait: past the 1 s context TTL on purpose, so the second turn reloads the
    // (unchanged) context.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = legacy_chat(&mut client, "  how much have I SPENT on fuel   this month? ").await;
    assert_eq!(fake.calls(), 1, "the second, identical question did not reach the model");
    assert_eq!(second["message"], first["message"]);
    let stored = assistant_metadata(&app).await;
    assert_eq!(stored.iter().map(|m| m["cached"].clone()).collect::<Vec<_>>(), [json!(false), json!(true)]);
    assert_eq!(stored[1]["provider"], "anthropic", "a cached answer keeps who wrote it");

    add_expense(&app, &user, 42.0, "fuel").await;
    // Paced: each check is a chat, and chats are rate-limited.
    let answered_by_model = poll(WAIT, Duration::from_millis(300), async || {
        legacy_chat(&mut client, QUESTION).await;
        if fake.calls() == 2 { Ok(()) } else { Err(String::new()) }
    })
    .await
    .is_ok();
    assert!(answered_by_model, "after the new expense reached the context the model was asked again");
    assert_eq!(assistant_metadata(&app).await.pop().unwrap()["cached"], false);
    let system = fake.requests().pop().unwrap().body["system"].as_str().unwrap().to_string();
    assert!(system.contains("- fuel: spent 293.85"), "the new expense is in the prompt: {system}");
}

async fn add_expense(app: &TestApp, user: &str, amount: f64, category: &str) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db.0.display())).await.unwrap();
    sqlx::query(
        "INSERT INTO expenses (user_id, amount, category, date, description, created_at)
         VALUES (?1, ?2, ?3, date('now'), 'top-up', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    )
    .bind(user)
    .bind(amount)
    .bind(category)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}
