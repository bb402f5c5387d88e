//! The streamed v2 turn on top of `TurnPipeline`: store the user message (then `ack`), stream the
//! model's deltas as `chat_delta`, store the answer, send `chat_end` with the full text. A repeated id
//! replays the stored answer without asking the model; a cancel stores the partial answer.
//! Frames go into the connection's `ResumableStream`, so a turn whose socket closed still reaches
//! the client through `resume`. Run by the `OrchestratorActor`.
//! Imports the pipeline, the intake and the stream.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ChatEnd, V2Frame};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::input::{Previous, StoreInLine, TurnFailure, TurnInput, wait_for};
use super::intake::Intake;
use super::pipeline::{TurnPipeline, replayed_reply, turn_metadata};
use super::running::TurnGuard;
use crate::ports::{AnswerRecord, LlmReply, StoredAnswer};
use crate::stream::ResumableStream;

/// Deltas buffered between the provider and the stream.
const DELTA_QUEUE: usize = 64;

/// One v2 chat to answer.
pub(crate) struct StreamedJob {
    /// The client's message id (idempotency key).
    pub id: String,
    pub input: TurnInput,
    pub stream: Arc<ResumableStream>,
    /// Fires on `cancel`; a dropped sender (the orchestrator went away) is not a cancel.
    pub cancel: oneshot::Receiver<()>,
}

/// How a streamed turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamedEnd {
    Answered,
    Replayed,
    Cancelled,
    Failed,
}

impl TurnPipeline {
    /// Answers one v2 chat, sending every frame into `job.stream`: its user message is stored in
    /// its place in `line`, its model work starts once the turn `after` has ended.
    pub(crate) async fn answer_streamed(
        &self,
        mut job: StreamedJob,
        guard: TurnGuard,
        line: StoreInLine,
        after: Option<Previous>,
    ) -> StreamedEnd {
        let started = Instant::now();
        let id = job.id.clone();
        let early = match self.intake(&job.input, guard.id(), line).await {
            Intake::New { durable: true } => None,
            Intake::New { durable: false } => Some(fail(&job.stream, id.clone(), TurnFailure::storage_unavailable())),
            Intake::Replay(stored) => Some(replay(&job.stream, id.clone(), stored)),
            Intake::Busy => Some(fail(&job.stream, id.clone(), TurnFailure::still_running_elsewhere())),
            Intake::Failed(failure) => Some(fail(&job.stream, id.clone(), failure)),
        };
        if let Some(end) = early {
            job.input.span.record("outcome", if end == StreamedEnd::Replayed { "replayed" } else { "failed" });
            // Still in line: the connection's next turn waits for this one, and so for the one before.
            wait_for(after).await;
            return end;
        }
        job.stream.send(V2Frame::Ack { id: id.clone() });
        wait_for(after).await;
        let request = self.request(&job.input).await;
        let (deltas, mut received) = mpsc::channel::<String>(DELTA_QUEUE);
        let generation = self.generate(&request, deltas);
        tokio::pin!(generation);
        let mut partial = String::new();
        let mut cancel_open = true;
        let result = loop {
            tokio::select! {
                biased;
                cancelled = &mut job.cancel, if cancel_open => match cancelled {
                    Ok(()) => break None,
                    Err(_) => cancel_open = false,
                },
                Some(delta) = received.recv() => stream_delta(&job.stream, &id, &mut partial, delta),
                result = &mut generation => {
                    while let Ok(delta) = received.try_recv() {
                        stream_delta(&job.stream, &id, &mut partial, delta);
                    }
                    break Some(result);
                }
            }
        };
        let latency = started.elapsed();
        let end = match result {
            None => {
                self.finish_cancelled(&job, partial, latency).await;
                StreamedEnd::Cancelled
            }
            Some(Ok(reply)) => {
                self.record_outcome(&Ok(reply.clone()), latency);
                let mut metadata = turn_metadata(&reply, latency);
                metadata["client_msg_id"] = Value::from(id.clone());
                metadata["cancelled"] = Value::Bool(false);
                self.store_v2_answer(&job, &reply.text, metadata).await;
                job.stream.send(V2Frame::ChatEnd(chat_end(id, reply, latency)));
                StreamedEnd::Answered
            }
            Some(Err(error)) => {
                self.record_outcome(&Err(error.clone()), latency);
                let failure = TurnFailure::from_llm(error);
                job.stream.send(V2Frame::error(Some(id), failure.code, failure.message));
                StreamedEnd::Failed
            }
        };
        let outcome = match end {
            StreamedEnd::Answered => "answered",
            StreamedEnd::Replayed => "replayed",
            StreamedEnd::Cancelled => "cancelled",
            StreamedEnd::Failed => "failed",
        };
        job.input.span.record("outcome", outcome);
        drop(guard);
        end
    }

    async fn finish_cancelled(&self, job: &StreamedJob, partial: String, latency: Duration) {
        let model = "unknown".to_string();
        let source = self.llm.name().to_string();
        let metadata = serde_json::json!({
            "model": model, "provider": source, "latency_ms": millis(latency), "first_token_ms": null,
            "fallback_reason": null, "cached": false, "ui_actions": [], "client_msg_id": job.id, "cancelled": true,
        });
        self.store_v2_answer(job, &partial, metadata).await;
        let end = ChatEnd {
            id: job.id.clone(),
            message: partial,
            ui_actions: Vec::new(),
            model,
            source,
            cached: false,
            first_token_ms: None,
            latency_ms: millis(latency),
        };
        job.stream.send(V2Frame::ChatEnd(end));
    }

    async fn store_v2_answer(&self, job: &StreamedJob, text: &str, metadata: Value) {
        let answer = AnswerRecord { key: job.input.key(), text: text.to_string(), answered_at: chrono::Utc::now(), metadata };
        self.store_answer(answer, &job.input.origin).await;
    }
}

fn stream_delta(stream: &ResumableStream, id: &str, partial: &mut String, delta: String) {
    partial.push_str(&delta);
    stream.send(V2Frame::ChatDelta { id: id.to_string(), delta });
}

/// A repeated id that was answered before: `ack` again, then the stored answer.
fn replay(stream: &ResumableStream, id: String, stored: StoredAnswer) -> StreamedEnd {
    stream.send(V2Frame::Ack { id: id.clone() });
    let latency = Duration::from_millis(stored.metadata.get("latency_ms").and_then(Value::as_u64).unwrap_or(0));
    let reply = replayed_reply(stored);
    stream.send(V2Frame::ChatEnd(chat_end(id, reply, latency)));
    StreamedEnd::Replayed
}

fn fail(stream: &ResumableStream, id: String, failure: TurnFailure) -> StreamedEnd {
    stream.send(V2Frame::error(Some(id), failure.code, failure.message));
    StreamedEnd::Failed
}

fn chat_end(id: String, reply: LlmReply, latency: Duration) -> ChatEnd {
    ChatEnd {
        id,
        message: reply.text,
        ui_actions: reply.ui_actions,
        model: reply.model,
        source: reply.source,
        cached: reply.cached,
        first_token_ms: reply.first_token.map(millis),
        latency_ms: millis(latency),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
