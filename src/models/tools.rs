//! The tools offered to remote models — `set_timer`, `list_timers`, `cancel_timer` — and how a
//! call the model streamed back is run. Each tool goes through [`TimerTools`] (the same store and
//! limits as the REST timer endpoints); its result is a JSON text the model reads before it
//! answers. A call that cannot be run (unknown tool, arguments that are no JSON object or too
//! long, a refused timer) gets an error result in words the model can pass on: never a failure of
//! the turn.
//!
//! Bounds: at most [`MAX_TOOL_ROUNDS`] rounds of tool calls per answer, [`MAX_CALLS_PER_ROUND`]
//! calls per round (more get an error result) and [`MAX_ARGUMENT_BYTES`] of arguments per call.

use chrono::{DateTime, NaiveTime, Utc};
use pam_actors::{LlmRequest, Notification};
use serde_json::{Map, Value, json};

use crate::push::timers::tools::{TimerSpec, TimerTools, When, label_of, local_time, user_timezone};

/// Rounds of tool calls one answer may take; the round after them offers no tools.
pub const MAX_TOOL_ROUNDS: usize = 3;
/// Calls run per round.
pub const MAX_CALLS_PER_ROUND: usize = 4;
/// Bytes of streamed arguments kept per call.
pub const MAX_ARGUMENT_BYTES: usize = 4_096;
/// Distinct tool calls kept from one response (more are dropped unread).
const MAX_CALLS_READ: usize = 16;

/// Appended to the system prompt when the tools are offered.
pub const SYSTEM_NOTE: &str = "\n\nTimers: to set, list or cancel the traveller's timers, reminders and alarms, use the \
set_timer, list_timers and cancel_timer tools (never pretend one was set). Tell the traveller the time it goes off as the \
tool's fire_at_local says; if a tool returns an error, say in plain words what went wrong.";

/// One tool call as the model streamed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    /// The provider's call id (`toolu_…`, `call_…`).
    pub id: String,
    pub name: String,
    /// The raw JSON argument text.
    pub arguments: String,
    /// More than [`MAX_ARGUMENT_BYTES`] arrived (the rest was dropped).
    pub oversize: bool,
}

impl ToolCall {
    /// The arguments as a JSON object, or `{}` when they are not one (what is sent back in the
    /// conversation, where the APIs require an object).
    pub fn input(&self) -> Value {
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(Value::Object(object)) if !self.oversize => Value::Object(object),
            _ => json!({}),
        }
    }
}

/// A tool call and what running it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// JSON text.
    pub content: String,
    pub is_error: bool,
}

/// One round: the model's text and calls, and the results sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRound {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub results: Vec<ToolResult>,
}

/// A piece of one tool call: its id and name when the call starts, argument text after.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct ToolPiece {
    /// Which call of the response (Anthropic: content block index; OpenAI: `tool_calls[].index`).
    pub index: u64,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

pub(super) fn add_pieces(calls: &mut std::collections::BTreeMap<u64, ToolCall>, pieces: Vec<ToolPiece>) {
    for piece in pieces {
        if !calls.contains_key(&piece.index) && calls.len() >= MAX_CALLS_READ {
            continue;
        }
        let call = calls.entry(piece.index).or_default();
        if let Some(id) = piece.id {
            call.id = id.chars().take(128).collect();
        }
        if let Some(name) = piece.name {
            call.name = name.chars().take(128).collect();
        }
        if call.arguments.len() + piece.arguments.len() > MAX_ARGUMENT_BYTES {
            call.oversize = true;
        } else {
            call.arguments.push_str(&piece.arguments);
        }
    }
}

/// What one response streamed: its text and its tool calls (in index order).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Read {
    pub(super) text: String,
    pub(super) calls: Vec<ToolCall>,
    /// What the provider reported about this response.
    pub(super) usage: super::Usage,
}

pub(super) fn finished(text: String, calls: std::collections::BTreeMap<u64, ToolCall>) -> Read {
    let calls = calls
        .into_iter()
        .map(|(index, mut call)| {
            if call.id.is_empty() {
                call.id = format!("call_{index}");
            }
            call
        })
        .collect();
    Read { text, calls, usage: super::Usage::default() }
}

