//! Per-socket state bounded by bytes and time under hostile input: a client's context is capped
//! by `PAM_MAX_CONTEXT_BYTES` (refused whole, context unchanged), `auth_refresh` is rate-limited
//! and its timers are replaced — and every timer of a socket ends with it — and a resume replay
//! larger than the socket's queue arrives whole instead of closing 4408.

use std::time::Duration;

use crate::common::turns::{ContextRecorder, settled};
use crate::common::v2::*;
use crate::common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_context_over_the_byte_budget_is_refused_whole_and_the_context_stays_as_it_was() {
    let recorder = std::sync::Arc::new(ContextRecorder::default());
    let overrides = pam_gateway::Overrides { llm: Some(recorder.clone()), ..Default::default() };
    let app = spawn_app_with(|s| s.max_frame_bytes = 8 << 20, overrides).await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"init","context":{"trip":"Moab"}})).await;
    // 64 keys of ~60 KiB each: ~3.9 MiB, far over the 16 KiB default.
    let big: serde_json::Map<String, Value> = (0..64).map(|n| (format!("k{n}"), json!("x".repeat(60 * 1024)))).collect();
    let wire = json!({"type":"init","context":big}).to_string();
    assert!(wire.len() < 4 << 20);
    client.send_text(&wire).await;
    let refusal = client.recv_non_ping().await;
    assert_eq!((refusal["type"].as_str(), refusal["error_code"].as_str()), (Some("error"), Some("MESSAGE_TOO_LARGE")), "{refusal}");
    client.send_json(json!({"type":"context_update","context":{"k1":"x".repeat(17 * 1024)}})).await;
    assert_eq!(client.recv_non_ping().await["error_code"], "MESSAGE_TOO_LARGE", "one key alone over the budget");
    client.send_json(json!({"type":"chat","message":"hi","context":{"blob":"y".repeat(17 * 1024)}})).await;
    assert_eq!(client.recv_non_ping().await["error_code"], "MESSAGE_TOO_LARGE", "a chat's own context too");
    client.send_json(json!({"type":"chat","message":"hi"})).await;
    assert_eq!(client.recv_non_ping().await["type"], "chat_response");
    let context = recorder.0.lock().unwrap().pop().unwrap();
    assert_eq!(context["trip"], "Moab", "the earlier context is kept");
    assert!(!context.contains_key("k0") && !context.contains_key("k1"), "nothing of the refused ones: {:?}", context.keys());
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// The number of alive tasks once it has not changed for 250 ms (five polls in a row).
async fn settled_task_count() -> usize {
    let (mut last, mut same) = (usize::MAX, 0);
    poll_until(WAIT, Duration::from_millis(50), "the runtime's task count holds still", async || {
        let now = alive_tasks();
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if same >= 5 { Ok(now) } else { Err(format!("{now} tasks alive")) }
    })
    .await
}

#[tokio::test]
async fn auth_refresh_is_rate_limited_and_a_closed_socket_leaves_no_timer_behind() {
    let app = spawn_app().await;
    // Settle the app's own background tasks (some start with the first socket), then count: the
    // count is taken once it has held still for a while.
    let (warm, _) = connect_welcomed(&app, &token_for(USER)).await;
    drop(warm);
    let before = settled_task_count().await;
    let token = token_expiring_in(USER, 3_600);
    let (mut client, _) = connect_welcomed(&app, &token).await;
    client.send_json(json!({"type":"auth_refresh","token":token_expiring_in(USER, 7_200)})).await;
    client.send_json(json!({"type":"ping","timestamp":1})).await;
    assert_eq!(frames_until(&mut client, "pong").await.last().unwrap()["timestamp"], 1, "the first refresh is taken");
    client.send_json(json!({"type":"auth_refresh","token":token_expiring_in(USER, 7_200)})).await;
    let refused = frames_until(&mut client, "error").await.pop().unwrap();
    assert_eq!(refused["error_code"], "RATE_LIMIT_EXCEEDED", "{refused}");
    drop(client);
    // Without cancelling, two timers per token would sleep on for an hour.
    wait_until("every task of the closed socket ended", || async { alive_tasks() <= before }).await;
}

#[tokio::test]
async fn a_resume_replay_larger_than_the_outbound_queue_arrives_whole() {
    use crate::common::v2::StreamingModel;
    let deltas: Vec<&'static str> = (0..250).map(|n| &*Box::leak(format!("d{n} ").into_boxed_str())).collect();
    let full: &'static str = Box::leak(deltas.concat().into_boxed_str());
    let (model, gate) = StreamingModel::gated(deltas, full);
    let overrides = pam_gateway::Overrides { llm: Some(model), ..Default::default() };
    let app = spawn_app_with(|s| s.outbound_queue = 16, overrides).await;
    let (mut client, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    let stream_id = welcome["stream_id"].as_str().unwrap().to_string();
    client.send_json(json!({"type":"chat","id":"long","message":"tell me everything"})).await;
    let ack = frames_until(&mut client, "ack").await.pop().unwrap();
    let last_seq = ack["seq"].as_u64().unwrap();
    drop(client);
    gate.add_permits(1);
    // The whole answer (250 deltas, far more than the 16-frame queue) is in the ring to replay.
    settled(&app).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"resume","stream_id":stream_id,"last_seq":last_seq})).await;
    // Until the answer's end and the replay's `resumed` (which follows the replayed frames, and
    // comes before the rest when the turn was still streaming at the resume).
    let mut frames: Vec<Value> = Vec::new();
    while !(frames.iter().any(|f| f["type"] == "resumed") && frames.iter().any(|f| f["type"] == "chat_end")) {
        frames.push(client.recv_non_ping().await);
    }
    let answer: Vec<&Value> = frames.iter().filter(|f| f["id"] == "long").collect();
    assert_eq!(answer.len(), 251, "250 deltas and the end, none lost: {}", frames.len());
    assert_eq!(joined_deltas(&frames), full);
    let seqs: Vec<u64> =
        frames.iter().filter(|f| f["id"] == "long" || f["type"] == "resumed").map(|f| f["seq"].as_u64().unwrap()).collect();
    // Strictly rising; a gap is allowed only for a frame that is never replayed — the old socket,
    // whose close the server had not seen yet, may have been closed 4408 (its error frame is
    // numbered but not kept) when the answer filled its 16-frame queue. Nothing of the answer is
    // missing or repeated (checked above, by count and text).
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no repeat: {seqs:?}");
    assert!(seqs[0] > last_seq && seqs.len() == 252, "{seqs:?}");
}
