//! v2 resume on any node: a stream's replayable frames live in Redis, so a client drained from
//! node A (1012) resumes on node B — mid-answer too, the rest of A's turn forwarded to B — with
//! every seq once and no gap; epochs and owners are checked; without Redis the node's own ring
//! still serves; and a turn whose node died ends with a retryable error on the resuming node.

use std::time::Duration;

use crate::common::nodes::{Node, TTL_MS, listed_nodes, short_ttl, spawn_node, wait_subscribed};
use crate::common::redis::{RedisServer, fresh_prefix, redis, redis_url};
use crate::common::v2::*;
use crate::common::*;
use fred::prelude::LuaInterface;
use pam_gateway::{Overrides, Settings};
use serde_json::{Value, json};

/// Counts the frames in a stream's entries (an entry holds a batch's frames, `s` their seqs).
const COUNT_FRAMES: &str = r"
local n = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 's' then
      for _ in string.gmatch(fields[i + 1], '[^,]+') do n = n + 1 end
    end
  end
end
return n
";

/// Waits until Redis keeps `count` frames of `stream`.
async fn wait_stored(redis: &fred::prelude::Client, prefix: &str, stream: &str, count: i64) {
    let key = format!("{prefix}:v2s:{stream}");
    wait_until(&format!("Redis keeps {count} frames of the stream"), || {
        let (redis, key) = (redis.clone(), key.clone());
        async move {
            let kept: i64 = redis.eval(COUNT_FRAMES, vec![key], ()).await.unwrap();
            kept == count
        }
    })
    .await;
}

/// Node A, whose model stops after the first delta, and node B, whose model answers "Whole", both
/// listed; a v2 client of `USER` on A whose chat `id` is mid-answer, its frames stored in Redis.
struct MidAnswer {
    a: Node,
    b: Node,
    client: WsClient,
    welcome: Value,
    seen: Vec<Value>,
    _gate: std::sync::Arc<tokio::sync::Semaphore>,
}

async fn mid_answer_on_a(redis: &fred::prelude::Client, prefix: &str, adjust: impl Fn(&mut Settings), id: &str) -> MidAnswer {
    let (stuck, gate) = StreamingModel::gated(vec!["Half ", "an answer"], "Half an answer");
    let a = spawn_node("node-a", &redis_url(), prefix, &adjust, with_llm(stuck)).await;
    let b = spawn_node("node-b", &redis_url(), prefix, &adjust, with_llm(StreamingModel::new(vec!["Whole"], "Whole"))).await;
    wait_until("both nodes are listed", || async { listed_nodes(&b.app).await == ["node-a", "node-b"] }).await;
    let (mut client, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":id,"message":"and then?"})).await;
    let seen = frames_until(&mut client, "chat_delta").await;
    wait_stored(redis, prefix, welcome["stream_id"].as_str().unwrap(), 2).await;
    MidAnswer { a, b, client, welcome, seen, _gate: gate }
}

fn with_llm(model: std::sync::Arc<StreamingModel>) -> Overrides {
    Overrides { llm: Some(model), ..Default::default() }
}

fn resume(welcome: &Value, last_seq: u64) -> Value {
    json!({"type":"resume","stream_id":welcome["stream_id"],"epoch":welcome["epoch"],"last_seq":last_seq})
}

fn max_seq(frames: &[Value]) -> u64 {
    frames.iter().filter_map(|f| f["seq"].as_u64()).max().unwrap()
}

#[tokio::test]
async fn a_client_drained_from_a_mid_answer_resumes_on_b_and_gets_the_rest_once_without_a_gap() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let (model, gate) = StreamingModel::gated(vec!["The rest ", "of the ", "answer"], "The rest of the answer");
    let mut a = spawn_node("node-a", &redis_url(), &prefix, |s| s.shutdown_grace_ms = 20_000, with_llm(model.clone())).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, |_| {}, with_llm(model)).await;
    wait_subscribed(&redis, &prefix, "node-b").await;
    let (mut client, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"drain-1","message":"tell me everything"})).await;
    let mut seen = vec![welcome.clone()];
    seen.extend(frames_until(&mut client, "chat_delta").await);

    // A drains while the model waits: the socket closes with 1012 at once, the turn goes on.
    a.app.stop.take().unwrap().send(()).unwrap();
    let (closed, before_close) = client.recv_close().await;
    assert_eq!(closed.code, 1012);
    seen.extend(before_close);
    let (mut back, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, max_seq(&seen))).await;
    let mut got = frames_until(&mut back, "resumed").await;
    let resumed = got.last().unwrap().clone();
    assert_eq!((resumed["stream_id"].clone(), resumed["replayed"].as_u64()), (welcome["stream_id"].clone(), Some(0)), "{got:?}");

    // Now the model goes on, on A; every later frame of the turn reaches the client through B.
    gate.add_permits(1);
    got.extend(frames_until(&mut back, "chat_end").await);
    let all: Vec<Value> = seen.into_iter().chain(got).collect();
    assert_increasing_seq(&all);
    assert_eq!(joined_deltas(&all), "The rest of the answer", "{all:?}");
    let end = all.last().unwrap();
    assert_eq!((end["id"].as_str(), end["message"].as_str()), (Some("drain-1"), Some("The rest of the answer")));
    assert_eq!(all.iter().filter(|f| f["type"] == "ack").count(), 1);
    tokio::time::timeout(Duration::from_secs(20), &mut a.app.server).await.expect("A stops once its turn is done").unwrap().unwrap();
    let text = b.app.metrics().await; // one recorder per process: A's counts show on B
    assert!(text.contains("pam_resume_store_writes_total{outcome=\"forwarded\"}"), "{text}");
}

