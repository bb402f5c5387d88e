//! Server → client frames of the v2 dialect. Every frame carries `seq` (strictly increasing per
//! stream) so a reconnecting client can `resume`; `SeqFrame` pairs a `V2Frame` with its `seq`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ErrorCode, UiAction, V2_SUBPROTOCOL};

/// The v2 welcome, sent once after authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Welcome {
    /// Always `pam.v2`.
    pub protocol: String,
    /// This socket's id (also in the server's logs).
    pub connection_id: String,
    /// The resumable stream of server frames (server-chosen); `resume` names it after a
    /// reconnect. Not the conversation: that is a chat's `session_id`.
    pub stream_id: String,
    /// Changes whenever the stored frames of streams were lost (e.g. the store restarted): a
    /// `resume` naming another epoch fails with `epoch_changed`.
    pub epoch: String,
    /// How often the server pings (`PAM_PING_INTERVAL_MS`).
    pub heartbeat_ms: u64,
    /// How long a stream stays resumable after its socket went away, in milliseconds.
    pub resume_window_ms: u64,
}

impl Welcome {
    /// A welcome for `pam.v2`.
    pub fn new(
        connection_id: impl Into<String>,
        stream_id: impl Into<String>,
        epoch: impl Into<String>,
        heartbeat_ms: u64,
        resume_window_ms: u64,
    ) -> Self {
        Welcome {
            protocol: V2_SUBPROTOCOL.into(),
            connection_id: connection_id.into(),
            stream_id: stream_id.into(),
            epoch: epoch.into(),
            heartbeat_ms,
            resume_window_ms,
        }
    }
}

/// Why a `resume` replayed nothing (`resume_failed.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResumeFailure {
    /// No such stream for this user: never existed, expired, or another user's (indistinguishable).
    UnknownStream,
    /// The frames after `last_seq` are no longer kept.
    TooOld,
    /// `last_seq` is ahead of the stream.
    Ahead,
    /// The stream's stored frames were lost since (another `epoch`).
    EpochChanged,
    /// Chats are already running on this connection; resume right after connecting.
    Busy,
}

/// The terminal frame of a v2 chat: the full text, which replaces any streamed deltas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChatEnd {
    /// The chat's `id`.
    pub id: String,
    /// The whole answer; replaces whatever the deltas said.
    pub message: String,
    /// Actions the client should take (reload a list, open the map).
    pub ui_actions: Vec<UiAction>,
    /// The model that answered (`unknown` after a cancel).
    pub model: String,
    /// Who answered: `anthropic`, `openai`, `builtin` or `cache`.
    pub source: String,
    /// True when a repeated `id` was answered from storage (no deltas, no model call).
    pub cached: bool,
    /// Time to the model's first token, when a model streamed.
    pub first_token_ms: Option<u64>,
    /// Time from reading the chat to this frame.
    pub latency_ms: u64,
}

/// A v2 error; `retryable` tells the client whether sending the same thing again may work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct V2Error {
    /// The chat the error is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What went wrong.
    pub error_code: ErrorCode,
    /// A message fit for a person.
    pub message: String,
    /// Whether sending the same thing again may work.
    pub retryable: bool,
}

impl V2Error {
    /// Whether a client may retry after an error with this code (without changing anything).
    pub fn default_retryable(code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::LlmUnavailable
                | ErrorCode::StorageUnavailable
                | ErrorCode::Internal
                | ErrorCode::Timeout
                | ErrorCode::RateLimitExceeded
                | ErrorCode::ServiceRestart
                | ErrorCode::TokenExpired
                | ErrorCode::AuthUnavailable
        )
    }
}

