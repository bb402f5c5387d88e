//! `FallbackChain`: the `LlmProvider` the gateway uses. Tries the configured remote models in
//! order (Anthropic, then OpenAI) under deadlines, and ends with the builtin assistant, which
//! always answers.
//!
//! Deadlines, per remote attempt: the first text delta within `PAM_LLM_FIRST_TOKEN_TIMEOUT_MS`,
//! the whole answer within `PAM_LLM_TIMEOUT_MS`. Every attempt also ends by the chain's own budget
//! (`PAM_LLM_TIMEOUT_MS` from the start of the turn, less a small reserve for the builtin), so the
//! fallback always answers before the turn's outer deadline (`TurnPipeline.llm_timeout`, the same
//! setting) could cut it short.
//!
//! A stall, a 429/5xx, a malformed stream, an `error` event or a stream cut off before its end
//! event moves on to the next provider. Each failed attempt is counted in
//! `pam_llm_requests_total{provider,model,outcome}` here; the attempt that answers is counted
//! `ok` by the `TurnPipeline`, which sees the final reply.
//!
//! Each remote model has a circuit breaker: after 3 failed attempts in a row it is skipped for
//! 30 s (outcome `circuit_open`, gauge `pam_llm_circuit_open{provider}`), so an outage of the
//! primary costs each turn nothing instead of a first-token timeout; after the pause exactly one
//! turn tries it again (concurrent turns still skip it until that trial ends) and its success
//! closes the breaker.
//!
//! Streaming consumers (protocol v2 `chat_delta`): deltas are forwarded live while nothing has
//! failed. Once a provider that already streamed deltas fails, the chain forwards **no further
//! deltas** for that turn; the fallback's full answer is only in the returned `LlmReply.text`,
//! which v2 sends as `chat_end.message`. Consumers must therefore treat deltas as a preview and
//! replace it with `chat_end.message` (which is always the whole, authoritative answer). The
//! stream never mixes text from two providers.
//!
//! Each attempt (the builtin's too) is a span of the turn's trace named after the OpenTelemetry
//! GenAI conventions (`chat {model}`, `gen_ai.*`, `error.type` when it fell back, the first token
//! as an event); message text goes in only with `PAM_TRACE_CONTENT=true`. Reported token counts
//! are also counted in `pam_llm_tokens_total`, labelled with the configured model name.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pam_actors::metrics_names::{LLM_REQUESTS_TOTAL, LLM_TOKENS_TOTAL};
use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use super::{ProviderFailure, StreamingModel, Usage};
use crate::breaker::{CircuitBreaker, Transition};

/// `1` while a provider's breaker is open.
pub const LLM_CIRCUIT_OPEN: &str = "pam_llm_circuit_open";
/// Failed attempts in a row that open a provider's breaker.
const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker skips its provider.
const OPEN_FOR: Duration = Duration::from_secs(30);

/// Deltas buffered between a provider and the chain.
const DELTA_BUFFER: usize = 64;
/// Longest time kept back from the remote attempts for the builtin to answer.
const BUILTIN_RESERVE: Duration = Duration::from_millis(500);

/// The two model deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainDeadlines {
    /// To the first text delta (`PAM_LLM_FIRST_TOKEN_TIMEOUT_MS`).
    pub first_token: Duration,
    /// For the whole answer (`PAM_LLM_TIMEOUT_MS`).
    pub total: Duration,
}

/// Remote models in order, then the last resort.
pub struct FallbackChain {
    models: Vec<(Arc<dyn StreamingModel>, CircuitBreaker)>,
    last_resort: Arc<dyn LlmProvider>,
    deadlines: ChainDeadlines,
    /// `PAM_TRACE_CONTENT`: message text in the attempt spans.
    trace_content: bool,
}

/// How one attempt ended.
enum Ended<T> {
    Done(T),
    /// A deadline passed; `first_token` says which one.
    Deadline {
        first_token: bool,
    },
}

/// One driven attempt.
struct Attempt<T> {
    ended: Ended<T>,
    /// Since the chain started, to this attempt's first delta.
    first_token: Option<Duration>,
}

/// Where the attempt's deltas go and when it must stop.
struct Route<'a> {
    out: &'a mpsc::Sender<String>,
    forward: bool,
    chain_started: Instant,
    first_token_deadline: Option<Instant>,
    deadline: Option<Instant>,
    /// The attempt's span, which gets the first token as an event.
    span: &'a Span,
}

impl FallbackChain {
    /// `models` are tried in order; `last_resort` (the builtin assistant) answers when all failed.
    pub fn new(models: Vec<Arc<dyn StreamingModel>>, last_resort: Arc<dyn LlmProvider>, deadlines: ChainDeadlines) -> Self {
        for model in &models {
            metrics::gauge!(LLM_CIRCUIT_OPEN, "provider" => model.name().to_string()).set(0.0);
            for name in [model.model(false), model.model(true)] {
                for direction in ["input", "output"] {
                    let labels =
                        [("provider", model.name().to_string()), ("model", name.to_string()), ("direction", direction.to_string())];
                    metrics::counter!(LLM_TOKENS_TOTAL, &labels).absolute(0);
                }
            }
        }
        let models = models.into_iter().map(|m| (m, CircuitBreaker::new(FAILURES_TO_OPEN, OPEN_FOR))).collect();
        FallbackChain { models, last_resort, deadlines, trace_content: false }
    }

