//! A replay of what today's browser client (pamService.ts) does, with its own rules applied:
//! token in the query, a ping every 15 s (compressed here), chats with `user_location` context,
//! first without then with `session_id`, and "the first frame with message/content/response is
//! the whole answer"; and its push paths: `handleTimerExpired`, `handleProactiveAlert` (a real
//! budget alert) and `dismissTimer`'s request, read with the client's own field names and defaults.

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

/// The client flushes its offline queue in `onopen`, before the welcome can arrive, and resolves
/// the pending chat with the first answer-looking frame: the welcome must never be that frame,
/// or the first question gets "Connected to PAM…" and every later answer is one behind.
#[tokio::test]
async fn a_chat_sent_on_open_gets_its_own_answer_not_the_welcome_every_time() {
    let app = spawn_app().await;
    for round in 0..30 {
        let user = uuid::Uuid::new_v4().to_string();
        let mut client = WsClient::connect(&app.ws_url(&user, Some(&token_for(&user)))).await;
        let mut pongs = 0;
        client.send_json(json!({"type":"chat","message":"Hi PAM","user_id":user,"timestamp":chrono_ms()})).await;
        client.send_json(json!({"type":"chat","message":"what can you do","user_id":user,"timestamp":chrono_ms()})).await;
        let first = read_answer(&mut client, &mut pongs).await;
        assert_eq!(first["type"], "chat_response", "round {round}: the first answer is the first chat's: {first}");
        assert!(answer_in(&first).unwrap().starts_with("Hi there"), "round {round}: {first}");
        let second = read_answer(&mut client, &mut pongs).await;
        assert_eq!(second["type"], "chat_response", "round {round}: {second}");
        assert!(!answer_in(&second).unwrap().starts_with("Hi there"), "round {round}: the second answer is not one behind: {second}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn todays_browser_client_session_works_unchanged() {
    let app = spawn_app_with(|s| s.ping_interval_ms = 300, Default::default()).await;
    let url = app.ws_url(USER, Some(&token_for(USER)));
    let mut client = WsClient::connect(&url).await;
    let mut pongs = 0;

    // The welcome carries its text in `greeting`, never in a key the client takes for an answer.
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection");
    assert!(welcome["greeting"].as_str().is_some_and(|g| !g.is_empty()), "{welcome}");
    assert_eq!(answer_in(&welcome), None, "{welcome}");

    // Heartbeat: the client pings on a timer (15 s compressed to 100 ms); the pause is the replayed
    // client's own timing.
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

// ---------------------------------------------------------------------------------------------
// The client's push paths (pamService.ts `onmessage`): `timer_expired` → `handleTimerExpired`,
// `proactive_alert` → `handleProactiveAlert`, and the toast's "Dismiss" → `dismissTimer`, which
// POSTs `{timer_id, user_id}` with the user's bearer to `/api/v1/pam/internal/dismiss-timer`.

/// The fields `handleTimerExpired` declares and reads (a missing one would be `undefined` there:
/// here it fails to parse).
#[derive(serde::Deserialize)]
struct TimerExpired {
    timer_id: String,
    label: String,
    timer_type: String,
    message: String,
    notification: Option<TimerNotification>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimerNotification {
    title: String,
    body: String,
    require_interaction: Option<bool>,
    tag: Option<String>,
}

/// What the client shows for a timer: the browser notification's title, tag and
/// requireInteraction, and the toast's text.
fn handle_timer_expired(data: &Value) -> (TimerExpired, String, String, bool) {
    let timer: TimerExpired = serde_json::from_value(data.clone()).unwrap_or_else(|e| panic!("handleTimerExpired reads {data}: {e}"));
    let notification = timer.notification.as_ref();
    let title = notification
        .map(|n| n.title.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("{} Complete!", if timer.timer_type == "alarm" { "Alarm" } else { "Timer" }));
    let tag = notification.and_then(|n| n.tag.clone()).filter(|t| !t.is_empty()).unwrap_or_else(|| format!("timer-{}", timer.timer_id));
    let require_interaction = notification.and_then(|n| n.require_interaction).unwrap_or(true);
    assert!(notification.is_some_and(|n| !n.body.is_empty()), "the notification has a body: {data}");
    (timer, title, tag, require_interaction)
}

/// `handleProactiveAlert`: the toast kind (by priority), its title (`getAlertTitle`) and the
/// label of its first action (`formatActionLabel`).
fn handle_proactive_alert(data: &Value) -> (&'static str, &'static str, &'static str) {
    let content = &data["content"];
    for key in ["category", "message", "priority", "type"] {
        assert!(content[key].is_string(), "handleProactiveAlert reads content.{key}: {data}");
    }
    assert!(data["id"].is_string() && data["timestamp"].is_string(), "{data}");
    let toast = match content["priority"].as_str() {
        Some("urgent") => "error",
        Some("high") => "warning",
        _ => "info",
    };
    let alert_type = content["alert_type"].as_str().or(content["type"].as_str()).unwrap_or("general");
    let title = match (content["category"].as_str().unwrap_or("assistance"), alert_type) {
        ("financial_guidance", "budget_alert") => "Budget Alert",
        ("financial_guidance", _) => "Financial Guidance",
        _ => "PAM Suggestion",
    };
    let action = match content["actions"].as_array().and_then(|a| a.first()).and_then(Value::as_str) {
        Some("analyze_expenses") => "View Expenses",
        Some("find_savings") => "Find Savings",
        Some(_) => "Take Action",
        None => "",
    };
    (toast, title, action)
}

/// The client's `onmessage`: pings answered, pongs swallowed, the next push returned.
async fn next_push(client: &mut WsClient) -> Value {
    loop {
        let frame = client.recv_json().await;
        match frame["type"].as_str() {
            Some("ping") => client.send_json(json!({"type":"pong","timestamp":frame["timestamp"]})).await,
            Some("timer_expired" | "proactive_alert") => return frame,
            _ => {}
        }
    }
}

/// Reads like the client until the server's next ping, and answers it.
async fn answer_next_ping(client: &mut WsClient) {
    loop {
        let frame = client.recv_json().await;
        if frame["type"] == "ping" {
            return client.send_json(json!({"type":"pong","timestamp":frame["timestamp"]})).await;
        }
    }
}

#[tokio::test]
async fn todays_browser_client_shows_timers_and_budget_alerts_and_dismisses_unchanged() {
    let app = spawn_app_with(|s| s.ping_interval_ms = 300, Default::default()).await;
    let token = token_for(USER);
    let http = rest::client();
    let mut client = WsClient::connect(&app.ws_url(USER, Some(&token))).await;
    assert_eq!(client.recv_json().await["type"], "connection");

    // A timer set through chat or REST fires on the socket.
    let created: Value = http
        .post(app.http("/api/v1/pam/timers"))
        .bearer_auth(&token)
        .json(&json!({"label":"Check the tyre pressure","timer_type":"timer","duration_s":0.3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fired = next_push(&mut client).await;
    assert_eq!(fired["type"], "timer_expired");
    let (timer, title, tag, require_interaction) = handle_timer_expired(&fired);
    assert_eq!(timer.timer_id, created["timer_id"].as_str().unwrap());
    assert_eq!(
        (title.as_str(), timer.label.as_str(), timer.message.as_str()),
        ("Check the tyre pressure", "Check the tyre pressure", "Check the tyre pressure")
    );
    assert_eq!((tag, require_interaction), (format!("timer-{}", timer.timer_id), true));

    // "Dismiss": exactly the request dismissTimer() makes.
    let response = http
        .post(app.http("/api/v1/pam/internal/dismiss-timer"))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {token}"))
        .body(serde_json::to_string(&json!({"timer_id": timer.timer_id, "user_id": USER})).unwrap())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "response.ok: {}", response.status());
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"dismissed": true}));

    // A budget crossing (the app logs expenses in the shared database) comes as a budget alert.
    let db = rest::sqlite(&app).await;
    sqlx::query(
        "INSERT INTO budgets (id, user_id, category, budgeted_amount, monthly_limit, start_date, end_date)
         VALUES (?1, ?2, 'fuel', 100, 100, date('now', 'start of month'), date('now', 'start of month', '+1 month', '-1 day'))",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(USER)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES (?1, 82.5, 'fuel', date('now'))")
        .bind(USER)
        .execute(&db)
        .await
        .unwrap();
    let alert = next_push(&mut client).await;
    assert_eq!(alert["type"], "proactive_alert", "{alert}");
    assert_eq!(handle_proactive_alert(&alert), ("info", "Budget Alert", "View Expenses"));
    let alert_id = alert["id"].as_str().unwrap().to_string();
    // The client answers the ping that follows the push: that pong is its proof of receipt.
    answer_next_ping(&mut client).await;
    wait_until("the received alert is marked delivered", || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT delivered_at FROM pam_notifications WHERE id = ?1")
            .bind(&alert_id)
            .fetch_one(&db)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    client.ws.close(None).await.unwrap();

    // The next session: the dismissed timer and the delivered alert do not come again.
    let mut again = WsClient::connect(&app.ws_url(USER, Some(&token))).await;
    assert_eq!(again.recv_json().await["type"], "connection");
    // Why a fixed pause: what must NOT come again has no event to wait for; this is the window a
    // wrongly re-sent push gets to arrive before the pong ends the read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    again.send_json(json!({"type":"ping","timestamp":99})).await;
    loop {
        let frame = again.recv_json().await;
        match frame["type"].as_str() {
            Some("pong") => break,
            Some("ping") => again.send_json(json!({"type":"pong","timestamp":frame["timestamp"]})).await,
            _ => panic!("nothing is re-sent after a dismiss and a delivery: {frame}"),
        }
    }
}
