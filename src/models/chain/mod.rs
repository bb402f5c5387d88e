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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pam_actors::metrics_names::LLM_REQUESTS_TOTAL;
use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ProviderFailure, StreamingModel};
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
}

impl FallbackChain {
    /// `models` are tried in order; `last_resort` (the builtin assistant) answers when all failed.
    pub fn new(models: Vec<Arc<dyn StreamingModel>>, last_resort: Arc<dyn LlmProvider>, deadlines: ChainDeadlines) -> Self {
        for model in &models {
            metrics::gauge!(LLM_CIRCUIT_OPEN, "provider" => model.name().to_string()).set(0.0);
        }
        let models = models.into_iter().map(|m| (m, CircuitBreaker::new(FAILURES_TO_OPEN, OPEN_FOR))).collect();
        FallbackChain { models, last_resort, deadlines }
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
            let route = Route {
                out: &deltas,
                forward,
                chain_started: started,
                first_token_deadline: Some(now + self.deadlines.first_token),
                deadline: Some((now + self.deadlines.total).min(budget_end)),
            };
            let attempt = drive(model.stream(request, model_name, tx), rx, route).await;
            let failure = match attempt.ended {
                Ended::Done(Ok(streamed)) => {
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
        let route = Route { out: deltas, forward, chain_started: started, first_token_deadline: None, deadline: None };
        let attempt = drive(self.last_resort.generate(request, tx), rx, route).await;
        match attempt.ended {
            Ended::Done(Ok(mut reply)) => {
                reply.first_token = Some(attempt.first_token.unwrap_or_else(|| started.elapsed()));
                reply.fallback_reason = join(&reasons);
                Ok(reply)
            }
            Ended::Done(Err(error)) => {
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
                    first_token.get_or_insert_with(|| route.chain_started.elapsed());
                }
                Some(piece) => {
                    first_token.get_or_insert_with(|| route.chain_started.elapsed());
                    forward(piece).await;
                }
                None => rx_open = false,
            },
            result = &mut work => {
                while let Ok(piece) = rx.try_recv() {
                    first_token.get_or_insert_with(|| route.chain_started.elapsed());
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