#[tokio::test]
async fn a_plain_reconnect_to_b_replays_the_frames_a_wrote_and_b_continues_the_numbering() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let model = StreamingModel::new(vec!["Hello ", "from A"], "Hello from A");
    let a = spawn_node("node-a", &redis_url(), &prefix, |_| {}, with_llm(model.clone())).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, |_| {}, with_llm(model)).await;
    let (mut client, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"b-1","message":"hi"})).await;
    let frames = frames_until(&mut client, "chat_end").await;
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap()["seq"].as_u64().unwrap();
    let after_ack: Vec<Value> = frames.iter().filter(|f| f["seq"].as_u64().unwrap() > ack && f["type"] != "ping").cloned().collect();
    drop(client);
    wait_stored(&redis, &prefix, welcome["stream_id"].as_str().unwrap(), 4).await;

    let (mut back, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, ack)).await;
    let mut replayed = frames_until(&mut back, "resumed").await;
    let resumed = replayed.pop().unwrap();
    assert_eq!(resumed["replayed"].as_u64(), Some(after_ack.len() as u64), "{resumed}");
    assert_eq!(replayed, after_ack, "the frames A sent after the ack, exactly as A sent them");
    back.send_json(json!({"type":"ping","timestamp":3})).await;
    let pong = back.recv_non_ping().await;
    assert!(pong["seq"].as_u64().unwrap() > resumed["seq"].as_u64().unwrap(), "{pong}");
    assert!(resumed["seq"].as_u64().unwrap() > max_seq(&frames), "B numbers on from A's last seq: {resumed}");
}

#[tokio::test]
async fn on_b_a_stream_of_another_epoch_is_epoch_changed_and_another_users_stream_is_unknown() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let model = StreamingModel::new(vec!["private"], "private");
    let a = spawn_node("node-a", &redis_url(), &prefix, |_| {}, with_llm(model.clone())).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, |_| {}, with_llm(model)).await;
    let (mut client, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"c-1","message":"secret"})).await;
    frames_until(&mut client, "chat_end").await;
    drop(client);
    wait_stored(&redis, &prefix, welcome["stream_id"].as_str().unwrap(), 3).await;

    let (mut back, fresh) = connect_welcomed(&b.app, &token_for(USER)).await;
    let stale = json!({"type":"resume","stream_id":welcome["stream_id"],"epoch":"not-its-epoch","last_seq":1});
    back.send_json(stale).await;
    let failed = back.recv_non_ping().await;
    assert_eq!((failed["type"].as_str(), failed["reason"].as_str()), (Some("resume_failed"), Some("epoch_changed")), "{failed}");
    assert_eq!(failed["stream_id"], fresh["stream_id"], "the fresh stream goes on");

    let (mut intruder, _) = connect_welcomed(&b.app, &token_for(OTHER_USER)).await;
    intruder.send_json(resume(&welcome, 1)).await;
    assert_eq!(intruder.recv_non_ping().await["reason"], "unknown_stream");
    intruder.send_json(json!({"type":"ping","timestamp":4})).await;
    assert_eq!(intruder.recv_non_ping().await["type"], "pong", "nothing of the other user's stream came");
}

