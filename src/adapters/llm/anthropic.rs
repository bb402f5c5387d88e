//! Anthropic Messages API over server-sent events (`POST {ANTHROPIC_BASE_URL}/v1/messages`,
//! `stream: true`): text from `content_block_delta` events, done at `message_stop`, an `error`
//! event fails the attempt. Used by the fallback chain.

use pam_actors::{BoxFuture, LlmRequest};
use serde_json::json;
use tokio::sync::mpsc;

use super::sse::{Step, collect_text, json_data, secret_header};
use super::{ProviderFailure, StreamingModel, prompt};

/// The API version header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Streams answers from Anthropic.
pub struct AnthropicProvider {
    http: reqwest::Client,
    url: String,
    api_key: String,
    accurate_model: String,
    fast_model: String,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider").field("url", &self.url).field("model", &self.accurate_model).finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// `models` is (accurate, fast).
    pub fn new(http: reqwest::Client, base_url: &str, api_key: &str, models: (String, String)) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/');
        anyhow::ensure!(base.starts_with("http://") || base.starts_with("https://"), "ANTHROPIC_BASE_URL must be an http(s) URL");
        Ok(AnthropicProvider {
            http,
            url: format!("{base}/v1/messages"),
            api_key: api_key.to_string(),
            accurate_model: models.0,
            fast_model: models.1,
        })
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
        "message_start" | "content_block_start" | "content_block_stop" | "message_delta" | "ping" => {
            json_data(event)?;
            Ok(Step::Skip)
        }
        // New event types may be added (the API says to handle unknown ones gracefully).
        _ => Ok(Step::Skip),
    }
}

impl StreamingModel for AnthropicProvider {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn model(&self, fast: bool) -> &str {
        if fast { &self.fast_model } else { &self.accurate_model }
    }

    fn stream<'a>(
        &'a self,
        request: &'a LlmRequest,
        model: &'a str,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        Box::pin(async move {
            let http_request = self
                .http
                .post(&self.url)
                .header("x-api-key", secret_header(&self.api_key)?)
                .header("anthropic-version", ANTHROPIC_VERSION)
                .header("accept", "text/event-stream")
                .json(&Self::body(request, model));
            collect_text(http_request, &deltas, step).await
        })
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
}
