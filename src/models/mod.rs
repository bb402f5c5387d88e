//! Language-model adapters: Anthropic and OpenAI-compatible streaming providers, the PAM prompt,
//! the fallback chain (ending in the builtin assistant) and the response cache in front of it.
//! `app.rs` builds the whole stack once with [`build`]; health describes it with [`health_block`].
//! The builtin assistant (`builtin/`) is a model like the others. Imports settings, the breaker
//! and the timer tools of `crate::push::timers` (what `set_timer` does); never storage or a route.

pub mod anthropic;
pub mod builtin;
pub mod chain;
mod line_ends;
pub mod openai;
pub mod prompt;
pub mod response_cache;
mod sse;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmRequest};
use tokio::sync::mpsc;

use crate::models::builtin::{BUILTIN, BuiltinAssistant};
use crate::push::timers::tools::TimerTools;
use crate::settings::Settings;

pub use anthropic::AnthropicProvider;
pub use chain::{ChainDeadlines, FallbackChain};
pub use openai::OpenAiProvider;
pub use response_cache::ResponseCache;

/// How long a connection to a model API may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why one provider attempt gave no answer; `outcome` is its `pam_llm_requests_total` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderFailure {
    #[error("no first token within {0} ms")]
    FirstTokenTimeout(u128),
    #[error("no complete answer within {0} ms")]
    Timeout(u128),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("malformed stream: {0}")]
    Malformed(String),
    #[error("stream cut off before its end event")]
    CutOff,
    #[error("provider error: {0}")]
    Api(String),
    #[error("request failed: {0}")]
    Transport(String),
}

impl ProviderFailure {
    /// The `outcome` label of `pam_llm_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ProviderFailure::FirstTokenTimeout(_) => "first_token_timeout",
            ProviderFailure::Timeout(_) => "timeout",
            ProviderFailure::Status(429) => "http_429",
            ProviderFailure::Status(status) if *status >= 500 => "http_5xx",
            ProviderFailure::Status(_) => "http_4xx",
            ProviderFailure::Malformed(_) => "malformed",
            ProviderFailure::CutOff => "cut_off",
            ProviderFailure::Api(_) | ProviderFailure::Transport(_) => "error",
        }
    }

    fn into_llm_error(self) -> LlmError {
        match self {
            ProviderFailure::FirstTokenTimeout(_) | ProviderFailure::Timeout(_) => LlmError::Timeout(self.to_string()),
            ProviderFailure::Malformed(_) => LlmError::Malformed(self.to_string()),
            other => LlmError::Unavailable(other.to_string()),
        }
    }
}

/// What one streamed answer was.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Streamed {
    /// The whole answer text.
    pub text: String,
    /// Tools ran on the way (timers set, listed or cancelled): the answer is not cacheable.
    pub acted: bool,
    /// What the provider reported about the answer (summed over tool rounds).
    pub usage: Usage,
}

impl From<String> for Streamed {
    fn from(text: String) -> Self {
        Streamed { text, ..Streamed::default() }
    }
}

/// What a provider reports about one answer, when it does (Anthropic in `message_start` and
/// `message_delta`; the OpenAI stream ends before its usage chunk, so it reports none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// The model that answered, as the provider names it.
    pub response_model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl Usage {
    /// Takes what a later event of the same response says (its token counts are running totals).
    pub(crate) fn update(&mut self, later: Usage) {
        self.response_model = later.response_model.or(self.response_model.take());
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
    }

    /// Adds the next response's counts (a tool round is a request of its own).
    pub(crate) fn add(&mut self, next: Usage) {
        let sum = |a: Option<u64>, b: Option<u64>| if a.is_none() && b.is_none() { None } else { Some(a.unwrap_or(0) + b.unwrap_or(0)) };
        self.input_tokens = sum(self.input_tokens, next.input_tokens);
        self.output_tokens = sum(self.output_tokens, next.output_tokens);
        self.response_model = next.response_model.or(self.response_model.take());
    }
}

/// A remote model API that streams text: the chain's building block.
pub trait StreamingModel: Send + Sync + 'static {
    /// Provider name for metrics, logs and stored metadata (`anthropic`, `openai`).
    fn name(&self) -> &str;
    /// The model for a request: the fast one for `fast` turns, else the accurate one.
    fn model(&self, fast: bool) -> &str;
    /// Streams the answer of `model`, pushing each text delta into `deltas` (when open), and
    /// returns the full text once the provider's end event arrived (after any tool rounds).
    fn stream<'a>(
        &'a self,
        request: &'a LlmRequest,
        model: &'a str,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Streamed, ProviderFailure>>;
}