/// Every v2 server frame, tagged by `type` (without its `seq`, see `SeqFrame`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum V2Frame {
    /// The first frame after authentication; names the stream session to `resume` later.
    Welcome(Welcome),
    /// The chat `id` is durably stored; model work starts after this.
    Ack {
        /// The chat's `id`.
        id: String,
    },
    /// A piece of the answer, streamed as the model writes it.
    ChatDelta {
        /// The chat's `id`.
        id: String,
        /// Text to append.
        delta: String,
    },
    /// The terminal frame of a chat.
    ChatEnd(ChatEnd),
    /// An error, about one chat when `id` is set.
    Error(V2Error),
    /// The token expires in `expires_in_ms`; send `auth_refresh` before then.
    AuthExpiring {
        /// Milliseconds until the token's `exp` (then close 4401).
        expires_in_ms: u64,
    },
    /// A `resume` replayed `replayed` frames (each with its original `seq`) and the connection
    /// goes on with that stream. Not itself replayed.
    Resumed {
        /// The resumed stream.
        stream_id: String,
        /// How many frames were replayed.
        replayed: u64,
    },
    /// `resume` could not replay: the connection goes on with the fresh stream named here.
    ResumeFailed {
        /// The fresh stream the connection goes on with.
        stream_id: String,
        /// Why nothing was replayed.
        reason: ResumeFailure,
    },
    /// Keepalive every `heartbeat_ms`; answer with a `pong` echoing `timestamp`.
    Ping {
        /// Server time in Unix milliseconds.
        timestamp: i64,
    },
    /// The answer to a client `ping`.
    Pong {
        /// The client ping's `timestamp`, verbatim (server time in ms when it sent none).
        timestamp: Value,
    },
    /// A server push: a timer or alarm fired (the legacy `timer_expired` fields, numbered).
    TimerExpired(crate::push::TimerExpired),
    /// A server push: an alert the server raised on its own (the legacy fields, numbered).
    ProactiveAlert(crate::push::ProactiveAlert),
}

impl From<crate::push::PushFrame> for V2Frame {
    fn from(push: crate::push::PushFrame) -> Self {
        match push {
            crate::push::PushFrame::TimerExpired(timer) => V2Frame::TimerExpired(timer),
            crate::push::PushFrame::ProactiveAlert(alert) => V2Frame::ProactiveAlert(alert),
        }
    }
}

impl V2Frame {
    /// An error frame with the code's default `retryable`.
    pub fn error(id: Option<String>, error_code: ErrorCode, message: impl Into<String>) -> Self {
        V2Frame::Error(V2Error { id, error_code, message: message.into(), retryable: V2Error::default_retryable(error_code) })
    }

    /// The `type` tag, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            V2Frame::Welcome(_) => "welcome",
            V2Frame::Ack { .. } => "ack",
            V2Frame::ChatDelta { .. } => "chat_delta",
            V2Frame::ChatEnd(_) => "chat_end",
            V2Frame::Error(_) => "error",
            V2Frame::AuthExpiring { .. } => "auth_expiring",
            V2Frame::Resumed { .. } => "resumed",
            V2Frame::ResumeFailed { .. } => "resume_failed",
            V2Frame::Ping { .. } => "ping",
            V2Frame::Pong { .. } => "pong",
            V2Frame::TimerExpired(_) => "timer_expired",
            V2Frame::ProactiveAlert(_) => "proactive_alert",
        }
    }

    /// Whether a `resume` should replay this frame. Welcome, keepalive and resume outcomes are
    /// about one socket, not the conversation.
    pub fn is_replayable(&self) -> bool {
        !matches!(
            self,
            V2Frame::Welcome(_) | V2Frame::Ping { .. } | V2Frame::Pong { .. } | V2Frame::Resumed { .. } | V2Frame::ResumeFailed { .. }
        )
    }
}

/// A v2 frame with its `seq`, as sent on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SeqFrame {
    /// Strictly increasing per stream session; `resume` names the last one seen.
    pub seq: u64,
    /// The frame itself (its fields sit beside `seq`).
    #[serde(flatten)]
    pub frame: V2Frame,
}

