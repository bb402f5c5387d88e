//! Anthropic Messages API over server-sent events (`POST {ANTHROPIC_BASE_URL}/v1/messages`,
//! `stream: true`): text from `content_block_delta` events, done at `message_stop`, an `error`
//! event fails the attempt; `ping` and event types we do not know are skipped whatever their data
//! (a `ping` may come with an empty `data:` line). Used by the fallback chain.
//!
//! Tools: offered as `tools` (name, description, `input_schema`); a `tool_use` content block
//! (`content_block_start`) with its input streamed as `input_json_delta` pieces is a call; the
//! next request repeats the assistant turn (text and `tool_use` blocks) and answers each call with
//! a `tool_result` block in a user turn (`tool_choice: none` on the last round).

use pam_actors::LlmRequest;
use serde_json::json;

use super::sse::{Endpoint, Offer, SseApi, Step, json_data, secret_header};
use super::tools::{self, ToolPiece, ToolRound};
use super::{ProviderFailure, Usage, prompt};
use crate::push::timers::tools::TimerTools;

/// The API version header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Streams answers from Anthropic.
#[derive(Debug)]
pub struct AnthropicProvider(Endpoint);

impl AnthropicProvider {
    /// `models` is (accurate, fast).
    pub fn new(http: reqwest::Client, base_url: &str, api_key: &str, models: (String, String)) -> anyhow::Result<Self> {
        let path = |base: &str| format!("{base}/v1/messages");
        Endpoint::new(http, "ANTHROPIC_BASE_URL", base_url, path, api_key, models).map(AnthropicProvider)
    }

    /// Offers `tools` to the model.
    pub fn with_tools(mut self, tools: TimerTools) -> Self {
        self.0.tools = Some(tools);
        self
    }

    fn body(request: &LlmRequest, model: &str, rounds: &[ToolRound], offer: Offer) -> serde_json::Value {
        let prompt = offer.prompt(request);
        let mut messages: Vec<serde_json::Value> = prompt.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        for round in rounds {
            let mut content: Vec<serde_json::Value> = Vec::new();
            if !round.text.is_empty() {
                content.push(json!({"type": "text", "text": round.text}));
            }
            content.extend(round.calls.iter().map(|c| json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.input()})));
            messages.push(json!({"role": "assistant", "content": content}));
            let results: Vec<serde_json::Value> = round
                .calls
                .iter()
                .zip(&round.results)
                .map(|(c, r)| json!({"type": "tool_result", "tool_use_id": c.id, "content": r.content, "is_error": r.is_error}))
                .collect();
            messages.push(json!({"role": "user", "content": results}));
        }
        let mut body = json!({
            "model": model,
            "max_tokens": prompt::MAX_ANSWER_TOKENS,
            "system": prompt.system,
            "messages": messages,
            "stream": true,
        });
        if offer != Offer::NoTools {
            let defs: Vec<serde_json::Value> = tools::definitions()
                .into_iter()
                .map(|(name, description, schema)| json!({"name": name, "description": description, "input_schema": schema}))
                .collect();
            body["tools"] = json!(defs);
            body["tool_choice"] = if offer == Offer::Answer { json!({"type": "none"}) } else { json!({"type": "auto"}) };
        }
        body
    }
}

/// What one Anthropic event means.
fn step(event: &eventsource_stream::Event) -> Result<Step, ProviderFailure> {
    match event.event.as_str() {
        "content_block_delta" => {
            let data = json_data(event)?;
            match data["delta"]["type"].as_str() {
                Some("text_delta") => match data["delta"]["text"].as_str() {
                    Some(text) => Ok(Step::Text(text.to_string())),
                    None => Err(ProviderFailure::Malformed("text_delta without text".into())),
                },
                Some("input_json_delta") => {
                    let arguments = data["delta"]["partial_json"].as_str().unwrap_or_default().to_string();
                    Ok(Step::Tool {
                        pieces: vec![ToolPiece { index: block_index(&data)?, arguments, ..ToolPiece::default() }],
                        last: false,
                    })
                }
                // Thinking deltas are not part of the answer text.
                Some(_) => Ok(Step::Skip),
                None => Err(ProviderFailure::Malformed("content_block_delta without a delta type".into())),
            }
        }
        "message_stop" => Ok(Step::End),
        "error" => {
            let data = json_data(event)?;
            let kind = data["error"]["type"].as_str().unwrap_or("error");
            let message = data["error"]["message"].as_str().unwrap_or("");
            Err(ProviderFailure::Api(format!("{kind}: {message}")))
        }
        "content_block_start" => {
            let data = json_data(event)?;
            let block = &data["content_block"];
            if block["type"] != "tool_use" {
                return Ok(Step::Skip);
            }
            let text = |key: &str| block[key].as_str().map(str::to_string);
            let piece = ToolPiece {
                index: block_index(&data)?,
                id: text("id"),
                name: Some(text("name").unwrap_or_default()),
                arguments: String::new(),
            };
            Ok(Step::Tool { pieces: vec![piece], last: false })
        }
        "message_start" | "content_block_stop" | "message_delta" => {
            json_data(event)?;
            Ok(Step::Skip)
        }
        // Keep-alives, and new event types (the API says to handle unknown ones gracefully): their
        // data is none of our business, so it is not parsed.
        _ => Ok(Step::Skip),
    }
}

