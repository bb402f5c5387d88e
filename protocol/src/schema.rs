//! The machine-readable protocol, derived from this crate's frame types and close-code table:
//! one JSON Schema (draft-07) per message group and an AsyncAPI 3.0 document for both socket
//! endpoints. `pam-schema --write docs/` commits them, `pam-schema --check docs/` (and a test)
//! fails when the committed copies drift from the types, and the gateway serves them at
//! `GET /asyncapi.json` and `GET /schema/{name}.json`.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    AlertContent, AlertPriority, ChatEnd, ChatResponse, CloseCode, ConnectionFrame, ErrorCode, LegacyClientFrame, ProactiveAlert,
    PushFrame, SeqFrame, SeqPushFrame, ServerFrame, TimerExpired, TimerNotification, TimerType, UiAction, V2_SUBPROTOCOL, V2ClientFrame,
    V2Frame, Welcome, legacy_client_examples, v2_client_examples,
};

/// Every name `GET /schema/{name}.json` serves, in document order.
pub const SCHEMA_NAMES: [&str; 6] = ["legacy-client", "legacy-server", "v2-client", "v2-server", "error-codes", "close-codes"];

/// The AsyncAPI document's file name (under the docs directory, and the route's path).
pub const ASYNCAPI_FILE: &str = "asyncapi.json";

/// Where the schemas live under the docs directory.
pub const SCHEMA_DIR: &str = "schema";

/// The JSON Schema named `name` (one of [`SCHEMA_NAMES`]).
pub fn schema(name: &str) -> Option<Value> {
    let (title, description, mut schema) = match name {
        "legacy-client" => (
            "LegacyClientFrame",
            "Every frame a client sends on a legacy socket (/api/v1/pam/ws/{user_id} without the pam.v2 subprotocol).",
            single::<LegacyClientFrame>(false),
        ),
        "legacy-server" => (
            "LegacyServerFrame",
            "Every frame the server sends on a legacy socket: protocol frames and server pushes. Only \
             chat_response and error carry message/content at the top level.",
            union::<ServerFrame, PushFrame>(),
        ),
        "v2-client" => (
            "V2ClientFrame",
            "Every frame a client sends on a v2 socket (/api/v2/pam/ws, or a legacy path with Sec-WebSocket-Protocol: pam.v2).",
            single::<V2ClientFrame>(false),
        ),
        "v2-server" => (
            "V2ServerFrame",
            "Every frame the server sends on a v2 socket, each with its seq (strictly increasing per stream session).",
            single::<SeqFrame>(true),
        ),
        "error-codes" => ("ErrorCode", "The error_code of error frames and failed chat_response frames.", single::<ErrorCode>(true)),
        "close-codes" => ("CloseCode", CLOSE_CODES_DESCRIPTION, close_codes()),
        _ => return None,
    };
    let object = schema.as_object_mut()?;
    object.insert("title".into(), title.into());
    object.insert("description".into(), description.into());
    Some(order_schema_keys(schema))
}

const CLOSE_CODES_DESCRIPTION: &str = "Every close code the server sends (one table, protocol/src/close.rs). An error frame \
    with x-error-code precedes every close the server starts except 1000. x-reconnect: may_reconnect (1001-1015, 4000-4499: \
    reconnect with backoff), do_not_reconnect (4500-4999: not without user action such as signing in again), closed_normally \
    (1000: the session ended on purpose). 1013 has two rows: storage and signing keys.";

/// What a client should do after a close with `code`: the reconnect class of the table.
pub fn reconnect_class(code: CloseCode) -> &'static str {
    if code == CloseCode::Normal {
        "closed_normally"
    } else if code.may_reconnect() {
        "may_reconnect"
    } else {
        "do_not_reconnect"
    }
}

/// The close-code table as data: code, name, reason, error code and reconnect class per row.
pub fn close_code_rows() -> Vec<Value> {
    CloseCode::ALL
        .iter()
        .map(|code| {
            json!({
                "code": code.code(),
                "name": code.name(),
                "reason": code.reason(),
                "error_code": code.error_code().map(ErrorCode::as_str),
                "reconnect": reconnect_class(*code),
            })
        })
        .collect()
}

fn close_codes() -> Value {
    let rows: Vec<Value> = CloseCode::ALL
        .iter()
        .map(|code| {
            json!({
                "const": code.code(),
                "title": code.name(),
                "description": code.reason(),
                "x-error-code": code.error_code().map(ErrorCode::as_str),
                "x-reconnect": reconnect_class(*code),
            })
        })
        .collect();
    // anyOf, not oneOf: 1013 has two rows.
    json!({"$schema": DRAFT07, "type": "integer", "anyOf": rows})
}