#[tokio::test]
async fn with_redis_gone_a_resume_on_the_same_node_replays_from_its_own_ring_and_chats_answer() {
    let mut server = RedisServer::start().await;
    let prefix = fresh_prefix();
    let model = StreamingModel::new(vec!["Kept ", "here"], "Kept here");
    let a = spawn_node("node-a", &server.url(), &prefix, |_| {}, with_llm(model)).await;
    let (mut client, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"d-1","message":"hi"})).await;
    let frames = frames_until(&mut client, "chat_end").await;
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap()["seq"].as_u64().unwrap();
    drop(client);

    server.stop();
    let (mut back, _) = connect_welcomed(&a.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, ack)).await;
    let mut replayed = frames_until(&mut back, "resumed").await;
    let resumed = replayed.pop().unwrap();
    assert_eq!(resumed["replayed"].as_u64(), Some(3), "{replayed:?}");
    assert_eq!(joined_deltas(&replayed), "Kept here");
    back.send_json(json!({"type":"chat","id":"d-2","message":"still there?"})).await;
    let end = frames_until(&mut back, "chat_end").await.pop().unwrap();
    assert_eq!(end["message"], "Kept here");
    wait_until("the failed stream writes are counted", || async {
        a.app.metrics().await.contains("pam_resume_store_writes_total{outcome=\"failed\"}")
    })
    .await;
}

#[tokio::test]
async fn a_turn_whose_node_died_ends_with_a_retryable_error_on_the_resuming_node_and_the_resend_answers() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let MidAnswer { a, b, client, welcome, seen, .. } = mid_answer_on_a(&redis, &prefix, short_ttl, "e-1").await;

    // A dies: its task is gone without a drain, its heartbeat stops, its registration expires.
    a.app.server.abort();
    drop(client);
    wait_until_within(Duration::from_secs(10), "A is gone from the node list", || async { listed_nodes(&b.app).await == ["node-b"] }).await;
    let (mut back, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, max_seq(&seen))).await;
    let mut replayed = frames_until(&mut back, "resumed").await;
    let resumed = replayed.pop().unwrap();
    assert_eq!(resumed["replayed"].as_u64(), Some(1), "{replayed:?}");
    let error = &replayed[0];
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str(), error["retryable"].as_bool()),
        (Some("error"), Some("e-1"), Some(true)),
        "{error}"
    );
    back.send_json(json!({"type":"chat","id":"e-1","message":"and then?"})).await;
    let end = frames_until(&mut back, "chat_end").await.pop().unwrap();
    assert_eq!((end["id"].as_str(), end["message"].as_str()), (Some("e-1"), Some("Whole")));
}

#[tokio::test]
async fn a_chat_repeated_on_b_after_the_node_that_accepted_it_died_is_answered_at_once() {
    use crate::common::db::{Backend, test_db};
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let on_db = |s: &mut Settings| {
        short_ttl(s);
        s.database_url = db.url.clone();
    };
    let (stuck, _never) = StreamingModel::gated(vec!["Half"], "Half");
    let a = spawn_node("node-a", &redis_url(), &prefix, on_db, with_llm(stuck)).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, on_db, with_llm(StreamingModel::new(vec!["Whole"], "Whole"))).await;
    wait_until("both nodes are listed", || async { listed_nodes(&b.app).await == ["node-a", "node-b"] }).await;
    let (mut client, _) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"g-1","message":"where next?"})).await;
    frames_until(&mut client, "ack").await;

    // A dies with the turn stored as accepted by it and unanswered.
    a.app.server.abort();
    drop(client);
    wait_until_within(Duration::from_secs(10), "A is gone from the node list", || async { listed_nodes(&b.app).await == ["node-b"] }).await;
    // Why a fixed wait: a registration lives PAM_NODE_TTL_MS: a turn younger than that may be a
    // live node's whose registration Redis lost, so only an older one is answered again.
    tokio::time::sleep(Duration::from_millis(TTL_MS)).await;
    let (mut again, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    again.send_json(json!({"type":"chat","id":"g-1","message":"where next?"})).await;
    let mut frames = vec![again.recv_non_ping().await];
    while !["chat_end", "error"].contains(&frames.last().unwrap()["type"].as_str().unwrap_or_default()) {
        frames.push(again.recv_non_ping().await);
    }
    let last = frames.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["message"].as_str()),
        (Some("chat_end"), Some("Whole")),
        "not 'still answered elsewhere': {frames:?}"
    );
}

