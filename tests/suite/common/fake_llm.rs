//! A local fake model API for tests and benchmarks: speaks the Anthropic Messages SSE format on
//! `POST /v1/messages` and the OpenAI chat-completions SSE format on `POST /v1/chat/completions`,
//! scripted per test (status, delay before the first token, tokens and tokens/s, how the stream
//! ends, tool calls with their arguments streamed in pieces), answers a queue of scripts one per
//! request before falling back to the standing one, and records every request (path, headers,
//! JSON body).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How a 200 stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The format's end event (`message_stop`, `[DONE]`).
    Complete,
    /// The connection drops after the tokens, before the end event.
    CutOff,
    /// After the tokens comes an event whose data is not JSON.
    Malformed,
    /// After the tokens the connection stays open and silent.
    Hang,
    /// OpenAI format: the last token's chunk also carries `finish_reason: "stop"`, then EOF without
    /// `data: [DONE]` (what some compatible servers send). The Anthropic format ends as `Complete`.
    StopInLastChunk,
}

/// What the fake answers to every request.
#[derive(Debug, Clone)]
pub struct Script {
    /// Anything but 200 answers with that status and a JSON error body.
    pub status: u16,
    /// After the headers and the opening event, before the first token.
    pub first_token_delay: Duration,
    pub tokens: Vec<String>,
    /// `None` = all tokens at once.
    pub tokens_per_second: Option<f64>,
    pub ending: Ending,
    /// Anthropic format: an `event: ping` with an empty `data:` line before every token.
    pub empty_pings: bool,
    /// Every line ends with a bare CR instead of LF (legal SSE).
    pub bare_cr: bool,
    /// After the tokens: these tool calls, then the end (`stop_reason: tool_use` /
    /// `finish_reason: tool_calls`).
    pub tool_calls: Vec<ToolCall>,
}

/// A scripted tool call: (id, name, the argument text in the pieces it is streamed in).
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub argument_pieces: Vec<String>,
}

impl Script {
    /// Streams `text` word by word and ends properly.
    pub fn answer(text: &str) -> Self {
        Script {
            status: 200,
            first_token_delay: Duration::ZERO,
            tokens: text.split_inclusive(' ').map(str::to_string).collect(),
            tokens_per_second: None,
            ending: Ending::Complete,
            empty_pings: false,
            bare_cr: false,
            tool_calls: Vec::new(),
        }
    }

    /// Streams `text` (may be empty), then calls tool `name` with `arguments` cut in pieces of
    /// at most 7 bytes (at char boundaries).
    pub fn tool_call(text: &str, id: &str, name: &str, arguments: &str) -> Self {
        let mut pieces = Vec::new();
        let mut piece = String::new();
        for c in arguments.chars() {
            if piece.len() >= 7 {
                pieces.push(std::mem::take(&mut piece));
            }
            piece.push(c);
        }
        pieces.push(piece);
        let call = ToolCall { id: id.into(), name: name.into(), argument_pieces: pieces };
        Script { tool_calls: vec![call], ..Script::answer(text) }
    }

    /// Sends headers and the opening event, then nothing for an hour.
    pub fn stall() -> Self {
        Script { first_token_delay: Duration::from_secs(3600), ..Script::answer("never sent") }
    }

    /// Answers with this HTTP status.
    pub fn status(status: u16) -> Self {
        Script { status, ..Script::answer("") }
    }

    pub fn ending(self, ending: Ending) -> Self {
        Script { ending, ..self }
    }

    pub fn with_empty_pings(self) -> Self {
        Script { empty_pings: true, ..self }
    }

