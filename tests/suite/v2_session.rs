//! Protocol v2 sessions over real sockets: the `auth` frame and its 4508 deadline,
//! `auth_expiring`, `auth_refresh` and the 4401 close, and `resume` from the bounded buffer
//! (what was produced while away is replayed, only to its own user; one user's churn of sockets
//! never pushes another user's stream out).

use std::time::Duration;

use crate::common::v2::*;
use crate::common::*;
use pam_gateway::Overrides;
use serde_json::{Value, json};

#[tokio::test]
async fn an_auth_frame_opens_a_v2_socket_without_a_query_token() {
    let app = spawn_app().await;
    let (mut client, protocol) = connect_v2(&v2_url(&app, None)).await;
    assert_eq!(protocol.as_deref(), Some("pam.v2"));
    client.send_json(json!({"type":"auth","token":token_for(USER)})).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["seq"], 1);
}

#[tokio::test]
async fn no_auth_frame_in_time_closes_with_4508_after_an_error_frame() {
    let app = spawn_app_with(|s| s.auth_timeout_ms = 300, Overrides::default()).await;
    let (mut client, _) = connect_v2(&v2_url(&app, None)).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 4508);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["error_code"], "AUTH_TIMEOUT");
    assert!(frames[0]["seq"].is_u64(), "{}", frames[0]);
}

#[tokio::test]
async fn a_forged_auth_frame_closes_with_4501() {
    let app = spawn_app().await;
    let (mut client, _) = connect_v2(&v2_url(&app, None)).await;
    client.send_json(json!({"type":"auth","token":sign_hs256(&user_claims(USER), "not-the-secret-not-the-secret-not-the-secret")})).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 4501);
    assert_eq!(frames.last().unwrap()["error_code"], "AUTH_INVALID");
}

#[tokio::test]
async fn a_token_near_exp_warns_then_closes_with_4401_without_a_refresh() {
    let app = spawn_app().await;
    let (mut client, _) = connect_welcomed(&app, &token_expiring_in(USER, 2)).await;
    let expiring = client.recv_non_ping().await;
    assert_eq!(expiring["type"], "auth_expiring", "{expiring}");
    assert!(expiring["expires_in_ms"].as_u64().unwrap() <= 60_000);
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 4401);
    assert_eq!(frames.last().unwrap()["error_code"], "TOKEN_EXPIRED");
}

#[tokio::test]
async fn auth_refresh_keeps_the_socket_open_past_the_old_exp() {
    let app = spawn_app().await;
    let (mut client, _) = connect_welcomed(&app, &token_expiring_in(USER, 2)).await;
    assert_eq!(client.recv_non_ping().await["type"], "auth_expiring");
    client.send_json(json!({"type":"auth_refresh","token":token_for(USER)})).await;
    // Why a fixed wait: past the old exp on purpose (whole seconds, plus margin); the socket still
    // answers.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    client.send_json(json!({"type":"ping","timestamp":9})).await;
    let pong = client.recv_non_ping().await;
    assert_eq!((pong["type"].as_str(), pong["timestamp"].as_u64()), (Some("pong"), Some(9)), "{pong}");
}

#[tokio::test]
async fn auth_refresh_for_another_user_closes_with_4503() {
    let app = spawn_app().await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"auth_refresh","token":token_for(OTHER_USER)})).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, 4503);
    assert_eq!(frames.last().unwrap()["error_code"], "FORBIDDEN");
}

#[tokio::test]
async fn an_invalid_auth_refresh_closes_with_4501() {
    let app = spawn_app().await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"auth_refresh","token":"not.a.jwt"})).await;
    let (closed, _) = client.recv_close().await;
    assert_eq!(closed.code, 4501);
}

