//! Server → client frames. In legacy, only the terminal `chat_response` and `error` frames may
//! carry `message`/`content`/`response`, because today's client takes the first such frame as the
//! whole answer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ErrorCode;

/// A client-side action the answer asks for (reload a list, open the map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UiAction {
    /// `reload_calendar` | `reload_expenses` | `reload_trips` | `open_map`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entity the action is about (e.g. the event just created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Its kind, e.g. `calendar_event`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    /// Its title, for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_title: Option<String>,
    /// Anything else the action carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// The legacy welcome frame, sent once after authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConnectionFrame {
    /// Always `connected`.
    pub status: String,
    /// A greeting for people. Deliberately not in `message`/`content`/`response`: today's client
    /// sends its queued chats on open, before this frame, and takes the first frame with a truthy
    /// one of those keys as the pending chat's answer (every later answer would be one behind).
    pub greeting: String,
    /// Server time (RFC 3339).
    pub timestamp: String,
    /// This socket's id (also in the server's logs).
    pub connection_id: String,
    /// Always `enabled`.
    pub profile_integration: String,
}

/// The one terminal frame of a legacy chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChatResponse {
    /// The whole answer (an apology when `error` is true).
    pub message: String,
    /// The same text as `message`.
    pub content: String,
    /// Actions the client should take (reload a list, open the map).
    pub ui_actions: Vec<UiAction>,
    /// The conversation the chat belongs to.
    pub session_id: String,
    /// True when the turn failed; `error_code` says why.
    pub error: bool,
    /// Why the turn failed (only with `error: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// Who answered: `anthropic`, `openai`, `builtin` or `cache`.
    pub source: String,
    /// The model that answered.
    pub model: String,
    /// Time from reading the chat to this frame.
    pub latency_ms: u64,
    /// Server time (RFC 3339).
    pub timestamp: String,
}

/// A protocol error; precedes every close the server starts (except 1000).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorFrame {
    /// What went wrong.
    pub error_code: ErrorCode,
    /// A message fit for a person.
    pub message: String,
    /// The chat the error is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether sending the same thing again may work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

/// Every frame the server sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame after authentication.
    Connection(ConnectionFrame),
    /// The one terminal frame of a chat.
    ChatResponse(ChatResponse),
    /// A protocol error; the socket stays open unless a close follows.
    Error(ErrorFrame),
    /// Keepalive every `PAM_PING_INTERVAL_MS`; answer with a `pong` echoing `timestamp`.
    Ping {
        /// Server time in Unix milliseconds.
        timestamp: i64,
    },
    /// The answer to a client `ping`.
    Pong {
        /// The client ping's `timestamp`, verbatim (server time in ms when it sent none).
        timestamp: Value,
    },
}

impl ServerFrame {
    /// An `error` frame with no id.
    pub fn error(error_code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(ErrorFrame { error_code, message: message.into(), id: None, retryable: None })
    }

    /// The `type` tag, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerFrame::Connection(_) => "connection",
            ServerFrame::ChatResponse(_) => "chat_response",
            ServerFrame::Error(_) => "error",
            ServerFrame::Ping { .. } => "ping",
            ServerFrame::Pong { .. } => "pong",
        }
    }

    /// JSON text; frames are plain data, so this cannot fail.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error","error_code":"INTERNAL","message":"encoding failed"}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(frame: ServerFrame) -> Value {
        let text = frame.to_text();
        let back: ServerFrame = serde_json::from_str(&text).unwrap();
        assert_eq!(back, frame);
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn chat_response_has_the_legacy_shape() {
        let v = round_trip(ServerFrame::ChatResponse(ChatResponse {
            message: "hi".into(),
            content: "hi".into(),
            ui_actions: vec![UiAction { kind: "open_map".into(), entity_id: None, entity_type: None, entity_title: None, metadata: None }],
            session_id: "default".into(),
            error: false,
            error_code: None,
            source: "builtin".into(),
            model: "builtin".into(),
            latency_ms: 3,
            timestamp: "2026-01-01T00:00:00Z".into(),
        }));
        assert_eq!(v["type"], "chat_response");
        assert_eq!(v["ui_actions"][0], json!({"type":"open_map"}));
        assert!(v.get("error_code").is_none());
    }

    #[test]
    fn connection_error_ping_and_pong_round_trip() {
        let v = round_trip(ServerFrame::Connection(ConnectionFrame {
            status: "connected".into(),
            greeting: "hello".into(),
            timestamp: "t".into(),
            connection_id: "c".into(),
            profile_integration: "enabled".into(),
        }));
        assert_eq!(v["type"], "connection");
        assert_eq!(v["greeting"], "hello");
        for key in ["message", "content", "response"] {
            assert!(v.get(key).is_none(), "the welcome carries no {key}: today's client would take it for an answer");
        }
        let v = round_trip(ServerFrame::error(ErrorCode::UnknownType, "nope"));
        assert_eq!(v, json!({"type":"error","error_code":"UNKNOWN_TYPE","message":"nope"}));
        assert_eq!(round_trip(ServerFrame::Ping { timestamp: 5 }), json!({"type":"ping","timestamp":5}));
        assert_eq!(round_trip(ServerFrame::Pong { timestamp: json!("x") }), json!({"type":"pong","timestamp":"x"}));
    }
}
