//! Property tests: decoding whatever a client can put in a text frame — any string, any JSON,
//! any known frame type with fields of the wrong kind — never panics, and every refusal maps to
//! an error code and a message the connection can send back.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::{ClientFrame, ErrorCode, FrameError, SessionId, UserId, parse_client_frame};

const TYPES: [&str; 13] = [
    "chat",
    "ping",
    "pong",
    "init",
    "context_update",
    "auth",
    "auth_refresh",
    "cancel",
    "resume",
    "heartbeat",
    "typing_indicator",
    "dismiss",
    "",
];
const FIELDS: [&str; 11] =
    ["message", "content", "id", "session_id", "context", "token", "last_seq", "timestamp", "user_id", "stream_id", "type"];

/// Any JSON value, nested a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8).prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// An object whose `type` is a known one (or close to it) and whose fields are any JSON.
fn frame_like() -> impl Strategy<Value = Value> {
    let fields = prop::collection::vec((prop::sample::select(FIELDS.to_vec()), any_json()), 0..6);
    (prop::sample::select(TYPES.to_vec()), fields).prop_map(|(kind, fields)| {
        let mut object: Map<String, Value> = fields.into_iter().map(|(key, value)| (key.to_string(), value)).collect();
        object.insert("type".into(), Value::from(kind));
        Value::Object(object)
    })
}

/// Decodes and checks the refusal is answerable; the frame when accepted.
fn decode(text: &str) -> Option<ClientFrame> {
    match parse_client_frame(text) {
        Ok(frame) => Some(frame),
        Err(error) => {
            let code = error.error_code();
            assert!(matches!(code, ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::ValidationError), "{error:?}");
            assert!(!error.message().is_empty(), "{error:?}");
            if let FrameError::UnknownType(kind) = &error {
                assert!(kind.chars().count() <= 40, "the echoed type is cut: {kind}");
            }
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn any_string_decodes_or_is_refused_without_panicking(text in any::<String>()) {
        decode(&text);
    }

    #[test]
    fn any_bytes_read_as_text_decode_or_are_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn any_json_value_decodes_or_is_refused_without_panicking(value in any_json()) {
        decode(&value.to_string());
    }

    #[test]
    fn known_types_with_fields_of_any_kind_decode_or_are_refused_without_panicking(value in frame_like()) {
        if let Some(ClientFrame::Chat(chat)) = decode(&value.to_string()) {
            // What was accepted is what the object held.
            let text = value.get("message").or_else(|| value.get("content")).and_then(Value::as_str).unwrap_or_default();
            prop_assert!(chat.message.is_empty() || text.contains(chat.message.trim()), "{chat:?} from {value}");
        }
    }

    #[test]
    fn truncated_valid_frames_decode_or_are_refused_without_panicking(value in frame_like(), cut in any::<prop::sample::Index>()) {
        let text = value.to_string();
        let mut end = cut.index(text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        decode(&text[..end]);
    }

    #[test]
    fn ids_parse_or_are_refused_without_panicking(raw in any::<String>()) {
        if let Ok(user) = UserId::parse(&raw) {
            prop_assert_eq!(user.as_str(), raw.to_ascii_lowercase());
        }
        if let Ok(session) = SessionId::parse(&raw) {
            prop_assert!(session.as_str().len() <= 100);
        }
    }
}

#[test]
fn deeply_nested_json_is_refused_instead_of_overflowing_the_stack() {
    for open in ["[", "{\"a\":"] {
        let text = open.repeat(100_000);
        assert_eq!(decode(&text), None);
    }
    let nested_context = format!("{{\"type\":\"init\",\"context\":{{\"a\":{}1{}}}}}", "[".repeat(50_000), "]".repeat(50_000));
    assert_eq!(decode(&nested_context), None);
    assert!(decode(&json!({"type": "ping", "timestamp": {"deep": [[[[1]]]]}}).to_string()).is_some());
}