#[tokio::test]
async fn a_chat_end_produced_while_away_is_replayed_on_resume() {
    let (model, gate) = StreamingModel::gated(vec!["While ", "you were away"], "While you were away");
    let app = spawn_app_with(|_| {}, Overrides { llm: Some(model), ..Default::default() }).await;
    let (mut client, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"away-1","message":"what happened?"})).await;
    let ack = frames_until(&mut client, "ack").await.pop().unwrap();
    let last_seq = ack["seq"].as_u64().unwrap();
    drop(client);
    gate.add_permits(1);
    let (mut back, fresh) = connect_welcomed(&app, &token_for(USER)).await;
    assert_ne!(fresh["stream_id"], welcome["stream_id"]);
    assert_eq!(fresh["epoch"], welcome["epoch"], "the frames were kept: same epoch");
    let resume = json!({"type":"resume","stream_id":welcome["stream_id"],"epoch":welcome["epoch"],"last_seq":last_seq});
    back.send_json(resume).await;
    // The answer may be replayed (then `resumed` follows it) or still streaming (then it follows
    // `resumed` live): read until both have come.
    let mut frames: Vec<Value> = Vec::new();
    while !(frames.iter().any(|f| f["type"] == "resumed") && frames.iter().any(|f| f["type"] == "chat_end")) {
        frames.push(back.recv_non_ping().await);
    }
    let at = frames.iter().position(|f| f["type"] == "resumed").unwrap();
    let resumed = frames.remove(at);
    assert_eq!(resumed["stream_id"], welcome["stream_id"], "{resumed}");
    assert_eq!(resumed["replayed"].as_u64(), Some(at as u64), "it counts the frames replayed before it: {resumed}");
    let replayed = frames;
    let seqs = assert_increasing_seq(&replayed);
    assert!(seqs[0] > last_seq, "only frames after last_seq: {replayed:?}");
    assert_eq!(joined_deltas(&replayed), "While you were away");
    assert_eq!(replayed.last().unwrap()["message"], "While you were away");
    assert_eq!(replayed.last().unwrap()["id"], "away-1");
    // The connection now continues the resumed session's sequence.
    back.send_json(json!({"type":"ping","timestamp":1})).await;
    let pong = back.recv_non_ping().await;
    assert!(pong["seq"].as_u64().unwrap() > resumed["seq"].as_u64().unwrap().max(*seqs.last().unwrap()), "{pong}");
}

#[tokio::test]
async fn resuming_another_users_session_fails_and_replays_nothing() {
    let model = StreamingModel::new(vec!["private ", "answer"], "private answer");
    let app = spawn_app_with(|_| {}, Overrides { llm: Some(model), ..Default::default() }).await;
    let (mut owner, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    owner.send_json(json!({"type":"chat","id":"p-1","message":"my secrets"})).await;
    frames_until(&mut owner, "chat_end").await;
    let (mut intruder, own) = connect_welcomed(&app, &token_for(OTHER_USER)).await;
    intruder.send_json(json!({"type":"resume","stream_id":welcome["stream_id"],"last_seq":0})).await;
    let failed = intruder.recv_non_ping().await;
    assert_eq!((failed["type"].as_str(), failed["reason"].as_str()), (Some("resume_failed"), Some("unknown_stream")), "{failed}");
    assert_eq!(failed["stream_id"], own["stream_id"], "the intruder goes on with its own fresh stream");
    intruder.send_json(json!({"type":"ping","timestamp":2})).await;
    assert_eq!(intruder.recv_non_ping().await["type"], "pong", "no frame of the other user's session came");
}

#[tokio::test]
async fn resuming_an_unknown_or_future_position_fails_and_the_fresh_session_works() {
    let model = StreamingModel::new(vec![], "fresh answer");
    let app = spawn_app_with(|_| {}, Overrides { llm: Some(model), ..Default::default() }).await;
    let (mut client, welcome) = connect_welcomed(&app, &token_for(USER)).await;
    client.send_json(json!({"type":"resume","stream_id":"no-such-stream","last_seq":3})).await;
    assert_eq!(client.recv_non_ping().await["reason"], "unknown_stream");
    client.send_json(json!({"type":"resume","stream_id":welcome["stream_id"],"last_seq":999})).await;
    assert_eq!(client.recv_non_ping().await["reason"], "ahead");
    client.send_json(json!({"type":"resume","stream_id":welcome["stream_id"],"epoch":"another-epoch","last_seq":1})).await;
    assert_eq!(client.recv_non_ping().await["reason"], "epoch_changed", "the frames of another epoch are gone");
    // The old name of the field is still understood.
    client.send_json(json!({"type":"resume","session_id":"no-such-stream","last_seq":3})).await;
    assert_eq!(client.recv_non_ping().await["reason"], "unknown_stream");
    client.send_json(json!({"type":"chat","id":"f-1","message":"hello"})).await;
    let end = frames_until(&mut client, "chat_end").await.pop().unwrap();
    assert_eq!(end["message"], "fresh answer");
}

/// The same at full size, with the default limits: one user opens and closes 20 300 v2 sockets
/// (more than the node's whole registry of 20 000), 16 at a time, and another user's detached
/// stream is still resumable — the user's own bound (64 detached) keeps the churn to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_sockets_of_one_user_leave_another_users_stream_resumable() {
    use futures_util::StreamExt;
    const CHURN: usize = pam_actors::MAX_RESUMABLE_STREAMS + 300;
    let model = StreamingModel::new(vec!["kept ", "answer"], "kept answer");
    let overrides = Overrides { llm: Some(model), ..Default::default() };
    let app = spawn_app_with(|s| s.max_connections_per_user = 64, overrides).await;
    let (mut other, welcome) = connect_welcomed(&app, &token_for(OTHER_USER)).await;
    other.send_json(json!({"type":"chat","id":"kept-1","message":"remember this"})).await;
    let frames = frames_until(&mut other, "chat_end").await;
    let acked = frames.iter().find(|f| f["type"] == "ack").expect("the chat is acked")["seq"].as_u64().unwrap();
    drop(other);

    let token = token_for(USER);
    let progress = std::sync::atomic::AtomicUsize::new(0);
    futures_util::stream::iter(0..CHURN)
        .for_each_concurrent(16, |_| async {
            let (mut client, _) = connect_welcomed(&app, &token).await;
            client.ws.close(None).await.expect("the close is sent");
            while client.ws.next().await.is_some() {}
            let done = progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if done % 5_000 == 0 {
                eprintln!("{done} of {CHURN} sockets opened and closed");
            }
        })
        .await;

    let (mut back, _) = connect_welcomed(&app, &token_for(OTHER_USER)).await;
    back.send_json(resume_from(&welcome, acked)).await;
    let replayed = resume_outcome(&mut back).await;
    assert_eq!(replayed.last().unwrap()["type"], "resumed", "the other user's stream is still resumable: {replayed:?}");
    assert_eq!(replayed.iter().find(|f| f["type"] == "chat_end").map(|f| f["message"].clone()), Some(json!("kept answer")), "{replayed:?}");
}

