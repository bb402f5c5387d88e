//! The nodes' model: a deterministic OpenAI-compatible `/v1/chat/completions` SSE server in this
//! process. It answers the last user message's marker (`chaos:<marker>`) with [`answer`], streamed
//! in several deltas a few tens of ms apart, so a fault lands mid-answer and a partial answer
//! (deltas that do not add up, a stored text that differs) shows.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The words after the marker, one delta each.
const WORDS: [&str; 8] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];

/// The whole answer to the chat whose message carries `marker`.
pub(super) fn answer(marker: &str) -> String {
    format!("Answer {marker}: {}.", WORDS.join(" "))
}

/// The message a chat with `marker` sends.
pub(super) fn message(marker: &str) -> String {
    format!("chaos:{marker} how far is the next campground with water?")
}

/// The deltas of [`answer`].
fn deltas(marker: &str) -> Vec<String> {
    let mut out = vec![format!("Answer {marker}:")];
    out.extend(WORDS.iter().enumerate().map(|(i, w)| if i + 1 == WORDS.len() { format!(" {w}.") } else { format!(" {w}") }));
    out
}

/// Starts the model on a free loopback port; its base URL (for `OPENAI_BASE_URL`).
pub(super) async fn start(pace: Duration) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("model: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, pace));
        }
    });
    Ok((format!("http://{addr}"), task))
}

/// One HTTP/1.1 request, answered with a close-delimited SSE body.
async fn serve(mut stream: TcpStream, pace: Duration) {
    let _ = stream.set_nodelay(true);
    let Some(body) = read_request(&mut stream).await else { return };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("chaos").to_string();
    let last_user = request["messages"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user")).map(|m| &m["content"]);
    let marker =
        last_user.and_then(Value::as_str).and_then(|text| text.split("chaos:").nth(1)).and_then(|rest| rest.split_whitespace().next());
    let pieces = deltas(marker.unwrap_or("unmarked"));
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = |delta: Value, finish: Value| {
        let data = json!({"id": "chaos", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {data}\n\n")
    };
    if stream.write_all(chunk(json!({"role": "assistant", "content": ""}), Value::Null).as_bytes()).await.is_err() {
        return;
    }
    for piece in pieces {
        tokio::time::sleep(pace).await;
        if stream.write_all(chunk(json!({"content": piece}), Value::Null).as_bytes()).await.is_err() {
            return;
        }
    }
    let end = format!("{}data: [DONE]\n\n", chunk(json!({}), json!("stop")));
    let _ = stream.write_all(end.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads a request head and its `content-length` body.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(buffer[head_end..head_end + length].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deltas_add_up_to_the_answer() {
        assert_eq!(deltas("cx1-v2-3").concat(), answer("cx1-v2-3"));
        assert!(message("cx1-v2-3").contains("chaos:cx1-v2-3 "));
    }
}