fn block_index(data: &serde_json::Value) -> Result<u64, ProviderFailure> {
    data["index"].as_u64().ok_or_else(|| ProviderFailure::Malformed("a tool block without an index".into()))
}

impl SseApi for AnthropicProvider {
    const NAME: &'static str = "anthropic";

    fn endpoint(&self) -> &Endpoint {
        &self.0
    }

    fn request(
        &self,
        request: &LlmRequest,
        model: &str,
        rounds: &[ToolRound],
        offer: Offer,
    ) -> Result<reqwest::RequestBuilder, ProviderFailure> {
        let key = secret_header(&self.0.api_key)?;
        let body = Self::body(request, model, rounds, offer);
        Ok(self.0.post().header("x-api-key", key).header("anthropic-version", ANTHROPIC_VERSION).json(&body))
    }

    fn step(event: &eventsource_stream::Event) -> Result<Step, ProviderFailure> {
        step(event)
    }

    fn usage(event: &eventsource_stream::Event) -> Option<Usage> {
        usage(event)
    }
}

/// The model and token counts of `message_start` (input) and `message_delta` (output so far).
fn usage(event: &eventsource_stream::Event) -> Option<Usage> {
    let data: serde_json::Value = match event.event.as_str() {
        "message_start" | "message_delta" => serde_json::from_str(&event.data).ok()?,
        _ => return None,
    };
    let usage = if event.event == "message_start" { &data["message"]["usage"] } else { &data["usage"] };
    Some(Usage {
        response_model: data["message"]["model"].as_str().map(str::to_string),
        input_tokens: usage["input_tokens"].as_u64(),
        output_tokens: usage["output_tokens"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str) -> eventsource_stream::Event {
        eventsource_stream::Event { event: kind.into(), data: data.into(), ..Default::default() }
    }

    #[test]
    fn text_deltas_stop_and_errors_are_understood() {
        let delta = event("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#);
        assert!(matches!(step(&delta), Ok(Step::Text(t)) if t == "Hi"));
        assert!(matches!(step(&event("message_stop", r#"{"type":"message_stop"}"#)), Ok(Step::End)));
        let error = event("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
        assert_eq!(step(&error).err(), Some(ProviderFailure::Api("overloaded_error: Overloaded".into())));
        assert!(matches!(step(&event("content_block_delta", "{oops")), Err(ProviderFailure::Malformed(_))));
    }

    #[test]
    fn a_tool_use_block_and_its_streamed_input_are_tool_pieces() {
        let start = event(
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"set_timer","input":{}}}"#,
        );
        let Ok(Step::Tool { pieces, last: false }) = step(&start) else { panic!("a tool start") };
        assert_eq!((pieces[0].index, pieces[0].id.as_deref(), pieces[0].name.as_deref()), (1, Some("toolu_1"), Some("set_timer")));
        let delta = event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"la"}}"#,
        );
        let Ok(Step::Tool { pieces, .. }) = step(&delta) else { panic!("a tool piece") };
        assert_eq!((pieces[0].index, pieces[0].arguments.as_str()), (1, "{\"la"));
        let text_block =
            event("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#);
        assert_eq!(step(&text_block), Ok(Step::Skip));
    }

    #[test]
    fn the_model_and_token_counts_come_from_message_start_and_message_delta() {
        let start = event(
            "message_start",
            r#"{"type":"message_start","message":{"model":"claude-x-1","usage":{"input_tokens":12,"output_tokens":1}}}"#,
        );
        let expected = Usage { response_model: Some("claude-x-1".into()), input_tokens: Some(12), output_tokens: Some(1) };
        assert_eq!(usage(&start), Some(expected));
        let delta = event("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#);
        let mut total = usage(&start).unwrap();
        total.update(usage(&delta).unwrap());
        assert_eq!((total.response_model.as_deref(), total.input_tokens, total.output_tokens), (Some("claude-x-1"), Some(12), Some(7)));
        assert_eq!(usage(&event("ping", "")), None);
    }

    #[test]
    fn pings_and_unknown_events_are_skipped_whatever_their_data() {
        for (kind, data) in [("ping", ""), ("ping", "{}"), ("ping", "not json"), ("future_event", ""), ("future_event", "{oops")] {
            assert_eq!(step(&event(kind, data)), Ok(Step::Skip), "{kind} {data:?}");
        }
    }
}
