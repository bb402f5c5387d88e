//! OpenAI-compatible chat completions over server-sent events
//! (`POST {OPENAI_BASE_URL}/v1/chat/completions`, `stream: true`): text from
//! `choices[0].delta.content`, done at `data: [DONE]`. Works with any server speaking that API.

use pam_actors::{BoxFuture, LlmRequest};
use serde_json::json;
use tokio::sync::mpsc;

use super::sse::{Step, collect_text, json_data, secret_header};
use super::{ProviderFailure, StreamingModel, prompt};

/// Streams answers from an OpenAI-compatible API.
pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
    api_key: String,
    accurate_model: String,
    fast_model: String,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider").field("url", &self.url).field("model", &self.accurate_model).finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// `models` is (accurate, fast). A base URL that already ends in `/v1` (the SDK convention)
    /// is accepted as well as the bare host.
    pub fn new(http: reqwest::Client, base_url: &str, api_key: &str, models: (String, String)) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/');
        anyhow::ensure!(base.starts_with("http://") || base.starts_with("https://"), "OPENAI_BASE_URL must be an http(s) URL");
        let url = if base.ends_with("/v1") { format!("{base}/chat/completions") } else { format!("{base}/v1/chat/completions") };
        Ok(OpenAiProvider { http, url, api_key: api_key.to_string(), accurate_model: models.0, fast_model: models.1 })
    }

    fn body(request: &LlmRequest, model: &str) -> serde_json::Value {
        let prompt = prompt::build(request);
        let mut messages = vec![json!({"role": "system", "content": prompt.system})];
        messages.extend(prompt.messages.iter().map(|m| json!({"role": m.role, "content": m.content})));
        json!({"model": model, "messages": messages, "stream": true, "max_tokens": prompt::MAX_ANSWER_TOKENS})
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
    if let Some(text) = choice["delta"]["content"].as_str() {
        return Ok(Step::Text(text.to_string()));
    }
    if choice["finish_reason"].is_string() { Ok(Step::Finished) } else { Ok(Step::Skip) }
}

impl StreamingModel for OpenAiProvider {
    fn name(&self) -> &str {
        "openai"
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
                .header("authorization", secret_header(&format!("Bearer {}", self.api_key))?)
                .header("accept", "text/event-stream")
                .json(&Self::body(request, model));
            collect_text(http_request, &deltas, step).await
        })
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
        assert!(matches!(step(&data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)), Ok(Step::Finished)));
        assert!(matches!(step(&data("[DONE]")), Ok(Step::End)));
        assert!(matches!(step(&data(r#"{"error":{"message":"rate limited"}}"#)), Err(ProviderFailure::Api(_))));
        assert!(matches!(step(&data("{nope")), Err(ProviderFailure::Malformed(_))));
    }

    #[test]
    fn base_urls_with_or_without_v1_reach_the_same_endpoint() {
        rustls::crypto::ring::default_provider().install_default().ok();
        let models = || ("a".to_string(), "b".to_string());
        let bare = OpenAiProvider::new(reqwest::Client::new(), "http://h:1/", "k", models()).unwrap();
        let sdk = OpenAiProvider::new(reqwest::Client::new(), "http://h:1/v1", "k", models()).unwrap();
        assert_eq!(bare.url, "http://h:1/v1/chat/completions");
        assert_eq!(sdk.url, bare.url);
    }
}
