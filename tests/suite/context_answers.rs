//! Context reaches the answer: on the embedded default with dev auth, the demo traveller's
//! seeded figures and names come back in `chat_response.message`.

use crate::common::*;
use serde_json::{Value, json};

async fn demo_socket(app: &TestApp) -> WsClient {
    let token: Value = reqwest::Client::new().post(app.http("/dev/token")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let mut client = WsClient::connect(&app.ws_url(token["user_id"].as_str().unwrap(), token["token"].as_str())).await;
    assert_eq!(client.recv_json().await["type"], "connection");
    client
}

async fn ask(client: &mut WsClient, question: &str) -> String {
    client.send_json(json!({"type":"chat","message":question,"context":{"user_location":{"latitude":45.52,"longitude":-122.68}}})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    answer["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_demo_traveller_gets_answers_from_their_seeded_context() {
    let app = spawn_app_with(
        |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
        },
        Default::default(),
    )
    .await;
    let mut client = demo_socket(&app).await;
    let fuel = ask(&mut client, "How much have I spent on fuel this month?").await;
    assert!(fuel.contains("$251.85 on fuel"), "{fuel}");
    assert!(fuel.contains("$400.00 budget"), "{fuel}");
    let budget = ask(&mut client, "How much budget is left?").await;
    assert!(budget.contains("• food:") && budget.contains("of $600.00 spent"), "budgeted_amount applies when monthly_limit is 0: {budget}");
    let friends = ask(&mut client, "Which friends are travelling nearby?").await;
    let (jordan, maya) =
        (friends.find("Jordan Lee is in Bend, OR").expect(&friends), friends.find("Maya Torres is in Moab, UT").expect(&friends));
    assert!(jordan < maya, "Bend is nearer Portland than Moab: {friends}");
    let events = ask(&mut client, "Any events coming up?").await;
    assert!(events.starts_with("Coming up in the next 90 days:\n• "), "{events}");
    let text = app.metrics().await;
    assert!(metric(&text, "pam_cache_requests_total{kind=\"financial\",result=\"hit\"}").unwrap_or(0.0) >= 3.0, "later chats hit L1");
    assert_eq!(metric(&text, "pam_cache_requests_total{kind=\"financial\",result=\"miss\"}"), Some(1.0));
}
