//! Anthropic Messages API over server-sent events (`POST {ANTHROPIC_BASE_URL}/v1/messages`,
//! `stream: true`): text from `content_block_delta` events, done at `message_stop`, an `error`
//! event fails the attempt; `ping` and event types we do not know are skipped whatever their data
//! (a `ping` may come with an empty `data:` line). Used by the fallback chain.

use pam_actors::LlmRequest;
use serde_json::json;

use super::sse::{Endpoint, SseApi, Step, json_data, secret_header};
use super::{ProviderFailure, prompt};

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

    fn body(request: &LlmRequest, model: &str) -> serde_json::Value {
        let prompt = prompt::build(request);
        json!({
            "model": model,
            "max_tokens": prompt::MAX_ANSWER_TOKENS,
            "system": prompt.system,
            "messages": prompt.messages,
            "stream": true,
        })
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
                // Tool input and thinking deltas are not part of the answer text.
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
        "message_start" | "content_block_start" | "content_block_stop" | "message_delta" => {
            json_data(event)?;
            Ok(Step::Skip)
        }
        // Keep-alives, and new event types (the API says to handle unknown ones gracefully): their
        // data is none of our business, so it is not parsed.
        _ => Ok(Step::Skip),
    }
}

impl SseApi for AnthropicProvider {
    const NAME: &'static str = "anthropic";

    fn endpoint(&self) -> &Endpoint {
        &self.0
    }

    fn request(&self, request: &LlmRequest, model: &str) -> Result<reqwest::RequestBuilder, ProviderFailure> {
        let key = secret_header(&self.0.api_key)?;
        Ok(self.0.post().header("x-api-key", key).header("anthropic-version", ANTHROPIC_VERSION).json(&Self::body(request, model)))
    }

    fn step(event: &eventsource_stream::Event) -> Result<Step, ProviderFailure> {
        step(event)
    }
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
    fn pings_and_unknown_events_are_skipped_whatever_their_data() {
        for (kind, data) in [("ping", ""), ("ping", "{}"), ("ping", "not json"), ("future_event", ""), ("future_event", "{oops")] {
            assert_eq!(step(&event(kind, data)), Ok(Step::Skip), "{kind} {data:?}");
        }
    }
}
