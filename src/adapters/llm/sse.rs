//! The part both streaming providers share: each describes its API as an `SseApi` (request and
//! event meaning) and gets `StreamingModel` from here — send the request, map a refused status,
//! parse the body as server-sent events (eventsource-stream) and collect the text the provider's
//! event handler finds, pushing each piece into the deltas channel as it arrives.

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::StreamExt;
use pam_actors::{BoxFuture, LlmRequest};
use reqwest::header::HeaderValue;
use tokio::sync::mpsc;

use super::{ProviderFailure, StreamingModel};

/// One server-sent-events chat API: how to build its request and what its events mean. Every
/// such API is a `StreamingModel` through the impl below.
pub(super) trait SseApi: Send + Sync + 'static {
    /// Provider name for metrics, logs and stored metadata.
    const NAME: &'static str;
    fn endpoint(&self) -> &Endpoint;
    /// The HTTP request for `model` (URL, auth header, body).
    fn request(&self, request: &LlmRequest, model: &str) -> Result<reqwest::RequestBuilder, ProviderFailure>;
    /// What one event means.
    fn step(event: &Event) -> Result<Step, ProviderFailure>;
}

/// Where and as whom a provider is called. `Debug` names the URL and model, never the key.
pub(super) struct Endpoint {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) api_key: String,
    pub(super) models: ModelPair,
}

impl Endpoint {
    /// `base_url` must be http(s) (`setting` names it in the error); `path` turns the trimmed
    /// base into the endpoint URL; `models` is (accurate, fast).
    pub(super) fn new(
        http: reqwest::Client,
        setting: &str,
        base_url: &str,
        path: impl FnOnce(&str) -> String,
        api_key: &str,
        models: (String, String),
    ) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/');
        anyhow::ensure!(base.starts_with("http://") || base.starts_with("https://"), "{setting} must be an http(s) URL");
        Ok(Endpoint { http, url: path(base), api_key: api_key.to_string(), models: ModelPair { accurate: models.0, fast: models.1 } })
    }

    /// A streaming POST to the endpoint; the provider adds its auth header and body.
    pub(super) fn post(&self) -> reqwest::RequestBuilder {
        self.http.post(&self.url).header("accept", "text/event-stream")
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).field("model", &self.models.accurate).finish_non_exhaustive()
    }
}

/// A provider's two models: accurate, and fast for simple turns.
#[derive(Debug, Clone)]
pub(super) struct ModelPair {
    pub(super) accurate: String,
    pub(super) fast: String,
}

impl<T: SseApi> StreamingModel for T {
    fn name(&self) -> &str {
        T::NAME
    }

    fn model(&self, fast: bool) -> &str {
        let models = &self.endpoint().models;
        if fast { &models.fast } else { &models.accurate }
    }

    fn stream<'a>(
        &'a self,
        request: &'a LlmRequest,
        model: &'a str,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        Box::pin(async move { collect_text(self.request(request, model)?, &deltas, T::step).await })
    }
}

/// What one event means to the provider.
pub(super) enum Step {
    /// A piece of the answer.
    Text(String),
    /// The provider's end event: the answer is complete.
    End,
    /// The answer is finished but an end marker may still follow; a clean EOF is fine now.
    Finished,
    /// Nothing for us (pings, bookkeeping events).
    Skip,
}

/// A header value that is never printed by reqwest/hyper debug output (API keys).
pub(super) fn secret_header(value: &str) -> Result<HeaderValue, ProviderFailure> {
    let mut header =
        HeaderValue::from_str(value).map_err(|_| ProviderFailure::Transport("the API key is not a valid header value".into()))?;
    header.set_sensitive(true);
    Ok(header)
}

/// Sends `request` and streams its events through `on_event` until the end event.
pub(super) async fn collect_text(
    request: reqwest::RequestBuilder,
    deltas: &mpsc::Sender<String>,
    mut on_event: impl FnMut(&Event) -> Result<Step, ProviderFailure> + Send,
) -> Result<String, ProviderFailure> {
    let response = request.send().await.map_err(|e| ProviderFailure::Transport(without_url(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderFailure::Status(status.as_u16()));
    }
    let mut events = response.bytes_stream().eventsource();
    let mut text = String::new();
    let mut finished = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(_)) => return Err(ProviderFailure::CutOff),
            Err(other) => return Err(ProviderFailure::Malformed(other.to_string())),
        };
        match on_event(&event)? {
            Step::Text(piece) if piece.is_empty() => {}
            Step::Text(piece) => {
                text.push_str(&piece);
                if !deltas.is_closed() {
                    let _ = deltas.send(piece).await;
                }
            }
            Step::End => return Ok(text),
            Step::Finished => finished = true,
            Step::Skip => {}
        }
    }
    if finished { Ok(text) } else { Err(ProviderFailure::CutOff) }
}

/// Parses an event's JSON data, or says the stream is malformed.
pub(super) fn json_data(event: &Event) -> Result<serde_json::Value, ProviderFailure> {
    serde_json::from_str(&event.data).map_err(|e| {
        let kind = if event.event.is_empty() { "message" } else { event.event.as_str() };
        ProviderFailure::Malformed(format!("`{kind}` event data is not JSON ({e})"))
    })
}

/// A transport error's text without the URL (base URLs may embed credentials).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    kind.to_string()
}
