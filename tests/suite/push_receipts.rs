//! Proof of receipt: a push counts as delivered only when the client showed it has it — a pong
//! (JSON, echoing the timestamp, or WebSocket, echoing the payload) to a ping the server sent
//! after it, or a v2 `ack` / `resume` position at or past its `seq`. Tested the rude ways: a
//! socket behind a proxy that goes silent without a FIN, a reset with the push still queued, a
//! client that never answers, and one that answers with a pong for a ping it never got.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::db::{Backend, TestDb, test_db};
use crate::common::proxy::FlakyProxy;
use crate::common::push::*;
use crate::common::raw_ws::{PING, RawWs, TEXT};
use crate::common::*;

async fn push_alert(app: &TestApp, user: &str, message: &str) -> String {
    let body = json!({"user_id": user, "type": "proactive_alert", "content": {
        "type": "proactive_alert", "category": "travel", "alert_type": "weather",
        "message": message, "priority": "high", "actions": []}});
    let (status, body) = send(rest::client().post(app.http("/api/v1/pam/push")).bearer_auth(ADMIN_TOKEN).json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Why a fixed pause: what must NOT happen (a mark without proof) has no event to wait for; this
/// is the window a wrong mark gets (the server pings promptly after a push and marks in ms).
async fn window_for_a_wrong_mark() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn legacy_path(user: &str) -> String {
    format!("/api/v1/pam/ws/{user}?token={}", token_for(user))
}

/// A legacy socket that reads like a browser (WebSocket pings answered by the socket layer) gets
/// `id` and proves it; then a fresh socket gets nothing more.
async fn reconnect_gets_it_once(app: &TestApp, db_url: &str, user: &str, id: &str) {
    let mut next = connect_user(app, user).await;
    let pushed = next_frame(&mut next).await;
    assert_eq!(pushed["id"], id, "the unproven push comes on the next connect: {pushed}");
    // Reading on answers the server's WebSocket ping after the push: the proof.
    assert_eq!(frames_before_pong(&mut next).await, Vec::<Value>::new());
    wait_delivered(db_url, id).await;
    drop(next);
    let mut last = connect_user(app, user).await;
    assert_eq!(frames_before_pong(&mut last).await, Vec::<Value>::new(), "proven once, delivered once");
}

/// A gateway on `backend` and a legacy socket of a fresh user through a proxy that can fail.
async fn phone_behind_a_proxy(backend: Backend) -> (TestDb, TestApp, FlakyProxy, String, WsClient) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let proxy = FlakyProxy::start(app.addr).await;
    let user = fresh_user();
    let mut phone = WsClient::connect(&proxy.ws_url(&legacy_path(&user))).await;
    assert_eq!(phone.recv_json().await["type"], "connection");
    (db, app, proxy, user, phone)
}

async fn a_black_holed_socket_proves_nothing(backend: Backend) {
    let (db, app, proxy, user, phone) = phone_behind_a_proxy(backend).await;

    // The phone leaves coverage: no FIN, nothing forwarded; the server's socket looks open.
    proxy.go_silent();
    let id = push_alert(&app, &user, "Flash flood warning on your route").await;
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &id).await, "queued on a silent socket is not delivered");

    reconnect_gets_it_once(&app, &db.url, &user, &id).await;
    drop(phone);
}

#[tokio::test]
async fn a_push_to_a_black_holed_socket_stays_undelivered_and_comes_on_reconnect_on_sqlite() {
    a_black_holed_socket_proves_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_push_to_a_black_holed_socket_stays_undelivered_and_comes_on_reconnect_on_postgres() {
    a_black_holed_socket_proves_nothing(Backend::Postgres).await;
}

async fn a_reset_with_the_push_queued_proves_nothing(backend: Backend) {
    let (db, app, proxy, user, phone) = phone_behind_a_proxy(backend).await;

    // The push reaches the proxy and no further; then the connection is reset both ways.
    proxy.go_silent();
    let id = push_alert(&app, &user, "Bridge closed ahead").await;
    proxy.reset();
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &id).await, "a frame lost in a reset is not delivered");
    reconnect_gets_it_once(&app, &db.url, &user, &id).await;
    drop(phone);
}

