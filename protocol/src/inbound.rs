//! Client → server frames, parsed from text with precise errors so the connection can answer
//! `INVALID_JSON`, `UNKNOWN_TYPE` or `VALIDATION_ERROR` and keep the socket open.

use serde_json::{Map, Value};

use crate::ErrorCode;

/// A chat request (`content` is accepted as an alias of `message`). Ids are kept raw here and
/// validated by the connection, which owns the error reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// v2 client message id (idempotency key); legacy clients send none.
    pub id: Option<String>,
    /// The user's text; empty when absent.
    pub message: String,
    /// Raw `session_id`, if the client sent one.
    pub session_id: Option<String>,
    /// Extra context the client attached (e.g. `user_location`).
    pub context: Option<Map<String, Value>>,
}

/// Every client frame the gateway understands.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// A chat message to answer (legacy `chat`/`message`, v2 `chat` with an `id`).
    Chat(ChatRequest),
    /// Answered at once with a `pong` echoing `timestamp` (which may be any JSON value).
    Ping {
        /// Echoed in the `pong`; the server's clock when absent.
        timestamp: Option<Value>,
    },
    /// An answer to the server's JSON `ping`: any frame proves liveness; a pong echoing the
    /// `timestamp` of a server ping also proves that every frame sent before that ping arrived.
    Pong {
        /// The echoed `timestamp` of the ping it answers, when it is a non-negative integer.
        timestamp: Option<u64>,
    },
    /// v2: the client holds every frame of its stream up to `seq` (proof of receipt for pushes).
    Ack {
        /// The highest `seq` the client holds.
        seq: u64,
    },
    /// `init` and `context_update`: merged into the next chat's context.
    Context(Map<String, Value>),
    /// v2 `auth` (legacy clients send it too, where it is ignored).
    Auth {
        /// The access token (a JWT).
        token: String,
    },
    /// v2 token refresh.
    AuthRefresh {
        /// A fresh access token for the same user.
        token: String,
    },
    /// v2 cancel of a running chat.
    Cancel {
        /// The `id` of the chat to stop.
        id: String,
    },
    /// v2 dismissal of a server push (a fired timer stops being re-sent).
    Dismiss {
        /// The push's `id`.
        id: String,
    },
    /// v2 resume after reconnect.
    Resume {
        /// The `welcome.stream_id` of the earlier socket.
        stream_id: String,
        /// The `welcome.epoch` it saw, when the client sends it.
        epoch: Option<String>,
        /// The last `seq` the client received; the replay starts after it.
        last_seq: u64,
    },
    /// Known-harmless types (`heartbeat`, `typing_indicator`) that need no answer.
    Ignored,
}

/// Why a text frame was not understood.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameError {
    /// Not JSON, or not a JSON object with a `type`.
    InvalidJson(String),
    /// A `type` the gateway does not know.
    UnknownType(String),
    /// A known `type` with missing or malformed fields.
    Validation(String),
}

impl FrameError {
    /// The `error_code` to answer with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            FrameError::InvalidJson(_) => ErrorCode::InvalidJson,
            FrameError::UnknownType(_) => ErrorCode::UnknownType,
            FrameError::Validation(_) => ErrorCode::ValidationError,
        }
    }

    /// A message fit for the client.
    pub fn message(&self) -> String {
        match self {
            FrameError::InvalidJson(why) => format!("frame is not valid JSON: {why}"),
            FrameError::UnknownType(kind) => format!("unknown message type '{kind}'"),
            FrameError::Validation(why) => why.clone(),
        }
    }
}

/// Parses one text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(FrameError::Validation("frame must be a JSON object".into()));
    };
    let kind = match obj.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => return Err(FrameError::Validation("frame needs a string 'type'".into())),
    };
    match kind.as_str() {
        "chat" => parse_chat(&mut obj).map(ClientFrame::Chat),
        "ping" => Ok(ClientFrame::Ping { timestamp: obj.remove("timestamp") }),
        "pong" => Ok(ClientFrame::Pong { timestamp: obj.get("timestamp").and_then(Value::as_u64) }),
        "ack" => Ok(ClientFrame::Ack {
            seq: obj
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| FrameError::Validation("'seq' must be a non-negative integer".into()))?,
        }),
        "init" | "context_update" => Ok(ClientFrame::Context(optional_object(&mut obj, "context")?.unwrap_or_default())),
        "auth" => Ok(ClientFrame::Auth { token: required_string(&mut obj, "token")? }),
        "auth_refresh" => Ok(ClientFrame::AuthRefresh { token: required_string(&mut obj, "token")? }),
        "cancel" => Ok(ClientFrame::Cancel { id: required_string(&mut obj, "id")? }),
        "dismiss" => Ok(ClientFrame::Dismiss { id: required_string(&mut obj, "id")? }),
        "resume" => Ok(ClientFrame::Resume {
            // `session_id` was this field's name before it became `stream_id`; still accepted.
            stream_id: match optional_string(&mut obj, "stream_id")? {
                Some(stream_id) => stream_id,
                None => required_string(&mut obj, "session_id")?,
            },
            epoch: optional_string(&mut obj, "epoch")?,
            last_seq: obj
                .get("last_seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| FrameError::Validation("'last_seq' must be a non-negative integer".into()))?,
        }),
        "heartbeat" | "typing_indicator" => Ok(ClientFrame::Ignored),
        _ => Err(FrameError::UnknownType(kind.chars().take(40).collect())),
    }
}