const DRAFT07: &str = "http://json-schema.org/draft-07/schema#";

fn settings(serialize: bool) -> SchemaSettings {
    let settings = SchemaSettings::draft07();
    if serialize { settings.for_serialize() } else { settings.for_deserialize() }
}

/// The schema of one type: what the server accepts (`serialize` false) or sends (true).
fn single<T: JsonSchema>(serialize: bool) -> Value {
    settings(serialize).into_generator().into_root_schema_for::<T>().to_value()
}

/// Two tagged enums the server sends on one socket, as one `oneOf` (shared definitions).
fn union<A: JsonSchema, B: JsonSchema>() -> Value {
    let mut generator = settings(true).into_generator();
    let mut first = generator.root_schema_for::<A>().to_value();
    let second = generator.root_schema_for::<B>().to_value();
    let branches = second.get("oneOf").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(Value::Array(one_of)) = first.get_mut("oneOf") {
        one_of.extend(branches);
    }
    if let Some(definitions) = second.get("definitions") {
        first["definitions"] = definitions.clone();
    }
    first
}

/// `$schema`, `title` and `description` first, `definitions` last: easier to read in a diff.
fn order_schema_keys(schema: Value) -> Value {
    let Value::Object(mut object) = schema else { return schema };
    let mut ordered = Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(value) = object.remove(key) {
            ordered.insert(key.into(), value);
        }
    }
    let definitions = object.remove("definitions");
    ordered.extend(object);
    if let Some(definitions) = definitions {
        ordered.insert("definitions".into(), definitions);
    }
    Value::Object(ordered)
}

/// A message group of the AsyncAPI document: one schema, one direction, one channel.
struct Group {
    schema: &'static str,
    channel: &'static str,
    /// `receive`: the gateway receives it (client → server); `send`: the gateway sends it.
    action: &'static str,
    /// Prefix of the channel's message keys.
    side: &'static str,
}

const GROUPS: [Group; 4] = [
    Group { schema: "legacy-client", channel: "legacy", action: "receive", side: "client" },
    Group { schema: "legacy-server", channel: "legacy", action: "send", side: "server" },
    Group { schema: "v2-client", channel: "v2", action: "receive", side: "client" },
    Group { schema: "v2-server", channel: "v2", action: "send", side: "server" },
];