#[tokio::test]
async fn a_stream_resumed_on_b_closes_the_socket_still_attached_to_it_on_a() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let model = StreamingModel::new(vec!["Hi"], "Hi");
    let a = spawn_node("node-a", &redis_url(), &prefix, |_| {}, with_llm(model.clone())).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, |_| {}, with_llm(model)).await;
    wait_subscribed(&redis, &prefix, "node-a").await;
    let (mut first, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    first.send_json(json!({"type":"chat","id":"t-1","message":"hi"})).await;
    let frames = frames_until(&mut first, "chat_end").await;
    wait_stored(&redis, &prefix, welcome["stream_id"].as_str().unwrap(), 3).await;

    // The same client, on another network, resumes on B while A still holds its old socket.
    let (mut second, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    second.send_json(resume(&welcome, max_seq(&frames))).await;
    assert_eq!(frames_until(&mut second, "resumed").await.last().unwrap()["replayed"].as_u64(), Some(0));
    let (closed, _) = first.recv_close().await;
    assert_eq!((closed.code, closed.reason.as_str()), (1000, "session resumed on another connection"));
}

/// A node restarted under the same `PAM_NODE_ID` (fixed ids are the norm: compose services, pod
/// names) is another incarnation: a resume elsewhere ends its predecessor's open turns at once
/// with a retryable error — not after the registration TTL, and not never because the id is
/// registered again — and a repeat of a chat the predecessor accepted is answered, not "busy".
#[tokio::test]
async fn a_node_restarted_under_the_same_id_is_not_taken_for_its_predecessor() {
    use crate::common::db::{Backend, test_db};
    let redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let on_db = |s: &mut Settings| {
        short_ttl(s);
        s.database_url = db.url.clone();
    };
    let MidAnswer { a, b, client, welcome, seen, .. } = mid_answer_on_a(&redis, &prefix, on_db, "r-1").await;
    let (mut other, _) = connect_welcomed(&a.app, &token_for(OTHER_USER)).await;
    other.send_json(json!({"type":"chat","id":"r-2","message":"where next?"})).await;
    frames_until(&mut other, "ack").await;

    // A dies and comes back under the same id at once: its registration never lapses.
    a.app.server.abort();
    drop((client, other));
    let again = spawn_node("node-a", &redis_url(), &prefix, on_db, with_llm(StreamingModel::new(vec!["Again"], "Again"))).await;
    wait_until("the new node-a is registered", || async {
        let nodes = crate::common::nodes::admin_get(&b.app, "/api/v1/monitoring/nodes").await;
        nodes["nodes"].as_array().unwrap().iter().any(|n| n["id"] == "node-a" && n["started_at"] != Value::Null)
            && listed_nodes(&b.app).await == ["node-a", "node-b"]
    })
    .await;

    let (mut back, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, max_seq(&seen))).await;
    let mut replayed = frames_until(&mut back, "resumed").await;
    replayed.pop();
    let error = replayed.iter().find(|f| f["type"] == "error").unwrap_or_else(|| panic!("an error for r-1: {replayed:?}"));
    assert_eq!((error["id"].as_str(), error["retryable"].as_bool()), (Some("r-1"), Some(true)), "{error}");

    // The other user's unanswered chat, repeated right away on B: answered, not "still busy".
    let (mut repeat, _) = connect_welcomed(&b.app, &token_for(OTHER_USER)).await;
    repeat.send_json(json!({"type":"chat","id":"r-2","message":"where next?"})).await;
    let mut frames = vec![repeat.recv_non_ping().await];
    while !["chat_end", "error"].contains(&frames.last().unwrap()["type"].as_str().unwrap_or_default()) {
        frames.push(repeat.recv_non_ping().await);
    }
    assert_eq!(frames.last().unwrap()["message"], "Whole", "answered on B, not 'still answered elsewhere': {frames:?}");
    drop(again);
}