#[tokio::test]
async fn a_reset_with_the_push_still_queued_leaves_it_undelivered_on_sqlite() {
    a_reset_with_the_push_queued_proves_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_reset_with_the_push_still_queued_leaves_it_undelivered_on_postgres() {
    a_reset_with_the_push_queued_proves_nothing(Backend::Postgres).await;
}

/// The kinds of ping a proof may use.
#[derive(Clone, Copy, PartialEq)]
enum PingKind {
    Json,
    WebSocket,
}

/// Reads a raw socket until the push `id`, then until the next ping of `kind` after it: the
/// JSON ping's `timestamp` (as JSON text) or the WebSocket ping's payload.
async fn read_push_then_ping(socket: &mut RawWs, id: &str, kind: PingKind) -> Vec<u8> {
    let mut seen_push = false;
    loop {
        let frame = socket.recv().await.expect("the socket stays open");
        match frame.opcode {
            TEXT => {
                let value: Value = serde_json::from_slice(&frame.payload).unwrap();
                if value["id"] == id {
                    seen_push = true;
                } else if seen_push && kind == PingKind::Json && value["type"] == "ping" {
                    return value["timestamp"].to_string().into_bytes();
                }
            }
            PING if seen_push && kind == PingKind::WebSocket => return frame.payload,
            _ => {}
        }
    }
}

async fn send_json_pong(socket: &mut RawWs, timestamp: &[u8]) {
    let timestamp: Value = serde_json::from_slice(timestamp).unwrap();
    socket.send(true, TEXT, json!({"type":"pong","timestamp":timestamp}).to_string().as_bytes()).await;
}

/// Pings of each kind node-wide so far: (JSON, WebSocket).
async fn pings_sent(app: &TestApp) -> (f64, f64) {
    let text = app.metrics().await;
    let count = |kind: &str| metric(&text, &format!("pam_ws_frames_total{{direction=\"out\",type=\"{kind}\"}}")).unwrap_or(0.0);
    (count("ping"), count("ws_ping"))
}

const PONG: u8 = 0xA;

#[tokio::test]
async fn a_pong_to_the_ping_after_a_push_proves_it_and_a_pong_for_a_ping_never_sent_does_not() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let user = fresh_user();
    let mut socket = RawWs::connect(app.addr, &legacy_path(&user)).await;
    assert_eq!(socket.recv_json().await["type"], "connection");

    // JSON: a pong echoing the client's own clock proves nothing; the echo of the ping does.
    let first = push_alert(&app, &user, "Wind gusts 60 km/h").await;
    let timestamp = read_push_then_ping(&mut socket, &first, PingKind::Json).await;
    let forged = serde_json::from_slice::<Value>(&timestamp).unwrap().as_u64().expect("a numeric timestamp") + 5_000;
    socket.send(true, TEXT, json!({"type":"pong","timestamp":forged}).to_string().as_bytes()).await;
    socket.send(true, TEXT, json!({"type":"pong","timestamp":"soon"}).to_string().as_bytes()).await;
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &first).await, "a pong for no ping sent proves nothing");
    send_json_pong(&mut socket, &timestamp).await;
    wait_delivered(&db.url, &first).await;

    // A client that answered a JSON ping gets only JSON pings as proofs from then on (keepalive
    // pings stay both kinds, so only the difference tells).
    let before = pings_sent(&app).await;
    for message in ["Road works at km 12", "Rest area closed", "Ferry delayed 20 min"] {
        let id = push_alert(&app, &user, message).await;
        let timestamp = read_push_then_ping(&mut socket, &id, PingKind::Json).await;
        send_json_pong(&mut socket, &timestamp).await;
        wait_delivered(&db.url, &id).await;
    }
    let after = pings_sent(&app).await;
    assert!(after.0 - before.0 > after.1 - before.1, "JSON-only proof pings: {before:?} → {after:?}");
    drop(socket);

    // WebSocket (another user's socket, nothing learned yet): a Pong echoing the ping's payload
    // proves it too; one with another payload not.
    let user = fresh_user();
    let mut socket = RawWs::connect(app.addr, &legacy_path(&user)).await;
    assert_eq!(socket.recv_json().await["type"], "connection");
    let second = push_alert(&app, &user, "Campground full tonight").await;
    let payload = read_push_then_ping(&mut socket, &second, PingKind::WebSocket).await;
    socket.send(true, PONG, b"12345").await;
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &second).await, "a Pong with a payload never pinged proves nothing");
    socket.send(true, PONG, &payload).await;
    wait_delivered(&db.url, &second).await;

    // A client that never answers (its proof ping is a WebSocket ping now): nothing is marked,
    // and the next connect gets it.
    let third = push_alert(&app, &user, "Fuel prices drop nearby").await;
    read_push_then_ping(&mut socket, &third, PingKind::WebSocket).await;
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &third).await);
    drop(socket);
    reconnect_gets_it_once(&app, &db.url, &user, &third).await;
    let proven = metric(&app.metrics().await, "pam_push_proven_total{proof=\"pong\"}").unwrap_or(0.0);
    assert!(proven >= 6.0, "every proof is counted: {proven}");
}

