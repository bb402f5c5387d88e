//! The baseline: a bare tokio-tungstenite server with default configuration. After the handshake
//! it sends a `connection` frame (so clients wait for the same thing as on the gateway) and
//! answers every JSON `ping` with a `pong` carrying the same timestamp. No auth, no actors, no
//! storage: what any Rust WebSocket server costs, to put the gateway's figures beside. With
//! `--raw` it is a plain echo of text and binary messages (default tokio-tungstenite settings),
//! the comparison scripts/autobahn.sh runs the Autobahn testsuite against.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::accept_async;
use tokio_tungstenite::tungstenite::Message;

/// Serves forever on `listen`; logs `echo-server listening on ADDR` to stderr once bound.
pub(crate) async fn serve(listen: &str, raw: bool) -> Result<(), String> {
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("echo-server listening on {address}");
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| format!("accept: {e}"))?;
        if raw {
            tokio::spawn(echo_socket(stream));
        } else {
            tokio::spawn(serve_socket(stream));
        }
    }
}

/// Echoes text and binary messages; tungstenite answers pings and close frames itself (the
/// close reply goes out on the read after the close).
async fn echo_socket(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut socket) = accept_async(stream).await else { return };
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}

async fn serve_socket(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut socket) = accept_async(stream).await else { return };
    let welcome = json!({"type": "connection", "status": "connected"}).to_string();
    if socket.send(Message::Text(welcome.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        if frame["type"] == "ping" {
            let pong = json!({"type": "pong", "timestamp": frame["timestamp"]}).to_string();
            if socket.send(Message::Text(pong.into())).await.is_err() {
                return;
            }
        }
    }
}
