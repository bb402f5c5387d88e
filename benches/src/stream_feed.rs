//! The token feed both servers of `stream` share: a script carried in the chat message
//! (`stream tokens=300 rate=30 delay_ms=0`), tokens stamped with their emit time on one
//! process-wide monotonic clock (`t{index}@{micros} `; pam-loadtest's `clock::now_micros`), the
//! paced generator that emits them into a bounded channel, the `LlmProvider` fake that hands that
//! channel's tokens to the in-process gateway, and the bare tokio-tungstenite push server that
//! sends the same tokens as `chat_delta`-shaped frames. Client, gateway and bare server run in one
//! process, so the client reads latency as `now - stamp` on the same clock.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use pam_loadtest::clock::now_micros;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::accept_async;
use tokio_tungstenite::tungstenite::Message;

/// Tokens buffered between the generator and the bare server's socket (the gateway's own
/// provider → stream queue is 64 deep too).
const TOKEN_QUEUE: usize = 64;

/// What one chat asks the fake model for: how many tokens, how fast, after what first-token delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Script {
    pub(crate) tokens: u32,
    pub(crate) rate: f64,
    pub(crate) first_delay: Duration,
}

impl Script {
    /// The chat message that carries this script.
    pub(crate) fn message(&self) -> String {
        format!("stream tokens={} rate={} delay_ms={}", self.tokens, self.rate, self.first_delay.as_millis())
    }

    /// Reads a script back from a chat message; `None` for anything else.
    pub(crate) fn parse(message: &str) -> Option<Script> {
        let rest = message.trim().strip_prefix("stream ")?;
        let (mut tokens, mut rate, mut delay_ms) = (None, None, None);
        for pair in rest.split_whitespace() {
            match pair.split_once('=')? {
                ("tokens", v) => tokens = v.parse().ok(),
                ("rate", v) => rate = v.parse::<f64>().ok().filter(|r| r.is_finite() && *r > 0.0),
                ("delay_ms", v) => delay_ms = v.parse().ok(),
                _ => return None,
            }
        }
        Some(Script { tokens: tokens?, rate: rate?, first_delay: Duration::from_millis(delay_ms?) })
    }

    /// How long the tokens take once the first is out.
    pub(crate) fn duration(&self) -> Duration {
        self.first_delay + Duration::from_secs_f64(f64::from(self.tokens) / self.rate)
    }
}

/// Token `index`'s text, stamped with its emit time.
pub(crate) fn stamp(index: u32, micros: u64) -> String {
    format!("t{index}@{micros} ")
}

/// The emit stamps in a delta (several when a server joined tokens into one frame).
pub(crate) fn stamps(delta: &str) -> impl Iterator<Item = u64> + '_ {
    delta.split_whitespace().filter_map(|token| token.split_once('@')).filter_map(|(_, micros)| micros.parse().ok())
}

/// Emits the script's tokens into `out` at its rate, each stamped just before it is queued (so
/// time spent waiting on a full queue counts as latency). Returns the full text and the time
/// to the first token; stops early when `out` closes.
pub(crate) async fn emit(script: Script, out: mpsc::Sender<String>) -> (String, Option<Duration>) {
    let started = tokio::time::Instant::now();
    tokio::time::sleep(script.first_delay).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / script.rate));
    // Catch up after a late tick, so the offered load stays at the rate on a busy machine.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let (mut text, mut first) = (String::new(), None);
    for index in 0..script.tokens {
        tick.tick().await;
        let token = stamp(index, now_micros());
        first.get_or_insert_with(|| started.elapsed());
        text.push_str(&token);
        if out.send(token).await.is_err() {
            break;
        }
    }
    (text, first)
}

/// The gateway's model: plays the script in the chat message through `emit`.
pub(crate) struct PacedModel;

/// Provider and model name in `chat_end`.
const PACED_MODEL: &str = "paced-fake";

impl LlmProvider for PacedModel {
    fn name(&self) -> &str {
        PACED_MODEL
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(async move {
            let script = Script::parse(&request.message).ok_or_else(|| LlmError::Malformed("not a stream script".into()))?;
            let (text, first_token) = emit(script, deltas).await;
            Ok(LlmReply { first_token, ..LlmReply::new(text, PACED_MODEL, PACED_MODEL) })
        })
    }
}

/// Starts the bare push server on 127.0.0.1:0; returns its address.
pub(crate) async fn spawn_push_server() -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(push_socket(stream));
        }
    });
    Ok(address)
}

/// One bare socket: `welcome`, then for each v2-shaped `chat` the script's tokens as
/// `chat_delta` frames and a `chat_end`. No auth, storage or actors.
async fn push_socket(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut socket) = accept_async(stream).await else { return };
    let mut seq = 1u64;
    let welcome = json!({"type": "welcome", "protocol": "pam.v2", "seq": seq});
    if socket.send(Message::Text(welcome.to_string().into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        let Some(script) = frame["message"].as_str().and_then(Script::parse).filter(|_| frame["type"] == "chat") else { continue };
        let id = frame["id"].clone();
        let (tokens, mut queued) = mpsc::channel(TOKEN_QUEUE);
        let generator = tokio::spawn(emit(script, tokens));
        while let Some(delta) = queued.recv().await {
            seq += 1;
            let frame = json!({"type": "chat_delta", "id": id, "seq": seq, "delta": delta});
            if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                generator.abort();
                return;
            }
        }
        let (full, _) = generator.await.unwrap_or_default();
        seq += 1;
        let end = json!({"type": "chat_end", "id": id, "seq": seq, "message": full, "model": PACED_MODEL, "source": "bare"});
        if socket.send(Message::Text(end.to_string().into())).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_survives_its_chat_message() {
        let script = Script { tokens: 300, rate: 30.0, first_delay: Duration::from_millis(200) };
        assert_eq!(script.message(), "stream tokens=300 rate=30 delay_ms=200");
        assert_eq!(Script::parse(&script.message()), Some(script));
        assert_eq!(script.duration(), Duration::from_millis(10_200));
    }

    #[test]
    fn other_messages_and_bad_scripts_are_not_scripts() {
        for message in ["How much budget is left?", "stream tokens=3 rate=0 delay_ms=0", "stream tokens=3 rate=30", "stream x=1"] {
            assert_eq!(Script::parse(message), None, "{message}");
        }
    }

    #[test]
    fn every_stamp_in_a_delta_is_read_back() {
        let joined = format!("{}{}", stamp(0, 17), stamp(1, 33_366));
        assert_eq!(stamps(&joined).collect::<Vec<_>>(), vec![17, 33_366]);
        assert_eq!(stamps("plain words").count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_come_at_the_rate_after_the_first_token_delay() {
        let script = Script { tokens: 4, rate: 10.0, first_delay: Duration::from_millis(200) };
        let (out, mut received) = mpsc::channel(8);
        let started = tokio::time::Instant::now();
        let emitter = tokio::spawn(emit(script, out));
        let mut arrivals = Vec::new();
        while let Some(token) = received.recv().await {
            arrivals.push((started.elapsed().as_millis(), token));
        }
        let (text, first) = emitter.await.unwrap();
        let times: Vec<u128> = arrivals.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![200, 300, 400, 500]);
        assert_eq!(first, Some(Duration::from_millis(200)));
        assert_eq!(text, arrivals.iter().map(|(_, t)| t.as_str()).collect::<String>());
        assert_eq!(stamps(&text).count(), 4);
    }
}