/// The AsyncAPI 3.0 document: both socket channels, their messages (payloads from the schemas),
/// the gateway's send/receive operations and the close codes (`x-close-codes`).
pub fn asyncapi() -> Value {
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut channel_messages: [Map<String, Value>; 2] = [Map::new(), Map::new()];
    let mut operations = Map::new();
    let examples = examples();
    for group in &GROUPS {
        let Some(mut schema) = schema(group.schema) else { continue };
        rewrite_refs(&mut schema);
        let object = schema.as_object_mut().expect("a derived schema is an object");
        if let Some(Value::Object(definitions)) = object.remove("definitions") {
            schemas.extend(definitions);
        }
        object.remove("$schema");
        // What every branch shares (v2 server frames: `seq`), merged into each message payload.
        let shared_properties = object.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let shared_required = object.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
        let branches = object.get("oneOf").and_then(Value::as_array).cloned().unwrap_or_default();
        let channel_index = usize::from(group.channel == "v2");
        let mut operation_messages = Vec::new();
        for mut branch in branches {
            let kind = branch.pointer("/properties/type/const").and_then(Value::as_str).unwrap_or_default().to_string();
            let summary = branch.get("description").and_then(Value::as_str).unwrap_or_default().replace('\n', " ");
            if let Some(Value::Object(properties)) = branch.get_mut("properties") {
                properties.extend(shared_properties.clone());
            }
            if let Some(Value::Array(required)) = branch.get_mut("required") {
                required.extend(shared_required.clone());
            }
            let component = format!("{}.{}.{kind}", group.channel, group.side);
            let mut message = json!({
                "name": kind,
                "title": format!("{kind} ({})", if group.side == "client" { "client → server" } else { "server → client" }),
                "summary": summary,
                "contentType": "application/json",
                "payload": branch,
            });
            if let Some(example) = examples.get(&(group.schema, kind.clone())) {
                message["examples"] = json!([{"name": kind, "payload": example}]);
            }
            messages.insert(component.clone(), message);
            let key = format!("{}.{kind}", group.side);
            channel_messages[channel_index].insert(key.clone(), json!({"$ref": format!("#/components/messages/{component}")}));
            operation_messages.push(json!({"$ref": format!("#/channels/{}/messages/{key}", group.channel)}));
        }
        schemas.insert(group.schema.into(), schema);
        let operation = format!("{}.{}", group.channel, group.action);
        operations.insert(
            operation,
            json!({
                "action": group.action,
                "channel": {"$ref": format!("#/channels/{}", group.channel)},
                "summary": if group.action == "receive" { "Frames the client sends" } else { "Frames the server sends" },
                "messages": operation_messages,
            }),
        );
    }
    let [legacy_messages, v2_messages] = channel_messages;
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "PAM gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The WebSocket protocol of the PAM gateway, generated from the Rust frame types (pam-protocol). \
                All frames are UTF-8 text JSON objects tagged by `type`; the server never sends binary frames. Operations \
                are the gateway's: `receive` = client → server, `send` = server → client. Every close the server starts \
                has a code and a reason; `x-close-codes` lists them with their reconnect class. The human version is \
                docs/protocol.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "`cargo run --release` (dev auth: POST /dev/token mints a token). With PAM_TLS_CERT/PAM_TLS_KEY the gateway serves wss.",
            }
        },
        "channels": {
            "legacy": {
                "address": "/api/v1/pam/ws/{user_id}",
                "title": "Legacy socket",
                "description": "What today's browser client speaks: one terminal chat_response per chat, no ids. Aliases: \
                    /api/v1/pam-simple/ws/{user_id}, /pam/ws/{user_id}. With `Sec-WebSocket-Protocol: pam.v2` the same \
                    paths speak the v2 dialect (channel `v2`) and the server echoes the subprotocol.",
                "parameters": {"user_id": {"description": "The user's uuid; must be the token's `sub` (else close 4503)."}},
                "messages": legacy_messages,
                "bindings": {"ws": {
                    "method": "GET",
                    "query": {"type": "object", "properties": {"token": {"type": "string", "description": "Supabase access token (JWT)."}}, "required": ["token"]},
                    "bindingVersion": "0.1.0",
                }},
            },
            "v2": {
                "address": "/api/v2/pam/ws",
                "title": "v2 socket",
                "description": "Message ids, streaming, resume and in-band token refresh. The user is the token's `sub`; \
                    the token comes as `?token=` or as the first frame (`auth`).",
                "messages": v2_messages,
                "bindings": {"ws": {
                    "method": "GET",
                    "query": {"type": "object", "properties": {"token": {"type": "string", "description": "Supabase access token (JWT); else send an `auth` frame first."}}},
                    "headers": {"type": "object", "properties": {"Sec-WebSocket-Protocol": {"type": "string", "const": V2_SUBPROTOCOL, "description": "Optional on this path; selects v2 on the legacy paths."}}},
                    "bindingVersion": "0.1.0",
                }},
            },
        },
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
        "x-close-codes": close_code_rows(),
    })
}