/// (name, description, JSON schema of the arguments).
pub fn definitions() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "set_timer",
            "Set a timer, reminder or alarm for the traveller. Give duration_seconds for a timer or reminder \
             (\"in 20 minutes\"), or at for an alarm at a time of day (24 h HH:MM in the traveller's own timezone; \
             the next time the clock shows it). The traveller gets a notification when it goes off. Limits: 50 \
             pending timers, 30 days ahead.",
            json!({"type": "object", "properties": {
                "label": {"type": "string", "description": "What it is for, shown as the notification title, e.g. \"Check the tyres\"."},
                "duration_seconds": {"type": "integer", "minimum": 1, "maximum": 2_592_000, "description": "Fire this many seconds from now."},
                "at": {"type": "string", "pattern": "^[0-2]?[0-9]:[0-5][0-9]$", "description": "Fire at this local time of day, 24 h HH:MM."}
            }, "required": ["label"], "additionalProperties": false}),
        ),
        (
            "list_timers",
            "List the traveller's timers, reminders and alarms that have not gone off yet, soonest first, with their local times.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        (
            "cancel_timer",
            "Cancel the timer the traveller names, by its timer_id (from list_timers or set_timer: pick the one whose label, \
             type and time match; if several match, ask which instead of calling this), or all of them with all: true \
             (only their alarms or only their timers with timer_type).",
            json!({"type": "object", "properties": {
                "timer_id": {"type": "string", "description": "The timer to cancel."},
                "all": {"type": "boolean", "description": "Cancel every pending timer (of timer_type, when given)."},
                "timer_type": {"type": "string", "enum": ["timer", "alarm"], "description": "With all: only this kind."}
            }, "additionalProperties": false}),
        ),
    ]
}

fn error(message: impl Into<String>) -> ToolResult {
    ToolResult { content: json!({"error": message.into()}).to_string(), is_error: true }
}

fn ok(value: Value) -> ToolResult {
    ToolResult { content: value.to_string(), is_error: false }
}

fn timer_json(timer: &Notification, tz: chrono_tz::Tz) -> Value {
    json!({
        "timer_id": timer.id,
        "label": label_of(timer),
        "timer_type": timer.payload["timer_type"],
        "fire_at": timer.fire_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "fire_at_local": local_time(timer.fire_at, tz),
    })
}

/// Runs `call`; `nth_timer` counts this answer's `set_timer` calls (the dedupe key of the
/// timer), and is advanced by a `set_timer` call.
pub async fn run(tools: &TimerTools, request: &LlmRequest, call: &ToolCall, nth_timer: &mut usize, now: DateTime<Utc>) -> ToolResult {
    if call.oversize {
        return error(format!("the arguments are longer than {MAX_ARGUMENT_BYTES} bytes"));
    }
    let arguments = if call.arguments.trim().is_empty() { "{}" } else { call.arguments.as_str() };
    let args: Map<String, Value> = match serde_json::from_str(arguments) {
        Ok(Value::Object(args)) => args,
        _ => return error("the arguments are not a JSON object; nothing was done"),
    };
    let tz = user_timezone(&request.context);
    match call.name.as_str() {
        "set_timer" => {
            let spec = match timer_spec(&args) {
                Ok(spec) => spec,
                Err(message) => return error(message),
            };
            let nth = *nth_timer;
            *nth_timer += 1;
            match tools.set(request, nth, &spec, now).await {
                Ok(set) => ok(json!({
                    "timer_id": set.timer_id,
                    "label": set.label,
                    "timer_type": if set.timer_type == pam_protocol::TimerType::Alarm { "alarm" } else { "timer" },
                    "fire_at": set.fire_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "fire_at_local": local_time(set.fire_at, tz),
                })),
                Err(refused) => error(refused.to_string()),
            }
        }
        "list_timers" => match tools.list(&request.user_id).await {
            Ok(timers) => ok(json!({"timezone": tz.name(), "timers": timers.iter().map(|t| timer_json(t, tz)).collect::<Vec<_>>()})),
            Err(refused) => error(refused.to_string()),
        },
        "cancel_timer" => {
            let all = args.get("all").and_then(Value::as_bool).unwrap_or(false);
            let id = args.get("timer_id").and_then(Value::as_str).filter(|id| !id.is_empty() && id.len() <= 64);
            if !all && id.is_none() {
                return error("give timer_id, or all: true");
            }
            let kind = args.get("timer_type").and_then(Value::as_str).filter(|_| all);
            let cancelled = match kind {
                // "Cancel my alarms": the alarms only, each by its id.
                Some(kind) => cancel_every(tools, &request.user_id, kind).await,
                None => tools.cancel(&request.user_id, if all { None } else { id }).await,
            };
            match cancelled {
                Ok(cancelled) => ok(json!({"cancelled": cancelled.iter().map(|t| timer_json(t, tz)).collect::<Vec<_>>()})),
                Err(refused) => error(refused.to_string()),
            }
        }
        other => {
            let name: String = other.chars().take(64).collect();
            error(format!("there is no tool named '{name}'; the tools are set_timer, list_timers and cancel_timer"))
        }
    }
}

