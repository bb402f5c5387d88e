//! v2 test helpers: connecting with the `pam.v2` subprotocol (and opening and closing many
//! sockets), `resume` frames, reading frames by type, and fake models that stream deltas, count
//! calls, fall back mid-stream or wait for a gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{TestApp, WsClient, sign_hs256, token_for, unix_now, user_claims};

/// `/api/v2/pam/ws`, with `?token=` when given.
pub fn v2_url(app: &TestApp, token: Option<&str>) -> String {
    match token {
        Some(token) => format!("ws://{}/api/v2/pam/ws?token={token}", app.addr),
        None => format!("ws://{}/api/v2/pam/ws", app.addr),
    }
}

/// Connects offering `pam.v2`; returns the client and the subprotocol the server echoed.
pub async fn connect_v2(url: &str) -> (WsClient, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("pam.v2"));
    let (ws, response) = connect_async(request).await.expect("the upgrade succeeds");
    let protocol = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (WsClient { ws }, protocol)
}

/// Connects to `/api/v2/pam/ws` with a token and returns the client and its welcome.
pub async fn connect_welcomed(app: &TestApp, token: &str) -> (WsClient, Value) {
    let (mut client, _) = connect_v2(&v2_url(app, Some(token))).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

/// A token for `user` that expires `secs` from now.
pub fn token_expiring_in(user: &str, secs: u64) -> String {
    let mut claims = user_claims(user);
    claims["exp"] = json!(unix_now() + secs);
    sign_hs256(&claims, super::TEST_SECRET)
}

/// Opens `count` v2 sockets of `user` one after the other, each closed (handshake completed)
/// before the next; returns their welcomes.
pub async fn open_and_close_v2(app: &TestApp, user: &str, count: usize) -> Vec<Value> {
    let token = token_for(user);
    let mut welcomes = Vec::with_capacity(count);
    for _ in 0..count {
        let (mut client, welcome) = connect_welcomed(app, &token).await;
        client.ws.close(None).await.expect("the close is sent");
        while futures_util::StreamExt::next(&mut client.ws).await.is_some() {}
        welcomes.push(welcome);
    }
    welcomes
}

pub fn resume_from(welcome: &Value, last_seq: u64) -> Value {
    json!({"type":"resume","stream_id":welcome["stream_id"],"epoch":welcome["epoch"],"last_seq":last_seq})
}

/// Every frame after a `resume` up to and including its outcome, `resumed` or `resume_failed`
/// (server pings left out).
pub async fn resume_outcome(client: &mut WsClient) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_non_ping().await;
        let done = frame["type"] == "resumed" || frame["type"] == "resume_failed";
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// Every frame up to and including the first of type `kind` (server pings included).
pub async fn frames_until(client: &mut WsClient, kind: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_json().await;
        let done = frame["type"] == kind;
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// The frames' `seq`s, checked to be strictly increasing.
pub fn assert_increasing_seq(frames: &[Value]) -> Vec<u64> {
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {f}"))).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq not strictly increasing: {seqs:?} in {frames:?}");
    seqs
}

/// The concatenated `delta`s of the `chat_delta` frames.
pub fn joined_deltas(frames: &[Value]) -> String {
    frames.iter().filter(|f| f["type"] == "chat_delta").map(|f| f["delta"].as_str().unwrap().to_string()).collect()
}

/// Streams `deltas`, then answers with `full` (which differs from the deltas when it models a
/// mid-stream fallback). Waits for a permit of `gate` after the first delta, when given.
pub struct StreamingModel {
    pub deltas: Vec<&'static str>,
    pub full: &'static str,
    pub calls: AtomicUsize,
    pub gate: Option<Arc<Semaphore>>,
}

impl StreamingModel {
    pub fn new(deltas: Vec<&'static str>, full: &'static str) -> Arc<Self> {
        Arc::new(StreamingModel { deltas, full, calls: AtomicUsize::new(0), gate: None })
    }

    /// Holds every answer after its first delta until the test adds a permit.
    pub fn gated(deltas: Vec<&'static str>, full: &'static str) -> (Arc<Self>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (Arc::new(StreamingModel { deltas, full, calls: AtomicUsize::new(0), gate: Some(gate.clone()) }), gate)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl LlmProvider for StreamingModel {
    fn name(&self) -> &str {
        "streaming-fake"
    }

    fn generate<'a>(&'a self, _request: &'a LlmRequest, deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            for (n, delta) in self.deltas.iter().enumerate() {
                // A closed channel (legacy) means nobody reads deltas: skip them, as real providers do.
                let _ = deltas.send(delta.to_string()).await;
                if let (0, Some(gate)) = (n, &self.gate) {
                    gate.acquire().await.unwrap().forget();
                }
            }
            Ok(LlmReply::new(self.full, "fake-1", "streaming-fake"))
        })
    }
}