/// Points `#/definitions/X` at the AsyncAPI document's `#/components/schemas/X`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "$ref" {
                    if let Value::String(target) = child {
                        if let Some(name) = target.strip_prefix("#/definitions/") {
                            *target = format!("#/components/schemas/{name}");
                        }
                    }
                } else {
                    rewrite_refs(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// One example payload per (schema, frame type), built from the types.
fn examples() -> std::collections::HashMap<(&'static str, String), Value> {
    fn entry<T: Serialize>(schema: &'static str, frame: T) -> ((&'static str, String), Value) {
        let value = serde_json::to_value(frame).expect("frames serialize");
        let kind = value["type"].as_str().unwrap_or_default().to_string();
        ((schema, kind), value)
    }
    let mut examples: std::collections::HashMap<_, _> = legacy_client_examples().into_iter().map(|f| entry("legacy-client", f)).collect();
    examples.extend(v2_client_examples().into_iter().map(|f| entry("v2-client", f)));
    examples.extend(legacy_server_examples().into_iter().map(|f| entry("legacy-server", f)));
    examples.extend(v2_server_examples().into_iter().map(|f| entry("v2-server", f)));
    examples
}

fn push_examples() -> [PushFrame; 2] {
    [
        PushFrame::TimerExpired(TimerExpired {
            id: "8d0c1c1e-5a57-4cb0-a4b1-3a1f4f1f0b5e".into(),
            timer_id: "3b9f2a52-2f39-4a0c-8f16-64f5c1f1e0aa".into(),
            label: "tyre pressure".into(),
            timer_type: TimerType::Timer,
            message: "Time to check the tyre pressure".into(),
            fire_at: "2026-05-01T08:20:00Z".into(),
            notification: TimerNotification {
                title: "PAM timer".into(),
                body: "Time to check the tyre pressure".into(),
                require_interaction: true,
                tag: "timer-3b9f2a52-2f39-4a0c-8f16-64f5c1f1e0aa".into(),
            },
        }),
        PushFrame::ProactiveAlert(ProactiveAlert {
            id: "f1d9b7a0-4c3e-4d8e-9a51-0b7f2d7c6e11".into(),
            timestamp: "2026-05-01T08:00:00Z".into(),
            content: AlertContent {
                kind: "proactive_alert".into(),
                category: "financial_guidance".into(),
                alert_type: "budget_alert".into(),
                message: "Fuel: $412 of your $500 budget spent this month (82 %).".into(),
                priority: AlertPriority::Normal,
                actions: vec!["analyze_expenses".into()],
            },
        }),
    ]
}

fn ui_action() -> UiAction {
    UiAction { kind: "reload_expenses".into(), entity_id: None, entity_type: None, entity_title: None, metadata: None }
}

fn legacy_server_examples() -> Vec<Value> {
    let frames = [
        ServerFrame::Connection(ConnectionFrame {
            status: "connected".into(),
            greeting: "Connected to PAM".into(),
            timestamp: "2026-05-01T08:00:00Z".into(),
            connection_id: "c-5f0e".into(),
            profile_integration: "enabled".into(),
        }),
        ServerFrame::ChatResponse(ChatResponse {
            message: "You have spent $412 on fuel this month.".into(),
            content: "You have spent $412 on fuel this month.".into(),
            ui_actions: vec![ui_action()],
            session_id: "default".into(),
            error: false,
            error_code: None,
            source: "builtin".into(),
            model: "builtin".into(),
            latency_ms: 42,
            timestamp: "2026-05-01T08:00:01Z".into(),
        }),
        ServerFrame::error(ErrorCode::UnknownType, "unknown message type 'dance'"),
        ServerFrame::Ping { timestamp: 1_777_622_400_000 },
        ServerFrame::Pong { timestamp: Value::from(1_700_000_000_123_u64) },
    ];
    let pushes = push_examples().map(|push| serde_json::to_value(push).expect("frames serialize"));
    frames.iter().map(|f| serde_json::to_value(f).expect("frames serialize")).chain(pushes).collect()
}

fn v2_server_examples() -> Vec<Value> {
    let frames = [
        V2Frame::Welcome(Welcome::new("c-5f0e", "s-3f2504e0", "e-9b1d", 25_000, 300_000)),
        V2Frame::Ack { id: "m-1".into() },
        V2Frame::ChatDelta { id: "m-1".into(), delta: "You have ".into() },
        V2Frame::ChatEnd(ChatEnd {
            id: "m-1".into(),
            message: "You have spent $412 on fuel this month.".into(),
            ui_actions: vec![ui_action()],
            model: "claude-haiku-4-5".into(),
            source: "anthropic".into(),
            cached: false,
            first_token_ms: Some(380),
            latency_ms: 1_240,
        }),
        V2Frame::error(Some("m-2".into()), ErrorCode::LlmUnavailable, "PAM could not answer right now; please try again"),
        V2Frame::AuthExpiring { expires_in_ms: 60_000 },
        V2Frame::Resumed { stream_id: "s-3f2504e0".into(), replayed: 2 },
        V2Frame::ResumeFailed { stream_id: "s-77aa01".into(), reason: crate::ResumeFailure::TooOld },
        V2Frame::Ping { timestamp: 1_777_622_400_000 },
        V2Frame::Pong { timestamp: Value::from(1_700_000_000_123_u64) },
    ];
    let sequenced = frames.into_iter().zip(1..).map(|(frame, seq)| serde_json::to_value(SeqFrame { seq, frame }));
    let pushes = push_examples().into_iter().zip(20..).map(|(frame, seq)| serde_json::to_value(SeqPushFrame { seq, frame }));
    sequenced.chain(pushes).map(|v| v.expect("frames serialize")).collect()
}

/// Every generated file, as (path under the docs directory, pretty JSON text ending in a newline).
pub fn documents() -> Vec<(PathBuf, String)> {
    let mut documents = vec![(PathBuf::from(ASYNCAPI_FILE), to_text(&asyncapi()))];
    for name in SCHEMA_NAMES {
        let schema = schema(name).expect("every listed name has a schema");
        documents.push((Path::new(SCHEMA_DIR).join(format!("{name}.json")), to_text(&schema)));
    }
    documents
}

/// Pretty JSON with a trailing newline: the committed form.
pub fn to_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    text
}