    pub fn with_bare_cr(self) -> Self {
        Script { bare_cr: true, ..self }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

struct Inner {
    script: Mutex<Script>,
    queue: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<Recorded>>,
}

/// A running fake; stops when dropped.
pub struct FakeLlm {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(script: Script) -> FakeLlm {
        let inner = Arc::new(Inner { script: Mutex::new(script), queue: Mutex::new(VecDeque::new()), requests: Mutex::new(Vec::new()) });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Like real APIs, each event goes out at once (Nagle would hold small writes ~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm { addr, inner, server }
    }

    /// The base URL to put in `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_script(&self, script: Script) {
        *self.inner.script.lock().unwrap() = script;
    }

    /// The next requests get these scripts, one each, before the standing script again.
    pub fn queue(&self, scripts: Vec<Script>) {
        self.inner.queue.lock().unwrap().extend(scripts);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    inner.requests.lock().unwrap().push(Recorded { path: path.clone(), headers, body });
    let queued = inner.queue.lock().unwrap().pop_front();
    let script = queued.unwrap_or_else(|| inner.script.lock().unwrap().clone());
    let wire = match path.as_str() {
        "/v1/messages" => Wire::Anthropic,
        "/v1/chat/completions" => Wire::OpenAi,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if script.status != 200 {
        let status = StatusCode::from_u16(script.status).unwrap();
        let error = json!({"type": "error", "error": {"type": "fake_error", "message": format!("scripted {}", script.status)}});
        return (status, axum::Json(error)).into_response();
    }
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(16);
    tokio::spawn(play(wire, model, script, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

#[derive(Clone, Copy)]
enum Wire {
    Anthropic,
    OpenAi,
}

impl Wire {
    fn opening(self, model: &str) -> String {
        match self {
            Wire::Anthropic => {
                let start = json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}});
                let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
                format!(
                    "{}{}{}",
                    event("message_start", &start),
                    event("content_block_start", &block),
                    event("ping", &json!({"type": "ping"}))
                )
            }
            Wire::OpenAi => data(&chunk(model, json!({"role": "assistant", "content": ""}), Value::Null)),
        }
    }

    fn token(self, model: &str, text: &str, last_with_stop: bool) -> String {
        match self {
            Wire::OpenAi if last_with_stop => data(&chunk(model, json!({"content": text}), json!("stop"))),
            Wire::Anthropic => event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            ),
            Wire::OpenAi => data(&chunk(model, json!({"content": text}), Value::Null)),
        }
    }

    fn closing(self, model: &str) -> String {
        match self {
            Wire::Anthropic => format!(
                "{}{}{}",
                event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})),
                event(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}})
                ),
                event("message_stop", &json!({"type": "message_stop"}))
            ),
            Wire::OpenAi => format!("{}data: [DONE]\n\n", data(&chunk(model, json!({}), json!("stop")))),
        }
    }

    /// The tool calls after the text block, then the end of the message.
    fn tool_calls(self, model: &str, calls: &[ToolCall]) -> String {
        let mut out = String::new();
        match self {
            Wire::Anthropic => {
                out.push_str(&event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
                for (i, call) in calls.iter().enumerate() {
                    let index = i + 1;
                    let block = json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}});
                    out.push_str(&event(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index, "content_block": block}),
                    ));
                    for piece in &call.argument_pieces {
                        let delta = json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}});
                        out.push_str(&event("content_block_delta", &delta));
                    }
                    out.push_str(&event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
                }
                let stop = json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}});
                out.push_str(&event("message_delta", &stop));
                out.push_str(&event("message_stop", &json!({"type": "message_stop"})));
            }
            Wire::OpenAi => {
                for (index, call) in calls.iter().enumerate() {
                    let start =
                        json!({"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}});
                    out.push_str(&data(&chunk(model, json!({"tool_calls": [start]}), Value::Null)));
                    for piece in &call.argument_pieces {
                        let more = json!({"index": index, "function": {"arguments": piece}});
                        out.push_str(&data(&chunk(model, json!({"tool_calls": [more]}), Value::Null)));
                    }
                }
                out.push_str(&data(&chunk(model, json!({}), json!("tool_calls"))));
                out.push_str("data: [DONE]\n\n");
            }
        }
        out
    }

    fn malformed(self) -> String {
        match self {
            Wire::Anthropic => "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", oops\n\n".into(),
            Wire::OpenAi => "data: {\"choices\": [oops\n\n".into(),
        }
    }
}