/// A resume that finds the stream's holder alive leaves its running turn to it (its frames are
/// forwarded); when that holder then dies, the resumed client still gets a retryable error for
/// the turn within the registration TTL plus a check — it is never left waiting.
#[tokio::test]
async fn a_turn_whose_node_dies_after_the_client_resumed_elsewhere_still_ends() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let MidAnswer { a, b, client, welcome, seen, .. } = mid_answer_on_a(&redis, &prefix, short_ttl, "w-1").await;
    drop(client);

    // Resumed on B while A still runs the turn: nothing ends yet.
    let (mut back, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, max_seq(&seen))).await;
    let replayed = frames_until(&mut back, "resumed").await;
    assert!(replayed.iter().all(|f| f["type"] != "error"), "{replayed:?}");

    // Then A dies: within its TTL plus a check, the turn ends with a retryable error.
    a.app.server.abort();
    let died = tokio::time::Instant::now();
    let error = loop {
        let frame = back.recv_non_ping().await;
        if frame["type"] == "error" {
            break frame;
        }
    };
    assert_eq!((error["id"].as_str(), error["retryable"].as_bool()), (Some("w-1"), Some(true)), "{error}");
    assert!(died.elapsed() < Duration::from_millis(TTL_MS) + Duration::from_secs(5), "ended in {:?}", died.elapsed());
    back.send_json(json!({"type":"chat","id":"w-1","message":"and then?"})).await;
    let end = frames_until(&mut back, "chat_end").await.pop().unwrap();
    assert_eq!((end["id"].as_str(), end["message"].as_str()), (Some("w-1"), Some("Whole")));
}

/// How a resume went for a socket: `resumed`, `resume_failed`, or `closed` (taken over).
async fn resume_outcome(socket: &mut WsClient) -> &'static str {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.ws.next()).await.expect("an outcome in time") {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text).unwrap()["type"].as_str() {
                Some("resumed") => return "resumed",
                Some("resume_failed") => return "resume_failed",
                _ => {}
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return "closed",
            Some(Ok(_)) => {}
        }
    }
}

/// Whether the socket is closed (by the server) within `within`.
async fn closes_within(socket: &mut WsClient, within: Duration) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.ws.next()).await {
            Err(_) => return false,
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Two resumes of one stream on two nodes at the same moment: the claims are atomic, and the word
/// "taken" can come before the attach it is about or be lost — either way, in the end one socket
/// holds the stream.
#[tokio::test]
async fn two_resumes_of_one_stream_racing_on_two_nodes_leave_one_holder_every_time() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let model = StreamingModel::new(vec!["Hi"], "Hi");
    let a = spawn_node("node-a", &redis_url(), &prefix, |_| {}, with_llm(model.clone())).await;
    let b = spawn_node("node-b", &redis_url(), &prefix, |_| {}, with_llm(model)).await;
    wait_subscribed(&redis, &prefix, "node-a").await;
    wait_subscribed(&redis, &prefix, "node-b").await;
    for round in 0..50 {
        let user = uuid::Uuid::new_v4().to_string();
        let (mut first, welcome) = connect_welcomed(&a.app, &token_for(&user)).await;
        first.send_json(json!({"type":"chat","id":"t-1","message":"hi"})).await;
        let frames = frames_until(&mut first, "chat_end").await;
        wait_stored(&redis, &prefix, welcome["stream_id"].as_str().unwrap(), 3).await;
        drop(first);
        let (mut on_a, _) = connect_welcomed(&a.app, &token_for(&user)).await;
        let (mut on_b, _) = connect_welcomed(&b.app, &token_for(&user)).await;
        let message = resume(&welcome, max_seq(&frames));
        tokio::join!(on_a.send_json(message.clone()), on_b.send_json(message));
        let (outcome_a, outcome_b) = tokio::join!(resume_outcome(&mut on_a), resume_outcome(&mut on_b));
        let holding_a = outcome_a == "resumed" && !closes_within(&mut on_a, Duration::from_millis(1_500)).await;
        let holding_b = outcome_b == "resumed" && !closes_within(&mut on_b, Duration::from_millis(300)).await;
        assert!(!(holding_a && holding_b), "round {round}: both sockets hold the stream ({outcome_a}, {outcome_b})");
        assert!(holding_a || holding_b || outcome_a != "resumed" || outcome_b != "resumed", "round {round}: {outcome_a}, {outcome_b}");
    }
}

