//! The v2 turn on top of `TurnPipeline`: store the user message (then `ack`), stream the model's
//! deltas as `chat_delta`, store the answer, send `chat_end` with the full text. A repeated id
//! replays the stored answer without asking the model; a cancel stores the partial answer.
//! Frames go into the session's `SessionStream`, so a turn whose socket closed still reaches
//! the client through `resume`. Run by the `OrchestratorActor`.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ChatEnd, ErrorCode, UiAction, V2Frame};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::outbox::TURNS_DROPPED_TOTAL;
use crate::ports::{AssistantMessage, ConversationRef, HistoryMessage, LlmReply, StoreError, StoredAnswer, UserMessage, UserSaved};
use crate::resume::SessionStream;
use crate::turn::{TurnFailure, TurnInput, TurnPipeline, turn_metadata};

/// Deltas buffered between the provider and the stream.
const DELTA_QUEUE: usize = 64;

/// One v2 chat to answer.
pub struct StreamedJob {
    /// The client's message id (idempotency key).
    pub id: String,
    pub input: TurnInput,
    pub stream: Arc<SessionStream>,
    /// Fires on `cancel`; a dropped sender (the socket went away) is not a cancel.
    pub cancel: oneshot::Receiver<()>,
}

/// How a streamed turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamedEnd {
    Answered,
    Replayed,
    Cancelled,
    Failed,
}

impl TurnPipeline {
    /// Answers one v2 chat, pushing every frame into `job.stream`.
    pub async fn answer_streamed(&self, mut job: StreamedJob) -> StreamedEnd {
        let started = Instant::now();
        let id = job.id.clone();
        let message = UserMessage {
            user: job.input.user.clone(),
            session: job.input.session.clone(),
            text: job.input.message.clone(),
            client_msg_id: id.clone(),
            received_at: chrono::Utc::now(),
        };
        let conversation = match self.store.save_user_message(&message).await {
            Ok(UserSaved::New(conversation)) => conversation,
            Ok(UserSaved::Repeat(stored)) => return replay(&job.stream, id, stored),
            Err(error) => {
                tracing::warn!(%error, "could not store the user message; not answering it");
                let text = "PAM could not store this message, so it was not answered; please send it again";
                job.stream.push(V2Frame::error(Some(id), ErrorCode::StorageUnavailable, text));
                return StreamedEnd::Failed;
            }
        };
        job.stream.push(V2Frame::Ack { id: id.clone() });
        let mut request = self.request(&job.input).await;
        drop_current_message(&mut request.history, &job.input.message);
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
        match result {
            None => {
                self.finish_cancelled(&job, conversation, partial, latency).await;
                StreamedEnd::Cancelled
            }
            Some(Ok(reply)) => {
                self.record_outcome(&Ok(reply.clone()), latency);
                let mut metadata = turn_metadata(&reply, latency);
                metadata["client_msg_id"] = Value::from(id.clone());
                metadata["cancelled"] = Value::Bool(false);
                self.store_answer(conversation, &reply.text, metadata).await;
                job.stream.push(V2Frame::ChatEnd(chat_end(id, reply, latency)));
                StreamedEnd::Answered
            }
            Some(Err(error)) => {
                self.record_outcome(&Err(error.clone()), latency);
                let failure = TurnFailure::from_llm(error);
                job.stream.push(V2Frame::error(Some(id), failure.code, failure.message));
                StreamedEnd::Failed
            }
        }
    }

    async fn finish_cancelled(&self, job: &StreamedJob, conversation: ConversationRef, partial: String, latency: Duration) {
        let model = "unknown".to_string();
        let source = self.llm.name().to_string();
        let metadata = serde_json::json!({
            "model": model, "provider": source, "latency_ms": millis(latency), "first_token_ms": null,
            "fallback_reason": null, "cached": false, "ui_actions": [], "client_msg_id": job.id, "cancelled": true,
        });
        self.store_answer(conversation, &partial, metadata).await;
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
        job.stream.push(V2Frame::ChatEnd(end));
    }

    async fn store_answer(&self, conversation: ConversationRef, text: &str, metadata: Value) {
        let message = AssistantMessage { conversation, text: text.to_string(), answered_at: chrono::Utc::now(), metadata };
        match self.store.save_assistant_message(&message).await {
            Ok(()) => {}
            Err(error @ StoreError::Rejected(_)) => {
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                tracing::error!(%error, "the database refused this v2 answer; it is not stored");
            }
            Err(error) => {
                // The user row (and its ack) is stored already; the answer follows once the
                // database is back. Until then a repeat of this id reports it missing.
                tracing::warn!(%error, "could not store the v2 answer; it waits in the outbox");
                self.outbox.push(message);
            }
        }
    }
}

fn stream_delta(stream: &SessionStream, id: &str, partial: &mut String, delta: String) {
    partial.push_str(&delta);
    stream.push(V2Frame::ChatDelta { id: id.to_string(), delta });
}

/// The stored user message is already in the history; the prompt carries it as `message`.
fn drop_current_message(history: &mut Vec<HistoryMessage>, message: &str) {
    if history.last().is_some_and(|last| last.role == "user" && last.content == message) {
        history.pop();
    }
}

/// A repeated id: `ack` again, then the stored answer (or an error when there is none yet).
fn replay(stream: &SessionStream, id: String, stored: Option<StoredAnswer>) -> StreamedEnd {
    stream.push(V2Frame::Ack { id: id.clone() });
    match stored {
        Some(answer) => {
            stream.push(V2Frame::ChatEnd(stored_end(id, answer)));
            StreamedEnd::Replayed
        }
        None => {
            let text = "this id was received before but has no stored answer (still being answered elsewhere, or it failed); \
                        resume that session or send the message again with a new id";
            stream.push(V2Frame::error(Some(id), ErrorCode::LlmUnavailable, text));
            StreamedEnd::Failed
        }
    }
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

/// `chat_end` rebuilt from a stored answer; `cached` is true: no model was asked this time.
fn stored_end(id: String, answer: StoredAnswer) -> ChatEnd {
    let meta = &answer.metadata;
    let text = |key: &str| meta.get(key).and_then(Value::as_str).unwrap_or("unknown").to_string();
    let ui_actions: Vec<UiAction> = meta.get("ui_actions").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    ChatEnd {
        id,
        message: answer.text,
        ui_actions,
        model: text("model"),
        source: text("provider"),
        cached: true,
        first_token_ms: meta.get("first_token_ms").and_then(Value::as_u64),
        latency_ms: meta.get("latency_ms").and_then(Value::as_u64).unwrap_or(0),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_user_message_is_not_sent_twice() {
        let user = |c: &str| HistoryMessage { role: "user".into(), content: c.into() };
        let mut history = vec![user("a"), user("b")];
        drop_current_message(&mut history, "b");
        assert_eq!(history, vec![user("a")]);
        drop_current_message(&mut history, "b");
        assert_eq!(history, vec![user("a")]);
    }

    #[test]
    fn a_replayed_end_comes_from_the_stored_metadata() {
        let answer = StoredAnswer {
            text: "hi".into(),
            metadata: serde_json::json!({"model":"m1","provider":"p","latency_ms":12,"first_token_ms":3,"ui_actions":[{"type":"open_map"}]}),
        };
        let end = stored_end("x".into(), answer);
        assert_eq!((end.model.as_str(), end.source.as_str(), end.latency_ms, end.first_token_ms), ("m1", "p", 12, Some(3)));
        assert_eq!(end.ui_actions[0].kind, "open_map");
        assert!(end.cached);
    }
}