fn event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn chunk(model: &str, delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// Writes the scripted stream; an `Err` item makes hyper drop the connection mid-body.
async fn play(wire: Wire, model: String, script: Script, tx: mpsc::Sender<Result<String, std::io::Error>>) -> Result<(), Infallible> {
    let send = |text: String| {
        let tx = tx.clone();
        let text = if script.bare_cr { text.replace('\n', "\r") } else { text };
        async move { tx.send(Ok(text)).await.is_ok() }
    };
    if !send(wire.opening(&model)).await {
        return Ok(());
    }
    // The scripted latency of the fake model (what timeouts are tested against).
    tokio::time::sleep(script.first_token_delay).await;
    let gap = script.tokens_per_second.map(|tps| Duration::from_secs_f64(1.0 / tps));
    for (i, token) in script.tokens.iter().enumerate() {
        if let (Some(gap), true) = (gap, i > 0) {
            tokio::time::sleep(gap).await;
        }
        if matches!(wire, Wire::Anthropic) && script.empty_pings && !send("event: ping\ndata:\n\n".into()).await {
            return Ok(());
        }
        let last_with_stop = script.ending == Ending::StopInLastChunk && i + 1 == script.tokens.len();
        if !send(wire.token(&model, token, last_with_stop)).await {
            return Ok(());
        }
    }
    if !script.tool_calls.is_empty() {
        send(wire.tool_calls(&model, &script.tool_calls)).await;
        return Ok(());
    }
    match script.ending {
        Ending::StopInLastChunk if matches!(wire, Wire::OpenAi) => {}
        Ending::Complete | Ending::StopInLastChunk => {
            send(wire.closing(&model)).await;
        }
        Ending::Malformed => {
            send(wire.malformed()).await;
        }
        Ending::Hang => tx.closed().await,
        Ending::CutOff => {
            // Why a fixed pause: the tokens must be on the wire before the scripted cut-off; the fake
            // server cannot see the gateway read them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted cut-off"))).await;
        }
    }
    Ok(())
}

/// Points the gateway's Anthropic provider at `fake` (OpenAI unset).
pub fn use_anthropic(settings: &mut pam_gateway::Settings, fake: &FakeLlm) {
    settings.anthropic_api_key = Some(TEST_ANTHROPIC_KEY.into());
    settings.anthropic_base_url = fake.url();
    settings.anthropic_model = "fake-accurate".into();
    settings.anthropic_fast_model = "fake-fast".into();
}

/// Points the gateway's OpenAI-compatible provider at `fake`.
pub fn use_openai(settings: &mut pam_gateway::Settings, fake: &FakeLlm) {
    settings.openai_api_key = Some(TEST_OPENAI_KEY.into());
    settings.openai_base_url = fake.url();
    settings.openai_model = "fake-gpt".into();
    settings.openai_fast_model = "fake-gpt-mini".into();
}

pub const TEST_ANTHROPIC_KEY: &str = "sk-ant-test-0123456789abcdef";
pub const TEST_OPENAI_KEY: &str = "sk-openai-test-fedcba9876543210";

/// Sends a legacy chat and returns its `chat_response` frame.
pub async fn legacy_chat(client: &mut super::WsClient, message: &str) -> Value {
    client.send_json(json!({"type": "chat", "message": message})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    answer
}

/// The metadata of every stored assistant message of the test app's SQLite database, oldest first.
pub async fn assistant_metadata(app: &super::TestApp) -> Vec<Value> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db.0.display())).await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT metadata FROM pam_messages WHERE role = 'assistant' ORDER BY created_at").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().map(|(m,)| serde_json::from_str(&m).unwrap()).collect()
}