/// The node a client resumed on loses its Redis link while the node still answering the turn
/// forwards the rest of it (pub/sub: lost for good). The client must never be left with a silent
/// partial answer: it gets the whole answer or a retryable error, and the re-send gets the whole
/// stored answer.
#[tokio::test]
async fn a_redis_cut_on_the_resuming_node_never_leaves_a_silent_partial_answer() {
    use crate::common::db::{Backend, test_db};
    use crate::common::proxy::FlakyProxy;
    let redis = redis().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let on_db = |s: &mut Settings| s.database_url = db.url.clone();
    let deltas: Vec<&'static str> = (0..30).map(|i| &*Box::leak(format!("d{i} ").into_boxed_str())).collect();
    let full: &'static str = Box::leak(deltas.concat().into_boxed_str());
    let (model, gate) = StreamingModel::gated(deltas, full);
    let a = spawn_node("node-a", &redis_url(), &prefix, on_db, with_llm(model.clone())).await;
    let redis_addr: std::net::SocketAddr = redis_url().trim_start_matches("redis://").trim_end_matches('/').parse().expect("host:port");
    let proxy = FlakyProxy::start(redis_addr).await;
    let via_proxy = format!("redis://{}", proxy.addr);
    let b = spawn_node("node-b", &via_proxy, &prefix, on_db, with_llm(model)).await;
    wait_subscribed(&redis, &prefix, "node-a").await;
    wait_subscribed(&redis, &prefix, "node-b").await;
    let (mut client, welcome) = connect_welcomed(&a.app, &token_for(USER)).await;
    client.send_json(json!({"type":"chat","id":"p-1","message":"tell me a long story"})).await;
    let seen = frames_until(&mut client, "chat_delta").await;
    wait_stored(&redis, &prefix, welcome["stream_id"].as_str().unwrap(), 2).await;
    drop(client);
    let (mut back, _) = connect_welcomed(&b.app, &token_for(USER)).await;
    back.send_json(resume(&welcome, max_seq(&seen))).await;
    frames_until(&mut back, "resumed").await;

    // B's Redis link goes silent while A streams the rest and ends the turn; then it comes back.
    proxy.go_silent();
    gate.add_permits(1);
    // Why a fixed pause: A's rest of the answer must be forwarded (and lost) while B hears nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.reset();
    proxy.forward_again();

    let mut deltas_seen = String::new();
    let outcome = loop {
        let frame = back.recv_non_ping().await;
        match frame["type"].as_str() {
            Some("chat_delta") => deltas_seen.push_str(frame["delta"].as_str().unwrap()),
            Some("chat_end" | "error") => break frame,
            _ => {}
        }
    };
    if outcome["type"] == "chat_end" {
        assert_eq!(outcome["message"], full, "a whole answer");
        assert_eq!(format!("d0 {deltas_seen}"), full, "every delta, none missing");
        return;
    }
    assert_eq!((outcome["id"].as_str(), outcome["retryable"].as_bool()), (Some("p-1"), Some(true)), "{outcome}");
    // The re-send gets the whole stored answer.
    let answer = loop {
        back.send_json(json!({"type":"chat","id":"p-1","message":"tell me a long story"})).await;
        let frames = loop {
            let frame = back.recv_non_ping().await;
            if frame["type"] == "chat_end" || (frame["type"] == "error" && frame["id"] == "p-1") {
                break frame;
            }
        };
        if frames["type"] == "chat_end" {
            break frames;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["message"], full);
}
