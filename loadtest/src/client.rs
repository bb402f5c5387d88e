//! One virtual user's socket: TCP connect and WebSocket handshake timed apart (a SYN lost to a
//! full accept backlog shows as a ≥ 1 s TCP connect), the welcome frame awaited, and server JSON
//! pings answered with pongs the way the browser client does.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async};

use crate::auth::{Tokens, host_port, user_id};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A TCP connect this slow went through a SYN retransmit (the first retry fires after 1 s).
pub const SYN_RETRY_STALL: Duration = Duration::from_secs(1);
/// How long a connect + auth may take before it counts as failed.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// A connected, authenticated socket and how long each step took.
pub struct Session {
    pub socket: Socket,
    /// TCP connect.
    pub tcp: Duration,
    /// TCP connect + handshake + welcome frame: k6's `ws_connecting` plus auth.
    pub connecting: Duration,
}

/// Connects virtual user `n` to `base` (`ws://host:port`) and waits for the welcome frame.
pub async fn connect(base: &str, tokens: &Tokens, n: usize) -> Result<Session, String> {
    connect_as(base, tokens, n, false).await
}

/// [`connect`], or with `v2` on `/api/v2/pam/ws?token=` up to its `welcome` (a session stream,
/// which also goes to Redis when the server has `REDIS_URL`).
pub async fn connect_as(base: &str, tokens: &Tokens, n: usize, v2: bool) -> Result<Session, String> {
    let user = user_id(n);
    let token = tokens.token_for(&user).await?;
    let base = base.trim_end_matches('/');
    let (url, ready) = match v2 {
        false => (format!("{base}/api/v1/pam/ws/{user}?token={token}"), "connection"),
        true => (format!("{base}/api/v2/pam/ws?token={token}"), "welcome"),
    };
    connect_url(&url, ready).await.map(|(session, _)| session)
}

/// Connects to `url` (token in it): TCP connect (no Nagle), WebSocket handshake, then frames up to
/// the first of type `ready` (legacy `connection`, v2 `welcome`), which is returned with the
/// session; within [`CONNECT_DEADLINE`].
pub async fn connect_url(url: &str, ready: &str) -> Result<(Session, Value), String> {
    tokio::time::timeout(CONNECT_DEADLINE, connect_url_now(url, ready)).await.unwrap_or_else(|_| Err("connect + auth timed out".into()))
}

async fn connect_url_now(url: &str, ready: &str) -> Result<(Session, Value), String> {
    let started = Instant::now();
    let stream = TcpStream::connect(host_port(url)).await.map_err(|e| format!("tcp connect: {e}"))?;
    let tcp = started.elapsed();
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut socket, _) = client_async(url, MaybeTlsStream::Plain(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    loop {
        match next_json(&mut socket).await? {
            frame if frame["type"] == ready => return Ok((Session { socket, tcp, connecting: started.elapsed() }, frame)),
            frame if frame["type"] == "error" => return Err(format!("refused: {}", frame["error_code"])),
            _ => {}
        }
    }
}

/// How reading the next frame failed.
#[derive(Debug)]
pub enum WsError {
    /// The socket ended: a close frame's code, or `None` when the connection dropped without one
    /// (1006 to a browser).
    Ended { code: Option<u16>, detail: String },
    /// Anything else (invalid JSON, a failed pong).
    Other(String),
}

impl WsError {
    /// The close code, 1006 for a dropped connection; `None` for a failure that is no ending.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            WsError::Ended { code, .. } => Some(code.unwrap_or(1006)),
            WsError::Other(_) => None,
        }
    }
}

impl From<WsError> for String {
    fn from(error: WsError) -> String {
        match error {
            WsError::Ended { detail, .. } | WsError::Other(detail) => detail,
        }
    }
}

/// The next text frame as JSON; server JSON pings are answered here and never returned.
pub async fn next_json(socket: &mut Socket) -> Result<Value, String> {
    next_frame(socket).await.map_err(String::from)
}

/// [`next_json`] with the way the socket ended kept apart.
pub async fn next_frame(socket: &mut Socket) -> Result<Value, WsError> {
    read_frame(socket, false).await
}

/// The next text frame as JSON, pings included (a v2 ping carries a `seq` too); each ping is
/// answered with its pong before it is returned.
pub async fn next_v2(socket: &mut Socket) -> Result<Value, WsError> {
    read_frame(socket, true).await
}

/// The next text frame as JSON; a JSON `ping` is answered with its pong, then returned when
/// `keep_pings` and skipped otherwise.
async fn read_frame(socket: &mut Socket, keep_pings: bool) -> Result<Value, WsError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).map_err(|e| WsError::Other(format!("server sent invalid JSON: {e}")))?;
                if frame["type"] == "ping" {
                    let pong = json!({"type": "pong", "timestamp": frame["timestamp"]});
                    if let Err(e) = socket.send(Message::Text(pong.to_string().into())).await {
                        return Err(WsError::Ended { code: None, detail: format!("send pong: {e}") });
                    }
                    if !keep_pings {
                        continue;
                    }
                }
                return Ok(frame);
            }
            Some(Ok(Message::Close(close))) => {
                let code = close.as_ref().map(|c| u16::from(c.code));
                return Err(WsError::Ended { code: code.or(Some(1005)), detail: format!("closed by server: {close:?}") });
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(WsError::Ended { code: None, detail: format!("read: {error}") }),
            None => return Err(WsError::Ended { code: None, detail: "connection ended".into() }),
        }
    }
}

/// Sends one JSON frame.
pub async fn send_json(socket: &mut Socket, frame: &Value) -> Result<(), String> {
    socket.send(Message::Text(frame.to_string().into())).await.map_err(|e| format!("send: {e}"))
}

/// Keeps a socket alive (answering pings) until `stop` fires, then closes it.
pub async fn hold(mut socket: Socket, mut stop: tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                return true;
            }
            frame = next_json(&mut socket) => if frame.is_err() { return false },
        }
    }
}