#[tokio::test]
async fn one_user_opening_and_closing_more_sockets_than_the_registry_holds_leaves_other_users_streams_resumable() {
    // A registry of 200 streams (the default total is 20 000): one user churns 300 sockets.
    let limits = pam_actors::ResumeLimits { max_streams: 200, ..Default::default() };
    let model = StreamingModel::new(vec!["kept ", "answer"], "kept answer");
    let overrides = Overrides { llm: Some(model), resume_limits: Some(limits), ..Default::default() };
    let app = spawn_app_with(|s| s.max_connections_per_user = 1_000, overrides).await;
    let (mut other, welcome) = connect_welcomed(&app, &token_for(OTHER_USER)).await;
    other.send_json(json!({"type":"chat","id":"kept-1","message":"remember this"})).await;
    let frames = frames_until(&mut other, "chat_end").await;
    let acked = frames.iter().find(|f| f["type"] == "ack").expect("the chat is acked")["seq"].as_u64().unwrap();
    drop(other);
    let welcomes = open_and_close_v2(&app, USER, 300).await;
    let (mut back, _) = connect_welcomed(&app, &token_for(OTHER_USER)).await;
    back.send_json(resume_from(&welcome, acked)).await;
    let replayed = resume_outcome(&mut back).await;
    assert_eq!(replayed.last().unwrap()["type"], "resumed", "the other user's stream is still resumable: {replayed:?}");
    assert_eq!(replayed.iter().find(|f| f["type"] == "chat_end").map(|f| f["message"].clone()), Some(json!("kept answer")), "{replayed:?}");
    // The churning user keeps its newest detached streams, and lost its own oldest ones.
    let (mut churner, _) = connect_welcomed(&app, &token_for(USER)).await;
    churner.send_json(resume_from(&welcomes[0], 1)).await;
    let failed = resume_outcome(&mut churner).await.pop().unwrap();
    assert_eq!((failed["type"].as_str(), failed["reason"].as_str()), (Some("resume_failed"), Some("unknown_stream")), "{failed}");
    churner.send_json(resume_from(&welcomes[299], 1)).await;
    let resumed = resume_outcome(&mut churner).await.pop().unwrap();
    assert_eq!((resumed["type"].as_str(), &resumed["stream_id"]), (Some("resumed"), &welcomes[299]["stream_id"]), "{resumed}");
}
