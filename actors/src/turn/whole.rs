//! The turn answered whole, for legacy sockets and the REST route: its user message is taken in,
//! the model answers (deltas are not streamed), the answer is stored and returned as one
//! [`TurnAnswer`].
//! Imports the pipeline and the intake.

use std::future::Future;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::input::{Previous, StoreInLine, TurnAnswer, TurnFailure, TurnInput, wait_for};
use super::intake::Intake;
use super::pipeline::{TurnPipeline, replayed_reply, turn_metadata};
use super::running::{TurnGuard, count_accepted};
use crate::ports::AnswerRecord;

impl TurnPipeline {
    /// Starts a REST turn on its own task, registered as running from now on (the drain waits
    /// for it). `admit` (the per-user rate limit) is asked first, on that task: a turn it refuses
    /// ends there, unstored (`None`); an admitted one runs to its end (answered and stored)
    /// whatever happens to the caller. Awaiting the handle is optional and dropping it does not
    /// cancel the turn, so a caller that starts its turn before its first await (after reading the
    /// request) loses nothing when it is dropped at any await.
    pub fn start(&self, input: TurnInput, admit: impl Future<Output = bool> + Send + 'static) -> JoinHandle<Option<TurnAnswer>> {
        let guard = self.running.begin_unadmitted(input.key(), input.origin.clone());
        let pipeline = self.clone();
        let (span, id) = (input.span.clone(), guard.id());
        let turn = async move {
            if !admit.await {
                input.span.record("outcome", "rate_limited");
                return None;
            }
            count_accepted();
            Some(pipeline.answer(input, guard, StoreInLine::alone(), None).await)
        };
        self.on_task(id, turn.instrument(span))
    }

    /// Answers `input` whole: its user message is stored in its place in `line`, its model work
    /// starts once the turn `after` (the previous one of the same connection) has ended; the
    /// caller runs it on the turn's task ([`TurnPipeline::on_task`]).
    pub(crate) async fn answer(&self, input: TurnInput, guard: TurnGuard, line: StoreInLine, after: Option<Previous>) -> TurnAnswer {
        let started = Instant::now();
        // With no earlier turn of the connection still running, history and context load while
        // the user message is stored (the history may or may not hold it yet: the prompt drops
        // it either way); behind an earlier turn they load after it, so its answer is in them.
        let after = after.filter(|previous| previous.has_changed().is_ok());
        let (intake, request) = match after {
            None => {
                let (intake, request) = tokio::join!(self.intake(&input, guard.id(), line), self.request(&input));
                (intake, Some(request))
            }
            Some(previous) => {
                let intake = self.intake(&input, guard.id(), line).await;
                wait_for(Some(previous)).await;
                (intake, None)
            }
        };
        let early = match intake {
            Intake::New { .. } => None,
            Intake::Replay(stored) => Some(("replayed", Ok(replayed_reply(stored)))),
            Intake::Busy => Some(("busy", Err(TurnFailure::still_running_elsewhere()))),
            Intake::Failed(failure) => Some(("failed", Err(failure))),
        };
        if let Some((outcome, result)) = early {
            input.span.record("outcome", outcome);
            return TurnAnswer { latency: started.elapsed(), result };
        }
        let request = match request {
            Some(request) => request,
            None => self.request(&input).await,
        };
        // A closed channel: providers skip the deltas instead of waiting for a reader.
        let (deltas, _) = mpsc::channel(1);
        let result = self.generate(&request, deltas).await;
        self.record_outcome(&result, started.elapsed());
        if let Ok(reply) = &result {
            let mut metadata = turn_metadata(reply, started.elapsed());
            metadata["client_msg_id"] = Value::from(input.client_msg_id.clone());
            let answer = AnswerRecord { key: input.key(), text: reply.text.clone(), answered_at: chrono::Utc::now(), metadata };
            self.store_answer(answer, &input.origin).await;
        }
        input.span.record("outcome", if result.is_ok() { "answered" } else { "failed" });
        drop(guard);
        TurnAnswer { latency: started.elapsed(), result: result.map_err(TurnFailure::from_llm) }
    }
}