/// Any streaming model is also a plain `LlmProvider` (no deadlines, no fallback).
pub struct Standalone<M>(pub M);

impl<M: StreamingModel> LlmProvider for Standalone<M> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn generate<'a>(
        &'a self,
        request: &'a LlmRequest,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<pam_actors::LlmReply, LlmError>> {
        Box::pin(async move {
            let model = self.0.model(request.fast);
            let streamed = self.0.stream(request, model, deltas).await.map_err(ProviderFailure::into_llm_error)?;
            let mut reply = pam_actors::LlmReply::new(streamed.text, model, self.0.name());
            reply.acted = streamed.acted;
            Ok(reply)
        })
    }
}

/// The configured remote models, in fallback order: Anthropic if its key is set, then OpenAI;
/// each offered the timer tools when `timers` is given.
pub fn configured_models(settings: &Settings, timers: Option<&TimerTools>) -> anyhow::Result<Vec<Arc<dyn StreamingModel>>> {
    let mut models: Vec<Arc<dyn StreamingModel>> = Vec::new();
    let needs_http = settings.anthropic_key().is_some() || settings.openai_key().is_some();
    if !needs_http {
        return Ok(models);
    }
    rustls::crypto::ring::default_provider().install_default().ok();
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("could not build the model HTTP client: {e}"))?;
    if let Some(key) = settings.anthropic_key() {
        let models_for = (settings.anthropic_model.clone(), settings.anthropic_fast_model.clone());
        let provider = AnthropicProvider::new(http.clone(), &settings.anthropic_base_url, key, models_for)?;
        models.push(Arc::new(match timers {
            Some(timers) => provider.with_tools(timers.clone()),
            None => provider,
        }));
    }
    if let Some(key) = settings.openai_key() {
        let models_for = (settings.openai_model.clone(), settings.openai_fast_model.clone());
        let provider = OpenAiProvider::new(http, &settings.openai_base_url, key, models_for)?;
        models.push(Arc::new(match timers {
            Some(timers) => provider.with_tools(timers.clone()),
            None => provider,
        }));
    }
    Ok(models)
}

/// The whole model stack: response cache → fallback chain (configured models, then builtin).
/// `timers`: timer storage for the builtin's timer phrases and the models' timer tools.
pub fn build(settings: &Settings, timers: Option<TimerTools>) -> anyhow::Result<Arc<dyn LlmProvider>> {
    let models = configured_models(settings, timers.as_ref())?;
    if models.is_empty() {
        tracing::info!("no ANTHROPIC_API_KEY or OPENAI_API_KEY: the builtin assistant answers every chat");
    } else {
        let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
        tracing::info!(providers = ?names, "language models configured; the builtin assistant is the last fallback");
    }
    let deadlines = ChainDeadlines {
        first_token: Duration::from_millis(settings.llm_first_token_timeout_ms),
        total: Duration::from_millis(settings.llm_timeout_ms),
    };
    let builtin = timers.map_or_else(BuiltinAssistant::default, BuiltinAssistant::with_timers);
    let chain = FallbackChain::new(models, Arc::new(builtin), deadlines).with_trace_content(settings.traces.trace_content);
    Ok(Arc::new(ResponseCache::new(Arc::new(chain))))
}

/// The health document's `llm` block: the primary provider and its models, and the fallbacks.
/// `serving` is the name of the provider the gateway really uses (an override in tests).
pub fn health_block(serving: &str, settings: &Settings) -> serde_json::Value {
    let primary = match (settings.anthropic_key(), settings.openai_key()) {
        (Some(_), _) => Some(("anthropic", settings.anthropic_model.as_str(), settings.anthropic_fast_model.as_str())),
        (None, Some(_)) => Some(("openai", settings.openai_model.as_str(), settings.openai_fast_model.as_str())),
        (None, None) => None,
    };
    match primary {
        Some((provider, model, fast_model)) if provider == serving => {
            let openai_fallback = provider == "anthropic" && settings.openai_key().is_some();
            let fallbacks: Vec<&str> = openai_fallback.then_some("openai").into_iter().chain([BUILTIN]).collect();
            serde_json::json!({"provider": provider, "model": model, "fast_model": fast_model, "fallbacks": fallbacks, "status": "available"})
        }
        _ => serde_json::json!({"provider": serving, "model": serving, "fast_model": serving, "fallbacks": [], "status": "available"}),
    }
}
