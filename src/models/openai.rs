//! OpenAI-compatible chat completions over server-sent events
//! (`POST {OPENAI_BASE_URL}/v1/chat/completions`, `stream: true`): text from
//! `choices[0].delta.content`, done at the first non-null `finish_reason` (even on a chunk that
//! also carries content, and whether or not `data: [DONE]` follows) or at `data: [DONE]`. Works
//! with any server speaking that API.
//!
//! Tools: offered as `tools` (`type: function` with JSON-schema `parameters`); a call arrives as
//! `delta.tool_calls[]` pieces (id and name first, then `function.arguments` in fragments, keyed
//! by `index`) ending with `finish_reason: "tool_calls"`; the next request repeats the assistant
//! message with its `tool_calls` and answers each with a `role: "tool"` message
//! (`tool_choice: "none"` on the last round).

use pam_actors::LlmRequest;
use serde_json::json;

use super::sse::{Endpoint, Offer, SseApi, Step, json_data, secret_header};
use super::tools::{self, ToolPiece, ToolRound};
use super::{ProviderFailure, prompt};
use crate::push::timers::tools::TimerTools;

/// Streams answers from an OpenAI-compatible API.
#[derive(Debug)]
pub struct OpenAiProvider(Endpoint);

impl OpenAiProvider {
    /// `models` is (accurate, fast). A base URL that already ends in `/v1` (the SDK convention)
    /// is accepted as well as the bare host.
    pub fn new(http: reqwest::Client, base_url: &str, api_key: &str, models: (String, String)) -> anyhow::Result<Self> {
        let path =
            |base: &str| if base.ends_with("/v1") { format!("{base}/chat/completions") } else { format!("{base}/v1/chat/completions") };
        Endpoint::new(http, "OPENAI_BASE_URL", base_url, path, api_key, models).map(OpenAiProvider)
    }

    /// Offers `tools` to the model.
    pub fn with_tools(mut self, tools: TimerTools) -> Self {
        self.0.tools = Some(tools);
        self
    }

    fn body(request: &LlmRequest, model: &str, rounds: &[ToolRound], offer: Offer) -> serde_json::Value {
        let prompt = offer.prompt(request);
        let mut messages = vec![json!({"role": "system", "content": prompt.system})];
        messages.extend(prompt.messages.iter().map(|m| json!({"role": m.role, "content": m.content})));
        for round in rounds {
            let calls: Vec<serde_json::Value> = round
                .calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.input().to_string()}}))
                .collect();
            let text = (!round.text.is_empty()).then_some(round.text.as_str());
            messages.push(json!({"role": "assistant", "content": text, "tool_calls": calls}));
            messages.extend(
                round.calls.iter().zip(&round.results).map(|(c, r)| json!({"role": "tool", "tool_call_id": c.id, "content": r.content})),
            );
        }
        let mut body = json!({"model": model, "messages": messages, "stream": true, "max_tokens": prompt::MAX_ANSWER_TOKENS});
        if offer != Offer::NoTools {
            let defs: Vec<serde_json::Value> = tools::definitions()
                .into_iter()
                .map(|(name, description, schema)| json!({"type": "function", "function": {"name": name, "description": description, "parameters": schema}}))
                .collect();
            body["tools"] = json!(defs);
            body["tool_choice"] = json!(if offer == Offer::Answer { "none" } else { "auto" });
        }
        body
    }
}