    /// Puts the user's message and the answer in the attempt spans (`PAM_TRACE_CONTENT`).
    pub fn with_trace_content(mut self, on: bool) -> Self {
        self.trace_content = on;
        self
    }

    /// The span of one attempt, under the turn's span.
    fn attempt_span(&self, provider: &str, model: &str, request: &LlmRequest) -> Span {
        let span = tracing::info_span!(target: pam_actors::trace::TARGET, "model_attempt",
            otel.name = format!("chat {model}"), otel.kind = "client", otel.status_code = Empty,
            gen_ai.operation.name = "chat", gen_ai.provider.name = provider, gen_ai.request.model = model,
            gen_ai.response.model = Empty, gen_ai.usage.input_tokens = Empty, gen_ai.usage.output_tokens = Empty,
            error.type = Empty, gen_ai.input.messages = Empty, gen_ai.output.messages = Empty);
        if self.trace_content {
            let input = serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": request.message}]}]);
            span.record("gen_ai.input.messages", input.to_string());
        }
        span
    }

    /// Records a finished attempt's answer on its span and its token counts in the metric.
    fn record_answer(&self, span: &Span, provider: &str, model: &str, text: &str, usage: &Usage) {
        span.record("gen_ai.response.model", usage.response_model.as_deref().unwrap_or(model));
        for (field, direction, tokens) in
            [("gen_ai.usage.input_tokens", "input", usage.input_tokens), ("gen_ai.usage.output_tokens", "output", usage.output_tokens)]
        {
            if let Some(tokens) = tokens {
                span.record(field, tokens);
                let labels = [("provider", provider.to_string()), ("model", model.to_string()), ("direction", direction.to_string())];
                metrics::counter!(LLM_TOKENS_TOTAL, &labels).increment(tokens);
            }
        }
        if self.trace_content {
            let output = serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]);
            span.record("gen_ai.output.messages", output.to_string());
        }
    }

    async fn answer(&self, request: &LlmRequest, deltas: mpsc::Sender<String>) -> Result<LlmReply, LlmError> {
        let started = Instant::now();
        let reserve = (self.deadlines.total / 10).min(BUILTIN_RESERVE);
        let budget_end = started + self.deadlines.total.saturating_sub(reserve);
        let mut reasons: Vec<String> = Vec::new();
        let mut forward = true;
        for (model, breaker) in &self.models {
            let (provider, model_name) = (model.name(), model.model(request.fast));
            let now = Instant::now();
            if now >= budget_end {
                reasons.push(format!("{provider}: skipped, no time left"));
                continue;
            }
            let Some(permit) = breaker.admit() else {
                metrics::counter!(LLM_REQUESTS_TOTAL, "provider" => provider.to_string(), "model" => model_name.to_string(), "outcome" => "circuit_open")
                    .increment(1);
                reasons.push(format!("{provider}: skipped, circuit open after repeated failures"));
                continue;
            };
            let (tx, rx) = mpsc::channel(DELTA_BUFFER);
            let span = self.attempt_span(provider, model_name, request);
            let route = Route {
                out: &deltas,
                forward,
                chain_started: started,
                first_token_deadline: Some(now + self.deadlines.first_token),
                deadline: Some((now + self.deadlines.total).min(budget_end)),
                span: &span,
            };
            let attempt = drive(model.stream(request, model_name, tx).instrument(span.clone()), rx, route).await;
            let failure = match attempt.ended {
                Ended::Done(Ok(streamed)) => {
                    self.record_answer(&span, provider, model_name, &streamed.text, &streamed.usage);
                    if permit.succeeded() == Some(Transition::Closed) {
                        metrics::gauge!(LLM_CIRCUIT_OPEN, "provider" => provider.to_string()).set(0.0);
                        tracing::info!(provider, "model answers again; circuit closed");
                    }
                    let mut reply = LlmReply::new(streamed.text, model_name, provider);
                    reply.acted = streamed.acted;
                    reply.first_token = attempt.first_token;
                    reply.fallback_reason = join(&reasons);
                    return Ok(reply);
                }
                Ended::Done(Err(failure)) => failure,
                Ended::Deadline { first_token: true } => ProviderFailure::FirstTokenTimeout(self.deadlines.first_token.as_millis()),
                Ended::Deadline { first_token: false } => ProviderFailure::Timeout(self.deadlines.total.as_millis()),
            };
            metrics::counter!(LLM_REQUESTS_TOTAL, "provider" => provider.to_string(), "model" => model_name.to_string(), "outcome" => failure.outcome())
                .increment(1);
            // The outcome label is the failure's type: the trace tools group fallbacks by it.
            span.record("error.type", failure.outcome()).record("otel.status_code", "error");
            tracing::warn!(provider, model = model_name, outcome = failure.outcome(), reason = %failure, "model attempt failed; falling back");
            if permit.failed() == Some(Transition::Opened) {
                metrics::gauge!(LLM_CIRCUIT_OPEN, "provider" => provider.to_string()).set(1.0);
                tracing::warn!(
                    provider,
                    "model failed {FAILURES_TO_OPEN} times in a row; skipping it for {} s",
                    breaker.open_for().as_secs()
                );
            }
            reasons.push(format!("{provider}: {failure}"));
            // A half-streamed answer was already sent: the rest of this turn is not streamed.
            forward &= attempt.first_token.is_none();
        }
        self.last_resort_answer(request, &deltas, forward, started, reasons).await
    }

    async fn last_resort_answer(
        &self,
        request: &LlmRequest,
        deltas: &mpsc::Sender<String>,
        forward: bool,
        started: Instant,
        reasons: Vec<String>,
    ) -> Result<LlmReply, LlmError> {
        let (tx, rx) = mpsc::channel(DELTA_BUFFER);
        let provider = self.last_resort.name();
        let span = self.attempt_span(provider, provider, request);
        let route = Route { out: deltas, forward, chain_started: started, first_token_deadline: None, deadline: None, span: &span };
        let attempt = drive(self.last_resort.generate(request, tx).instrument(span.clone()), rx, route).await;
        match attempt.ended {
            Ended::Done(Ok(mut reply)) => {
                span.record("gen_ai.response.model", reply.model.as_str());
                if self.trace_content {
                    let output = serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": reply.text}]}]);
                    span.record("gen_ai.output.messages", output.to_string());
                }
                reply.first_token = Some(attempt.first_token.unwrap_or_else(|| started.elapsed()));
                reply.fallback_reason = join(&reasons);
                Ok(reply)
            }
            Ended::Done(Err(error)) => {
                span.record("error.type", "error").record("otel.status_code", "error");
                let mut all = reasons;
                all.push(format!("{}: {error}", self.last_resort.name()));
                Err(LlmError::Unavailable(all.join("; ")))
            }
            Ended::Deadline { .. } => unreachable!("the last resort runs without a deadline"),
        }
    }
}