/// Cancels every pending timer of `user` whose `timer_type` is `kind`.
async fn cancel_every(
    tools: &TimerTools,
    user: &pam_protocol::UserId,
    kind: &str,
) -> Result<Vec<Notification>, crate::push::timers::tools::TimerError> {
    let mut cancelled = Vec::new();
    for timer in tools.list(user).await?.into_iter().filter(|t| t.payload["timer_type"] == kind) {
        cancelled.extend(tools.cancel(user, Some(&timer.id)).await?);
    }
    Ok(cancelled)
}

fn timer_spec(args: &Map<String, Value>) -> Result<TimerSpec, String> {
    let label = args.get("label").and_then(Value::as_str).map(str::trim).filter(|l| !l.is_empty()).ok_or("'label' is required")?;
    let seconds = args.get("duration_seconds").filter(|v| !v.is_null());
    let at = args.get("at").filter(|v| !v.is_null());
    let when = match (seconds, at) {
        (Some(seconds), None) => {
            let seconds = seconds.as_f64().filter(|s| s.is_finite() && *s >= 1.0).ok_or("'duration_seconds' must be a positive number")?;
            When::After(chrono::Duration::milliseconds((seconds.min(1e10) * 1000.0) as i64))
        }
        (None, Some(at)) => {
            When::At(at.as_str().and_then(|t| NaiveTime::parse_from_str(t, "%H:%M").ok()).ok_or("'at' must be a 24 h time HH:MM")?)
        }
        (Some(_), Some(_)) => return Err("give duration_seconds or at, not both".into()),
        (None, None) => return Err("give duration_seconds (a timer) or at (an alarm)".into()),
    };
    Ok(TimerSpec { label: label.to_string(), message: label.to_string(), when })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn piece(index: u64, arguments: &str) -> ToolPiece {
        ToolPiece { index, arguments: arguments.into(), ..ToolPiece::default() }
    }

    #[test]
    fn pieces_join_per_call_and_calls_without_an_id_get_one() {
        let mut calls = BTreeMap::new();
        let start = ToolPiece { index: 2, id: None, name: Some("list_timers".into()), arguments: String::new() };
        add_pieces(&mut calls, vec![start, piece(2, "{\"a\""), piece(2, ":1}")]);
        let read = finished("hi".into(), calls);
        assert_eq!(read.calls.len(), 1);
        assert_eq!((read.calls[0].id.as_str(), read.calls[0].arguments.as_str()), ("call_2", "{\"a\":1}"));
        assert_eq!(read.calls[0].input(), json!({"a": 1}));
    }

    #[test]
    fn arguments_past_the_byte_bound_are_dropped_and_the_call_is_marked() {
        let mut calls = BTreeMap::new();
        let long = "x".repeat(MAX_ARGUMENT_BYTES);
        add_pieces(&mut calls, vec![piece(0, "{\"label\":\""), piece(0, &long), piece(0, "\"}")]);
        let call = &finished(String::new(), calls).calls[0];
        assert!(call.oversize);
        assert!(call.arguments.len() <= MAX_ARGUMENT_BYTES);
        assert_eq!(call.input(), json!({}), "an oversize call is sent back with empty input");
    }

    #[test]
    fn at_most_sixteen_distinct_calls_are_kept_from_one_response() {
        let mut calls = BTreeMap::new();
        add_pieces(&mut calls, (0..100).map(|i| piece(i, "{}")).collect());
        assert_eq!(finished(String::new(), calls).calls.len(), MAX_CALLS_READ);
    }

    #[test]
    fn timer_arguments_need_a_label_and_exactly_one_time() {
        let spec = |args: Value| timer_spec(args.as_object().unwrap());
        assert_eq!(spec(json!({"label": "Tea", "duration_seconds": 300})).unwrap().when, When::After(chrono::Duration::minutes(5)));
        assert_eq!(spec(json!({"label": "Up", "at": "06:30"})).unwrap().when, When::At(NaiveTime::from_hms_opt(6, 30, 0).unwrap()));
        assert!(spec(json!({"duration_seconds": 300})).unwrap_err().contains("label"));
        assert!(spec(json!({"label": "Tea"})).unwrap_err().contains("duration_seconds"));
        assert!(spec(json!({"label": "Tea", "duration_seconds": 1, "at": "06:30"})).unwrap_err().contains("not both"));
        assert!(spec(json!({"label": "Up", "at": "6.30pm"})).unwrap_err().contains("HH:MM"));
        assert!(spec(json!({"label": "Tea", "duration_seconds": -5})).is_err());
    }
}
