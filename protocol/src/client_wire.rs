//! Client → server frames as typed wire shapes, one enum per dialect. The connection decodes
//! text with [`parse_client_frame`](crate::parse_client_frame) (precise errors, lenient where
//! today's client needs it); these types state the contract that parser implements, are what the
//! JSON Schema and AsyncAPI documents are derived from, and serialize to frames it accepts (tested
//! below), so a Rust client can build frames with them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A legacy chat. `message` (or its alias `content`) is the text; the user is always the
/// authenticated one, never `user_id` of the body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LegacyChat {
    /// The user's text (an empty or missing one is answered with `EMPTY_MESSAGE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Alias of `message`, read when `message` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Ignored: today's client sends it; the token decides the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The conversation; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,100}$")))]
    pub session_id: Option<String>,
    /// Extra context for this chat (e.g. `user_location`), merged over `init`/`context_update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// Ignored; today's client sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Value>,
}

/// A v2 chat: `id` is the idempotency key (a repeated id is answered from storage, never twice).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct V2Chat {
    /// The client's message id; `ack`, `chat_delta`, `chat_end` and chat errors name it.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 100)))]
    pub id: String,
    /// The user's text.
    pub message: String,
    /// The conversation; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,100}$")))]
    pub session_id: Option<String>,
    /// Extra context for this chat, merged over `init`/`context_update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// Every frame a legacy client may send, tagged by `type`. Other types get `UNKNOWN_TYPE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LegacyClientFrame {
    /// Answered by exactly one `chat_response`.
    Chat(LegacyChat),
    /// Answered at once (even mid-chat) by a `pong` echoing `timestamp`.
    Ping {
        /// Any JSON value; echoed verbatim.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<Value>,
    },
    /// The answer to a server `ping`: liveness, and proof that the server pushes sent before
    /// that ping arrived (they are then marked delivered).
    Pong {
        /// The server ping's timestamp.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<Value>,
    },
    /// Context kept on the connection and merged into the next chat's; no reply.
    Init {
        /// Client context (within `PAM_MAX_CONTEXT_BYTES`, else `MESSAGE_TOO_LARGE`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Map<String, Value>>,
    },
    /// Same as `init`: merged into the connection's context.
    ContextUpdate {
        /// Client context (within `PAM_MAX_CONTEXT_BYTES`, else `MESSAGE_TOO_LARGE`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Map<String, Value>>,
    },
    /// Ignored on a legacy socket (the `?token=` authenticates it).
    Auth {
        /// A JWT.
        token: String,
    },
    /// Ignored.
    Heartbeat,
    /// Ignored.
    TypingIndicator,
}

/// Every frame a v2 client may send, tagged by `type`. Other types get `UNKNOWN_TYPE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum V2ClientFrame {
    /// The first frame when the upgrade had no `?token=`; required within `PAM_AUTH_TIMEOUT_MS`
    /// (else close 4508). Later ones are ignored.
    Auth {
        /// A Supabase access token (JWT).
        token: String,
    },
    /// `ack` once stored, then `chat_delta`s and one `chat_end` (or an `error`).
    Chat(V2Chat),
    /// Stops a running chat: it ends with a `chat_end` holding the partial text.
    Cancel {
        /// The chat's `id`.
        id: String,
    },
    /// Dismisses a server push: a fired timer (`timer_expired`) is no longer re-sent on connect.
    /// No reply; an `error` with the `id` when the user has no such push.
    Dismiss {
        /// The push's `id` (a timer's `timer_id`).
        id: String,
    },
    /// Sent after the new socket's `welcome`: replays the frames after `last_seq` of a stream
    /// session, or answers `resume_failed`.
    Resume {
        /// The `welcome.stream_id` of the earlier socket.
        stream_id: String,
        /// The `welcome.epoch` that socket saw; another epoch fails with `epoch_changed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// The last `seq` the client saw.
        last_seq: u64,
    },
    /// Replaces the token without reconnecting (same user; at most once per 5 s); no reply.
    AuthRefresh {
        /// A fresh JWT for the same user.
        token: String,
    },
    /// Answered at once by a `pong` echoing `timestamp`.
    Ping {
        /// Any JSON value; echoed verbatim.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<Value>,
    },
    /// The answer to a server `ping`: liveness, and proof that the pushes sent before that ping
    /// arrived (they are then marked delivered).
    Pong {
        /// The server ping's timestamp.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<Value>,
    },
    /// Optional: the client holds every frame up to `seq` (the SDK sends it while frames arrive,
    /// at most every 2 s or 64 frames). Proof of receipt for pushes, like a pong; no reply.
    Ack {
        /// The highest `seq` the client holds.
        seq: u64,
    },
    /// Context merged into the next chat's, as in legacy.
    Init {
        /// Client context (within `PAM_MAX_CONTEXT_BYTES`, else `MESSAGE_TOO_LARGE`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Map<String, Value>>,
    },
    /// Same as `init`.
    ContextUpdate {
        /// Client context (within `PAM_MAX_CONTEXT_BYTES`, else `MESSAGE_TOO_LARGE`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Map<String, Value>>,
    },
    /// Ignored.
    Heartbeat,
    /// Ignored.
    TypingIndicator,
}

