//! Writes to the context tables reach the next chat: the Postgres triggers NOTIFY
//! `pam_context_changed` and the gateway evicts that user's cached context.

use std::time::Duration;

use crate::common::db::{postgres_url, require_postgres};
use crate::common::*;
use serde_json::json;

async fn fuel_answer(client: &mut WsClient) -> String {
    client.send_json(json!({"type":"chat","message":"how much have I spent on fuel this month?"})).await;
    client.recv_non_ping().await["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_inserted_expense_shows_in_the_next_chat() {
    let url = postgres_url();
    let pool = require_postgres(&url).await;
    let app = spawn_app_with(|s| s.database_url = url.clone(), Default::default()).await;
    let user = uuid::Uuid::new_v4();
    let insert_fuel = |amount: &'static str| {
        sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES ($1, $2::numeric, 'fuel', CURRENT_DATE)")
            .bind(user)
            .bind(amount)
    };
    insert_fuel("40.00").execute(&pool).await.unwrap();
    let mut client = WsClient::connect(&app.ws_url(&user.to_string(), Some(&token_for(&user.to_string())))).await;
    client.recv_json().await;
    let before = fuel_answer(&mut client).await;
    assert!(before.contains("$40.00 on fuel"), "{before}");
    // Cached now; the next answer must come from the eviction, not the TTL (60 s or more).
    insert_fuel("2.50").execute(&pool).await.unwrap();
    // Paced: each check is a chat, and chats are rate-limited (60 a minute).
    poll_until(Duration::from_secs(5), Duration::from_millis(100), "the new expense reaches the answer", async || {
        let seen = fuel_answer(&mut client).await;
        if seen.contains("$42.50 on fuel") { Ok(()) } else { Err(seen) }
    })
    .await;
}