fn parse_chat(obj: &mut Map<String, Value>) -> Result<ChatRequest, FrameError> {
    let message = match optional_string(obj, "message")? {
        Some(message) => message,
        None => optional_string(obj, "content")?.unwrap_or_default(),
    };
    Ok(ChatRequest {
        id: optional_id(obj)?,
        message,
        session_id: optional_string(obj, "session_id")?,
        context: optional_object(obj, "context")?,
    })
}

fn optional_id(obj: &mut Map<String, Value>) -> Result<Option<String>, FrameError> {
    match obj.remove("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 100 => Ok(Some(id)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(FrameError::Validation("'id' must be a string of 1-100 characters".into())),
    }
}

fn optional_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, FrameError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FrameError::Validation(format!("'{key}' must be a string"))),
    }
}

fn required_string(obj: &mut Map<String, Value>, key: &str) -> Result<String, FrameError> {
    optional_string(obj, key)?.ok_or_else(|| FrameError::Validation(format!("'{key}' is required")))
}

fn optional_object(obj: &mut Map<String, Value>, key: &str) -> Result<Option<Map<String, Value>>, FrameError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(FrameError::Validation(format!("'{key}' must be an object"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_accepts_content_as_alias_and_keeps_context() {
        let frame = parse_client_frame(r#"{"type":"chat","content":"hi","context":{"user_location":{"lat":1}}}"#).unwrap();
        let ClientFrame::Chat(chat) = frame else { panic!("not chat") };
        assert_eq!(chat.message, "hi");
        assert_eq!(chat.context.unwrap()["user_location"], json!({"lat":1}));
        assert_eq!(chat.session_id, None);
    }

    #[test]
    fn ping_keeps_its_timestamp_verbatim() {
        let frame = parse_client_frame(r#"{"type":"ping","timestamp":1700000000123}"#).unwrap();
        assert_eq!(frame, ClientFrame::Ping { timestamp: Some(json!(1700000000123_u64)) });
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(parse_client_frame("{nope"), Err(FrameError::InvalidJson(_))));
        assert!(matches!(parse_client_frame(r#"{"type":"dance"}"#), Err(FrameError::UnknownType(k)) if k == "dance"));
        assert!(matches!(parse_client_frame("[1,2]"), Err(FrameError::Validation(_))));
        assert!(matches!(parse_client_frame(r#"{"type":"chat","message":5}"#), Err(FrameError::Validation(_))));
        assert!(matches!(parse_client_frame(r#"{"type":"resume","session_id":"s"}"#), Err(FrameError::Validation(_))));
    }

    #[test]
    fn harmless_legacy_types_are_ignored_and_context_frames_parse() {
        assert_eq!(parse_client_frame(r#"{"type":"heartbeat"}"#).unwrap(), ClientFrame::Ignored);
        let ctx = parse_client_frame(r#"{"type":"context_update","context":{"page":"trips"}}"#).unwrap();
        assert_eq!(ctx, ClientFrame::Context(json!({"page":"trips"}).as_object().unwrap().clone()));
        assert_eq!(parse_client_frame(r#"{"type":"init"}"#).unwrap(), ClientFrame::Context(Map::new()));
    }
}

#[cfg(test)]
mod v2_tests {
    use super::*;

    #[test]
    fn v2_client_frames_parse() {
        let ClientFrame::Chat(chat) = parse_client_frame(r#"{"type":"chat","id":"m-1","message":"hi"}"#).unwrap() else {
            panic!("not chat")
        };
        assert_eq!(chat.id.as_deref(), Some("m-1"));
        assert_eq!(parse_client_frame(r#"{"type":"auth","token":"t"}"#).unwrap(), ClientFrame::Auth { token: "t".into() });
        assert_eq!(parse_client_frame(r#"{"type":"auth_refresh","token":"t"}"#).unwrap(), ClientFrame::AuthRefresh { token: "t".into() });
        assert_eq!(parse_client_frame(r#"{"type":"cancel","id":"m-1"}"#).unwrap(), ClientFrame::Cancel { id: "m-1".into() });
        assert_eq!(
            parse_client_frame(r#"{"type":"resume","session_id":"s","last_seq":4}"#).unwrap(),
            ClientFrame::Resume { stream_id: "s".into(), epoch: None, last_seq: 4 }
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"resume","stream_id":"s","epoch":"e","last_seq":4}"#).unwrap(),
            ClientFrame::Resume { stream_id: "s".into(), epoch: Some("e".into()), last_seq: 4 }
        );
        assert!(matches!(parse_client_frame(r#"{"type":"cancel"}"#), Err(FrameError::Validation(_))));
        assert!(matches!(parse_client_frame(r#"{"type":"chat","id":{},"message":"x"}"#), Err(FrameError::Validation(_))));
    }
}