/// One frame of every kind of each dialect, as a client would send it: the AsyncAPI examples
/// and the parser agreement test use them.
pub fn legacy_client_examples() -> Vec<LegacyClientFrame> {
    let context = Map::from_iter([("page".to_string(), Value::from("trips"))]);
    vec![
        LegacyClientFrame::Chat(LegacyChat {
            message: Some("How much have I spent on fuel this month?".into()),
            session_id: Some("default".into()),
            ..LegacyChat::default()
        }),
        LegacyClientFrame::Ping { timestamp: Some(Value::from(1_700_000_000_123_u64)) },
        LegacyClientFrame::Pong { timestamp: Some(Value::from(1_700_000_000_000_u64)) },
        LegacyClientFrame::Init { context: Some(context.clone()) },
        LegacyClientFrame::ContextUpdate { context: Some(context) },
        LegacyClientFrame::Auth { token: "<jwt>".into() },
        LegacyClientFrame::Heartbeat,
        LegacyClientFrame::TypingIndicator,
    ]
}

/// See [`legacy_client_examples`].
pub fn v2_client_examples() -> Vec<V2ClientFrame> {
    let context = Map::from_iter([("page".to_string(), Value::from("trips"))]);
    vec![
        V2ClientFrame::Auth { token: "<jwt>".into() },
        V2ClientFrame::Chat(V2Chat { id: "m-1".into(), message: "Any events coming up?".into(), session_id: None, context: None }),
        V2ClientFrame::Cancel { id: "m-1".into() },
        V2ClientFrame::Dismiss { id: "5f0c1a8e-2b7d-4c3e-9a41-6d2f8b7e9c10".into() },
        V2ClientFrame::Resume { stream_id: "s-3f2504e0".into(), epoch: Some("e-9b1d".into()), last_seq: 41 },
        V2ClientFrame::AuthRefresh { token: "<jwt>".into() },
        V2ClientFrame::Ping { timestamp: Some(Value::from(1_700_000_000_123_u64)) },
        V2ClientFrame::Pong { timestamp: Some(Value::from(1_700_000_000_000_u64)) },
        V2ClientFrame::Ack { seq: 42 },
        V2ClientFrame::Init { context: Some(context.clone()) },
        V2ClientFrame::ContextUpdate { context: Some(context) },
        V2ClientFrame::Heartbeat,
        V2ClientFrame::TypingIndicator,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatRequest, ClientFrame, FrameError, parse_client_frame};

    /// What the connection makes of a typed frame.
    fn parsed<T: Serialize>(frame: &T) -> Result<ClientFrame, FrameError> {
        parse_client_frame(&serde_json::to_string(frame).unwrap())
    }

    #[test]
    fn every_typed_legacy_frame_is_accepted_by_the_parser_as_what_it_says() {
        for frame in legacy_client_examples() {
            let decoded = parsed(&frame).unwrap_or_else(|e| panic!("{frame:?}: {e:?}"));
            let agrees = match (&frame, &decoded) {
                (LegacyClientFrame::Chat(chat), ClientFrame::Chat(request)) => {
                    chat.message.as_deref() == Some(request.message.as_str()) && chat.session_id == request.session_id
                }
                (LegacyClientFrame::Ping { timestamp }, ClientFrame::Ping { timestamp: parsed }) => timestamp == parsed,
                (LegacyClientFrame::Pong { timestamp }, ClientFrame::Pong { timestamp: parsed }) => {
                    timestamp.as_ref().and_then(Value::as_u64) == *parsed
                }
                (LegacyClientFrame::Init { context } | LegacyClientFrame::ContextUpdate { context }, ClientFrame::Context(parsed)) => {
                    context.as_ref() == Some(parsed)
                }
                (LegacyClientFrame::Auth { token }, ClientFrame::Auth { token: parsed }) => token == parsed,
                (LegacyClientFrame::Heartbeat | LegacyClientFrame::TypingIndicator, ClientFrame::Ignored) => true,
                _ => false,
            };
            assert!(agrees, "{frame:?} decoded as {decoded:?}");
        }
    }

    #[test]
    fn every_typed_v2_frame_is_accepted_by_the_parser_as_what_it_says() {
        for frame in v2_client_examples() {
            let decoded = parsed(&frame).unwrap_or_else(|e| panic!("{frame:?}: {e:?}"));
            let agrees = match (&frame, &decoded) {
                (V2ClientFrame::Auth { token }, ClientFrame::Auth { token: parsed }) => token == parsed,
                (V2ClientFrame::Chat(chat), ClientFrame::Chat(request)) => {
                    *request
                        == ChatRequest {
                            id: Some(chat.id.clone()),
                            message: chat.message.clone(),
                            session_id: chat.session_id.clone(),
                            context: chat.context.clone(),
                        }
                }
                (V2ClientFrame::Cancel { id }, ClientFrame::Cancel { id: parsed }) => id == parsed,
                (V2ClientFrame::Dismiss { id }, ClientFrame::Dismiss { id: parsed }) => id == parsed,
                (V2ClientFrame::Resume { stream_id, epoch, last_seq }, ClientFrame::Resume { stream_id: s, epoch: e, last_seq: l }) => {
                    stream_id == s && epoch == e && last_seq == l
                }
                (V2ClientFrame::AuthRefresh { token }, ClientFrame::AuthRefresh { token: parsed }) => token == parsed,
                (V2ClientFrame::Ping { timestamp }, ClientFrame::Ping { timestamp: parsed }) => timestamp == parsed,
                (V2ClientFrame::Pong { timestamp }, ClientFrame::Pong { timestamp: parsed }) => {
                    timestamp.as_ref().and_then(Value::as_u64) == *parsed
                }
                (V2ClientFrame::Ack { seq }, ClientFrame::Ack { seq: parsed }) => seq == parsed,
                (V2ClientFrame::Init { context } | V2ClientFrame::ContextUpdate { context }, ClientFrame::Context(parsed)) => {
                    context.as_ref() == Some(parsed)
                }
                (V2ClientFrame::Heartbeat | V2ClientFrame::TypingIndicator, ClientFrame::Ignored) => true,
                _ => false,
            };
            assert!(agrees, "{frame:?} decoded as {decoded:?}");
        }
    }

    #[test]
    fn the_legacy_content_alias_and_minimal_frames_decode_into_the_typed_shapes() {
        let chat: LegacyClientFrame = serde_json::from_str(r#"{"type":"chat","content":"hi","user_id":"x","extra":1}"#).unwrap();
        assert_eq!(
            chat,
            LegacyClientFrame::Chat(LegacyChat { content: Some("hi".into()), user_id: Some("x".into()), ..LegacyChat::default() })
        );
        for text in [r#"{"type":"ping"}"#, r#"{"type":"init"}"#, r#"{"type":"heartbeat"}"#] {
            let typed: LegacyClientFrame = serde_json::from_str(text).unwrap();
            assert!(parse_client_frame(&serde_json::to_string(&typed).unwrap()).is_ok(), "{text}");
        }
    }

    #[test]
    fn frames_the_types_leave_out_are_refused_by_the_parser_too() {
        for text in [r#"{"type":"cancel"}"#, r#"{"type":"resume","session_id":"s"}"#, r#"{"type":"auth"}"#, r#"{"type":"dance"}"#] {
            assert!(serde_json::from_str::<V2ClientFrame>(text).is_err(), "{text}");
            assert!(parse_client_frame(text).is_err(), "{text}");
        }
    }
}