/// What one chunk means.
fn step(event: &eventsource_stream::Event) -> Result<Step, ProviderFailure> {
    if event.data.trim() == "[DONE]" {
        return Ok(Step::End);
    }
    let data = json_data(event)?;
    if let Some(error) = data.get("error") {
        let message = error["message"].as_str().unwrap_or("unknown error");
        return Err(ProviderFailure::Api(message.to_string()));
    }
    let Some(choices) = data["choices"].as_array() else {
        return Err(ProviderFailure::Malformed("chunk without choices".into()));
    };
    // Usage-only chunks have no choices.
    let Some(choice) = choices.first() else { return Ok(Step::Skip) };
    let finished = !choice["finish_reason"].is_null();
    if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let pieces = calls
            .iter()
            .map(|c| ToolPiece {
                index: c["index"].as_u64().unwrap_or(0),
                id: text(&c["id"]),
                name: text(&c["function"]["name"]),
                arguments: c["function"]["arguments"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        return Ok(Step::Tool { pieces, last: finished });
    }
    match (choice["delta"]["content"].as_str(), finished) {
        (Some(text), false) => Ok(Step::Text(text.to_string())),
        (Some(text), true) => Ok(Step::LastText(text.to_string())),
        (None, true) => Ok(Step::End),
        (None, false) => Ok(Step::Skip),
    }
}

impl SseApi for OpenAiProvider {
    const NAME: &'static str = "openai";

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
        let bearer = secret_header(&format!("Bearer {}", self.0.api_key))?;
        Ok(self.0.post().header("authorization", bearer).json(&Self::body(request, model, rounds, offer)))
    }

    fn step(event: &eventsource_stream::Event) -> Result<Step, ProviderFailure> {
        step(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(data: &str) -> eventsource_stream::Event {
        eventsource_stream::Event { event: "message".into(), data: data.into(), ..Default::default() }
    }

    #[test]
    fn content_done_and_errors_are_understood() {
        assert!(matches!(step(&data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#)), Ok(Step::Text(t)) if t == "Hi"));
        assert!(matches!(step(&data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)), Ok(Step::End)));
        assert!(matches!(step(&data("[DONE]")), Ok(Step::End)));
        assert!(matches!(step(&data(r#"{"error":{"message":"rate limited"}}"#)), Err(ProviderFailure::Api(_))));
        assert!(matches!(step(&data("{nope")), Err(ProviderFailure::Malformed(_))));
    }

    #[test]
    fn any_non_null_finish_reason_ends_the_answer_even_on_a_chunk_with_content() {
        let last = data(r#"{"choices":[{"index":0,"delta":{"content":"bye"},"finish_reason":"stop"}]}"#);
        assert_eq!(step(&last), Ok(Step::LastText("bye".into())));
        let length = data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#);
        assert_eq!(step(&length), Ok(Step::End));
        let still_going = data(r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#);
        assert_eq!(step(&still_going), Ok(Step::Text("a".into())));
    }

    #[test]
    fn tool_call_fragments_are_tool_pieces_and_tool_calls_ends_the_response() {
        let first = data(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"set_timer","arguments":""}}]}}]}"#,
        );
        let Ok(Step::Tool { pieces, last: false }) = step(&first) else { panic!("a tool start") };
        assert_eq!((pieces[0].id.as_deref(), pieces[0].name.as_deref()), (Some("call_1"), Some("set_timer")));
        let more = data(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"label"}}]}}]}"#);
        let Ok(Step::Tool { pieces, .. }) = step(&more) else { panic!("a tool piece") };
        assert_eq!((pieces[0].index, pieces[0].id.as_deref(), pieces[0].arguments.as_str()), (0, None, "{\"label"));
        assert_eq!(step(&data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#)), Ok(Step::End));
    }

    #[test]
    fn base_urls_with_or_without_v1_reach_the_same_endpoint() {
        rustls::crypto::ring::default_provider().install_default().ok();
        let models = || ("a".to_string(), "b".to_string());
        let bare = OpenAiProvider::new(reqwest::Client::new(), "http://h:1/", "k", models()).unwrap();
        let sdk = OpenAiProvider::new(reqwest::Client::new(), "http://h:1/v1", "k", models()).unwrap();
        assert_eq!(bare.0.url, "http://h:1/v1/chat/completions");
        assert_eq!(sdk.0.url, bare.0.url);
    }
}