fn join(reasons: &[String]) -> Option<String> {
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Runs `work` while draining its deltas (noting the first, forwarding when `route.forward` and
/// the consumer listens) until it finishes or a deadline passes.
async fn drive<T>(work: impl Future<Output = T>, mut rx: mpsc::Receiver<String>, route: Route<'_>) -> Attempt<T> {
    tokio::pin!(work);
    let mut first_token = None;
    let mut rx_open = true;
    let (out, forwarding) = (route.out, route.forward);
    let forward = |piece: String| async move {
        if forwarding && !out.is_closed() {
            let _ = out.send(piece).await;
        }
    };
    loop {
        let waiting_first = first_token.is_none();
        let deadline = if waiting_first { earliest(route.first_token_deadline, route.deadline) } else { route.deadline };
        let first_token_fires = waiting_first && route.first_token_deadline.is_some() && deadline == route.first_token_deadline;
        tokio::select! {
            biased;
            piece = rx.recv(), if rx_open => match piece {
                // A provider running tools says it is alive with an empty delta: it ends the
                // wait for the first token but is nothing to forward.
                Some(piece) if piece.is_empty() => {
                    note_first_token(&mut first_token, &route);
                }
                Some(piece) => {
                    note_first_token(&mut first_token, &route);
                    forward(piece).await;
                }
                None => rx_open = false,
            },
            result = &mut work => {
                while let Ok(piece) = rx.try_recv() {
                    note_first_token(&mut first_token, &route);
                    if !piece.is_empty() {
                        forward(piece).await;
                    }
                }
                return Attempt { ended: Ended::Done(result), first_token };
            }
            () = sleep_until(deadline) => {
                return Attempt { ended: Ended::Deadline { first_token: first_token_fires }, first_token };
            }
        }
    }
}

/// The first delta of an attempt: its time since the chain started, and an event on its span.
fn note_first_token(first_token: &mut Option<Duration>, route: &Route<'_>) {
    if first_token.is_none() {
        let elapsed = route.chain_started.elapsed();
        *first_token = Some(elapsed);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(target: pam_actors::trace::TARGET, parent: route.span, first_token_ms = ms, "gen_ai.first_token");
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl LlmProvider for FallbackChain {
    /// The primary provider (the first remote model, else the last resort).
    fn name(&self) -> &str {
        self.models.first().map_or_else(|| self.last_resort.name(), |(m, _)| m.name())
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(self.answer(request, deltas))
    }
}

#[cfg(test)]
mod tests;
