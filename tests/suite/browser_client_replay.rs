//! A replay of what today's browser client (pamService.ts) does, with its own rules applied:
//! token in the query, a ping every 15 s (compressed here), chats with `user_location` context,
//! first without then with `session_id`, and "the first frame with message/content/response is
//! the whole answer".

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// The client's rule: the first frame carrying a truthy message/content/response is the answer.
fn answer_in(frame: &Value) -> Option<String> {
    ["message", "content", "response"]
        .iter()
        .find_map(|key| frame.get(*key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from))
}

/// Reads like the client: answers server pings, counts pongs, stops at the first answer frame.
async fn read_answer(client: &mut WsClient, pongs: &mut u32) -> Value {
    loop {
        let frame = client.recv_json().await;
        match frame["type"].as_str() {
            Some("ping") => client.send_json(json!({"type":"pong","timestamp":frame["timestamp"]})).await,
            Some("pong") => *pongs += 1,
            _ if answer_in(&frame).is_some() => return frame,
            _ => {}
        }
    }
}

#[tokio::test]
async fn todays_browser_client_session_works_unchanged() {
    let app = spawn_app_with(|s| s.ping_interval_ms = 300, Default::default()).await;
    let url = app.ws_url(USER, Some(&token_for(USER)));
    let mut client = WsClient::connect(&url).await;
    let mut pongs = 0;

    // The welcome carries `message`, so the client shows it as a system line, not an answer.
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection");

    // Heartbeat: the client pings on a timer (15 s compressed to 100 ms).
    for _ in 0..3 {
        client.send_json(json!({"type":"ping","timestamp":chrono_ms()})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let context =
        json!({"user_location":{"latitude":44.05,"longitude":-121.31,"accuracy":12,"timestamp":chrono_ms()},"current_page":"/wheels"});
    client.send_json(json!({"type":"chat","message":"Hi PAM","context":context,"user_id":USER,"timestamp":chrono_ms()})).await;
    let first = read_answer(&mut client, &mut pongs).await;
    assert_eq!(first["type"], "chat_response", "the first answer-bearing frame is the terminal one: {first}");
    assert_eq!(first["session_id"], "default");
    assert!(answer_in(&first).unwrap().starts_with("Hi there"));

    client
        .send_json(json!({"type":"chat","message":"what can you do","session_id":"c0ffee-123","context":context,"user_id":USER,"timestamp":chrono_ms()}))
        .await;
    let second = read_answer(&mut client, &mut pongs).await;
    assert_eq!(second["type"], "chat_response");
    assert_eq!(second["session_id"], "c0ffee-123");
    assert_eq!(second["error"], false);

    // Every client ping was answered; the client would reconnect after 3 missed pongs.
    client.send_json(json!({"type":"ping","timestamp":7})).await;
    tokio::time::timeout(WAIT, async {
        while pongs < 4 {
            let frame = client.recv_json().await;
            match frame["type"].as_str() {
                Some("pong") => pongs += 1,
                Some("ping") => client.send_json(json!({"type":"pong","timestamp":frame["timestamp"]})).await,
                _ => panic!("no answer-bearing frame may follow a terminal one: {frame}"),
            }
        }
    })
    .await
    .expect("all four pings are answered");

    // The client closes with 1000 when the user leaves; the server does not reconnect-bait it.
    client.ws.close(None).await.unwrap();
}

fn chrono_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