impl SeqFrame {
    /// JSON text; frames are plain data, so this cannot fail.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(r#"{{"type":"error","seq":{},"error_code":"INTERNAL","message":"encoding failed","retryable":true}}"#, self.seq)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(seq: u64, frame: V2Frame) -> Value {
        let sequenced = SeqFrame { seq, frame };
        let text = sequenced.to_text();
        let back: SeqFrame = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sequenced);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["seq"], seq, "{value}");
        value
    }

    #[test]
    fn welcome_names_the_protocol_stream_and_epoch() {
        let v = round_trip(1, V2Frame::Welcome(Welcome::new("c1", "s1", "e1", 25_000, 300_000)));
        let expected = json!({"type":"welcome","protocol":"pam.v2","connection_id":"c1","stream_id":"s1","epoch":"e1",
            "heartbeat_ms":25000,"resume_window_ms":300000,"seq":1});
        assert_eq!(v, expected);
    }

    #[test]
    fn ack_and_delta_carry_the_client_id() {
        assert_eq!(round_trip(2, V2Frame::Ack { id: "m1".into() }), json!({"type":"ack","id":"m1","seq":2}));
        assert_eq!(
            round_trip(3, V2Frame::ChatDelta { id: "m1".into(), delta: "Hel".into() }),
            json!({"type":"chat_delta","id":"m1","delta":"Hel","seq":3})
        );
    }

    #[test]
    fn chat_end_has_every_field_of_the_contract() {
        let v = round_trip(
            4,
            V2Frame::ChatEnd(ChatEnd {
                id: "m1".into(),
                message: "Hello".into(),
                ui_actions: vec![],
                model: "m".into(),
                source: "builtin".into(),
                cached: false,
                first_token_ms: None,
                latency_ms: 7,
            }),
        );
        for key in ["id", "seq", "message", "ui_actions", "model", "source", "cached", "first_token_ms", "latency_ms"] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["type"], "chat_end");
    }

    #[test]
    fn errors_always_say_whether_to_retry() {
        let v = round_trip(5, V2Frame::error(Some("m1".into()), ErrorCode::LlmUnavailable, "down"));
        assert_eq!(v, json!({"type":"error","id":"m1","seq":5,"error_code":"LLM_UNAVAILABLE","message":"down","retryable":true}));
        let v = round_trip(6, V2Frame::error(None, ErrorCode::UnknownType, "nope"));
        assert_eq!(v["retryable"], false);
        assert!(v.get("id").is_none());
    }

    #[test]
    fn auth_expiring_resume_failed_ping_and_pong_round_trip() {
        assert_eq!(
            round_trip(7, V2Frame::AuthExpiring { expires_in_ms: 60_000 }),
            json!({"type":"auth_expiring","expires_in_ms":60000,"seq":7})
        );
        let v = round_trip(8, V2Frame::ResumeFailed { stream_id: "s2".into(), reason: ResumeFailure::EpochChanged });
        assert_eq!(v["type"], "resume_failed");
        assert_eq!(v["reason"], "epoch_changed");
        let v = round_trip(9, V2Frame::Resumed { stream_id: "s2".into(), replayed: 3 });
        assert_eq!(v, serde_json::json!({"type":"resumed","stream_id":"s2","replayed":3,"seq":9}));
        assert_eq!(round_trip(9, V2Frame::Ping { timestamp: 5 }), json!({"type":"ping","timestamp":5,"seq":9}));
        assert_eq!(round_trip(10, V2Frame::Pong { timestamp: json!(1) }), json!({"type":"pong","timestamp":1,"seq":10}));
    }

    #[test]
    fn only_conversation_frames_are_replayable() {
        assert!(V2Frame::Ack { id: "a".into() }.is_replayable());
        assert!(!V2Frame::Ping { timestamp: 1 }.is_replayable());
        assert!(!V2Frame::Welcome(Welcome::new("c", "s", "e", 1, 1)).is_replayable());
        assert!(!V2Frame::Resumed { stream_id: "s".into(), replayed: 0 }.is_replayable());
    }
}