fn v2_path(user: &str) -> String {
    format!("/api/v2/pam/ws?token={}", token_for(user))
}

/// Reads a raw v2 socket until the push `id`; its `seq`.
async fn read_push_seq(socket: &mut RawWs, id: &str) -> u64 {
    loop {
        let frame = socket.recv_json().await;
        if frame["id"] == id {
            return frame["seq"].as_u64().expect("v2 pushes are numbered");
        }
    }
}

#[tokio::test]
async fn a_v2_ack_or_resume_position_at_or_past_a_push_proves_it() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let user = fresh_user();
    let mut socket = RawWs::connect(app.addr, &v2_path(&user)).await;
    let welcome = socket.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    let first = push_alert(&app, &user, "Road works from 9 pm").await;
    let seq = read_push_seq(&mut socket, &first).await;
    socket.send(true, TEXT, json!({"type":"ack","seq":seq - 1}).to_string().as_bytes()).await;
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &first).await, "an ack before the push's seq proves nothing");
    socket.send(true, TEXT, json!({"type":"ack","seq":seq}).to_string().as_bytes()).await;
    wait_delivered(&db.url, &first).await;

    // The socket drops with a push unproven; a resume from past it proves it.
    let second = push_alert(&app, &user, "Ferry delayed 40 minutes").await;
    let seq = read_push_seq(&mut socket, &second).await;
    drop(socket);
    window_for_a_wrong_mark().await;
    assert!(!is_delivered(&db.url, &second).await);
    // A raw socket answers no ping: only the resume position can prove it.
    let mut resumed = RawWs::connect(app.addr, &v2_path(&user)).await;
    assert_eq!(resumed.recv_json().await["type"], "welcome");
    let resume = json!({"type":"resume","stream_id":welcome["stream_id"],"last_seq":seq});
    resumed.send(true, TEXT, resume.to_string().as_bytes()).await;
    wait_delivered(&db.url, &second).await;
}

/// A push the socket never proved comes back on the next connect; when that connect resumes the
/// old stream one round trip after its welcome, the push reaches it once (from the replay), not
/// also from the stored read on the fresh stream.
#[tokio::test]
async fn a_resume_one_round_trip_after_the_welcome_gets_an_unproven_push_once() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let user = fresh_user();
    let mut socket = RawWs::connect(app.addr, &v2_path(&user)).await;
    let welcome = socket.recv_json().await;
    let id = push_alert(&app, &user, "Snow on the pass").await;
    let seq = read_push_seq(&mut socket, &id).await;
    drop(socket);

    let (mut back, _) = crate::common::v2::connect_welcomed(&app, &token_for(&user)).await;
    // A mobile round trip between the welcome and the resume.
    tokio::time::sleep(Duration::from_millis(300)).await;
    back.send_json(json!({"type":"resume","stream_id":welcome["stream_id"],"epoch":welcome["epoch"],"last_seq":seq - 1})).await;
    let frames = crate::common::v2::frames_until(&mut back, "resumed").await;
    let mut copies = frames.iter().filter(|f| f["id"] == id.as_str()).count();
    copies += frames_after_the_stored_hold(&mut back).await.iter().filter(|f| f["id"] == id.as_str()).count();
    assert_eq!(copies, 1, "the push once on this socket: {frames:?}");
}

/// A client that hangs up while the server is still writing — right after the upgrade, after
/// the welcome, or after reading its stored push (the proof ping follows it) — with frames it
/// never read, so its kernel answers with a reset: a write fails in the same moment the read
/// sees the end. The connection must learn of it whichever side notices first, or the socket
/// stays "ready", holding one of its user's slots, until the pong timeout (70 s). 300 rounds:
/// which side notices is a race (the old code left a socket behind in both of two runs).
#[tokio::test]
async fn a_client_that_hangs_up_while_the_server_writes_leaves_no_socket_behind() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let user = fresh_user();
    // Never proven, so every connect gets it again.
    let id = push_alert(&app, &user, "Campground full tonight").await;
    for round in 0..300 {
        let mut socket = RawWs::connect(app.addr, &legacy_path(&user)).await;
        match round % 3 {
            0 => {}
            1 => assert_eq!(socket.recv_json().await["type"], "connection"),
            _ => while socket.recv_json().await["id"] != id.as_str() {},
        }
        drop(socket);
    }
    wait_until("no socket of the hung-up client is left ready", async || {
        metric(&app.metrics().await, "pam_ws_connections{state=\"ready\"}").unwrap_or(0.0) == 0.0
    })
    .await;
}