/// Writes every document under `docs` (creating `docs/schema/`); returns the paths written.
pub fn write_to(docs: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(docs.join(SCHEMA_DIR))?;
    let mut written = Vec::new();
    for (path, text) in documents() {
        let path = docs.join(path);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// What differs between the committed documents under `docs` and the types: one line per
/// missing, changed or unexpected file. Empty = in sync.
pub fn drift(docs: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let documents = documents();
    for (path, text) in &documents {
        match std::fs::read_to_string(docs.join(path)) {
            Ok(committed) if committed == *text => {}
            Ok(_) => problems.push(format!("{} differs from the types", docs.join(path).display())),
            Err(error) => problems.push(format!("{}: {error}", docs.join(path).display())),
        }
    }
    if let Ok(entries) = std::fs::read_dir(docs.join(SCHEMA_DIR)) {
        for entry in entries.flatten() {
            let path = Path::new(SCHEMA_DIR).join(entry.file_name());
            if !documents.iter().any(|(known, _)| *known == path) {
                problems.push(format!("{} is not generated from the types (remove it)", docs.join(path).display()));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_is_draft_07_and_names_its_group() {
        for name in SCHEMA_NAMES {
            let schema = schema(name).unwrap();
            assert_eq!(schema["$schema"], DRAFT07, "{name}");
            assert!(schema["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        }
        assert!(schema("nope").is_none());
    }

    #[test]
    fn the_server_schemas_list_every_frame_type_including_pushes() {
        let kinds = |name: &str| -> Vec<String> {
            schema(name).unwrap()["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|branch| branch.pointer("/properties/type/const").and_then(Value::as_str).unwrap().to_string())
                .collect()
        };
        assert_eq!(kinds("legacy-server"), ["connection", "chat_response", "error", "ping", "pong", "timer_expired", "proactive_alert"]);
        assert_eq!(
            kinds("v2-server"),
            [
                "welcome",
                "ack",
                "chat_delta",
                "chat_end",
                "error",
                "auth_expiring",
                "resumed",
                "resume_failed",
                "ping",
                "pong",
                "timer_expired",
                "proactive_alert"
            ]
        );
        assert_eq!(schema("v2-server").unwrap()["required"], json!(["seq"]));
        assert!(kinds("v2-client").contains(&"resume".to_string()));
        assert!(!kinds("legacy-client").contains(&"resume".to_string()));
    }

    #[test]
    fn the_close_codes_carry_their_reconnect_class() {
        let rows = close_code_rows();
        assert_eq!(rows.len(), CloseCode::ALL.len());
        let class = |code: u16| rows.iter().find(|r| r["code"] == code).unwrap()["reconnect"].clone();
        assert_eq!(class(1000), "closed_normally");
        assert_eq!(class(1012), "may_reconnect");
        assert_eq!(class(4408), "may_reconnect");
        assert_eq!(class(4501), "do_not_reconnect");
        for row in &rows {
            let code = row["code"].as_u64().unwrap();
            let expected = match code {
                1000 => "closed_normally",
                4500..=4999 => "do_not_reconnect",
                _ => "may_reconnect",
            };
            assert_eq!(row["reconnect"], expected, "{row}");
        }
    }

    #[test]
    fn asyncapi_has_both_channels_four_operations_and_resolvable_refs() {
        let document = asyncapi();
        assert_eq!(document["asyncapi"], "3.0.0");
        assert_eq!(document["channels"]["legacy"]["address"], "/api/v1/pam/ws/{user_id}");
        assert_eq!(document["channels"]["v2"]["address"], "/api/v2/pam/ws");
        let operations = document["operations"].as_object().unwrap();
        assert_eq!(operations.len(), 4);
        let mut refs = Vec::new();
        collect_refs(&document, &mut refs);
        assert!(refs.len() > 40, "{refs:?}");
        for target in refs {
            let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("external ref {target}"));
            assert!(document.pointer(pointer).is_some(), "dangling {target}");
        }
        assert_eq!(document["x-close-codes"].as_array().unwrap().len(), CloseCode::ALL.len());
        let chat = &document["components"]["messages"]["v2.server.chat_end"];
        assert!(chat["payload"]["properties"]["seq"].is_object(), "{chat}");
        assert_eq!(chat["examples"][0]["payload"]["type"], "chat_end");
    }

    #[test]
    fn every_message_has_an_example_of_its_own_type() {
        let document = asyncapi();
        for (key, message) in document["components"]["messages"].as_object().unwrap() {
            assert_eq!(message["examples"][0]["payload"]["type"], message["name"], "{key}");
        }
    }

    fn collect_refs(value: &Value, refs: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    match (key.as_str(), child) {
                        ("$ref", Value::String(target)) => refs.push(target.clone()),
                        _ => collect_refs(child, refs),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
            _ => {}
        }
    }
}
