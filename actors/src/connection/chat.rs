//! The chat half of `ConnectionActor`: validation, the per-user rate limit, the lazily started
//! orchestrator that owns the connection's turns, and turning a turn's reply into the one
//! terminal frame (legacy; a v2 turn streams its own frames). A chat is registered as a running
//! turn the moment it is read; from then on it is the orchestrator's and the pipeline's, not the
//! socket's.
//! Part of the connection actor; imports the orchestrator, its messages and the turn input.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ChatRequest, ChatResponse, CloseCode, ErrorCode, ErrorFrame, ServerFrame, SessionId};
use ractor::{Actor, ActorRef};
use tokio::time::Instant;

use super::phase::ConnectionPhase;
use super::{ConnectionState, InFlight, MAX_VIOLATIONS, iso_now};
use crate::messages::connection::{ChatOutcome, ConnectionMsg};
use crate::messages::orchestrator::{ChatJob, OrchestratorMsg, StreamedChat, TurnReply};
use crate::metrics_names::{CHAT_SECONDS, RATE_LIMITED_TOTAL};
use crate::orchestrator::{OrchestratorActor, OrchestratorArgs};
use crate::stream::ResumableStream;
use crate::trace::{self, Dialect};
use crate::turn::{TurnInput, TurnOrigin};

/// An error frame about one chat (its `id` set in v2).
fn chat_error(id: &Option<String>, code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error(ErrorFrame { error_code: code, message: message.into(), id: id.clone(), retryable: None })
}

impl ConnectionState {
    pub(super) async fn on_chat(&mut self, myself: &ActorRef<ConnectionMsg>, chat: ChatRequest) {
        if let Err((code, message)) = self.validate_chat(&chat) {
            return self.send(myself, chat_error(&chat.id, code, message));
        }
        if self.is_running_v2(&chat) {
            // A repeat of an id still being answered here: its answer is already on its way.
            return;
        }
        let Some(user) = self.user.clone() else { return };
        let session = match chat.session_id.as_deref().map(SessionId::parse) {
            None => SessionId::default_session(),
            Some(Ok(session)) => session,
            Some(Err(error)) => return self.send(myself, chat_error(&chat.id, ErrorCode::ValidationError, error.to_string())),
        };
        if !self.deps.rate_limiter.check(&user).await {
            let message = format!("more than {} messages a minute; slow down", self.deps.settings.rate_limit_per_minute);
            return self.rate_limited(myself, &chat.id, message);
        }
        let Some(orchestrator) = self.orchestrator().await else {
            return self.send(myself, chat_error(&chat.id, ErrorCode::Internal, "PAM could not start a conversation; please try again"));
        };
        let mut context = self.client_context.clone();
        context.extend(chat.context.unwrap_or_default());
        let v2_stream = self.v2_stream();
        // Legacy chats carry no id: the server makes one, so a retried write never stores twice.
        let client_msg_id = match (&chat.id, &v2_stream) {
            (Some(id), Some(_)) => id.clone(),
            _ => TurnInput::server_msg_id(),
        };
        let origin = TurnOrigin::Socket(self.conn_id.clone());
        let dialect = if v2_stream.is_some() { Dialect::V2 } else { Dialect::Legacy };
        let span = trace::turn_span(dialect, session.as_str(), &client_msg_id);
        let input = TurnInput { user, session, message: chat.message, context, client_msg_id, origin, span };
        self.hand_over(myself, &orchestrator, input, chat.id, v2_stream);
    }

    /// Registers the turn as running (before it waits in any mailbox) and hands it to the
    /// orchestrator with the reply that tells this connection its end.
    fn hand_over(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        orchestrator: &ActorRef<OrchestratorMsg>,
        input: TurnInput,
        id: Option<String>,
        stream: Option<Arc<ResumableStream>>,
    ) {
        self.next_turn += 1;
        let turn = self.next_turn;
        let guard = self.deps.pipeline().register(&input);
        let message = match (id.clone(), stream) {
            (Some(id), Some(stream)) => {
                let reply = TurnReply::streamed(myself.clone(), turn, stream.clone(), id.clone());
                OrchestratorMsg::Streamed(StreamedChat { id, input, guard, stream, reply })
            }
            _ => {
                let reply = TurnReply::chat(myself.clone(), turn, input.session.clone());
                OrchestratorMsg::Chat(ChatJob { input, guard, reply })
            }
        };
        self.in_flight.insert(turn, InFlight { started: Instant::now(), client_id: id.clone(), cancelled: false });
        if let Err(error) = orchestrator.cast(message) {
            // The orchestrator is gone (it crashed): the next chat starts a new one.
            self.orchestrator = None;
            tracing::error!(conn_id = %self.conn_id, "the orchestrator is gone; the next chat starts a new one");
            // A message handed back never reached it: answered here. Any other was dropped on
            // the way, and its reply tells the internal error.
            if let ractor::MessagingErr::SendErr(message) = error {
                message.disarm();
                self.in_flight.remove(&turn);
                self.send(myself, chat_error(&id, ErrorCode::Internal, "PAM could not take this message; please try again"));
            }
        }
    }

    fn v2_stream(&self) -> Option<Arc<ResumableStream>> {
        self.v2.as_ref().and_then(|v2| v2.stream.clone())
    }

    fn is_running_v2(&self, chat: &ChatRequest) -> bool {
        self.v2.is_some() && chat.id.as_ref().is_some_and(|id| self.in_flight.values().any(|f| f.client_id.as_ref() == Some(id)))
    }

    /// v2: the turn already sent its frames; only bookkeeping is left.
    pub(super) fn on_streamed_finished(&mut self, myself: &ActorRef<ConnectionMsg>, turn: u64) {
        let Some(in_flight) = self.in_flight.remove(&turn) else { return };
        metrics::histogram!(CHAT_SECONDS).record(in_flight.started.elapsed().as_secs_f64());
        self.close_if_drained(myself);
    }

    fn validate_chat(&self, chat: &ChatRequest) -> Result<(), (ErrorCode, String)> {
        let max = self.deps.settings.max_message_chars;
        if self.v2.is_some() && chat.id.is_none() {
            return Err((ErrorCode::ValidationError, "v2 chats need an 'id' (the client message id)".into()));
        }
        if matches!(self.phase, ConnectionPhase::Draining) {
            return Err((ErrorCode::ServiceRestart, "PAM is restarting; please send this again in a moment".into()));
        }
        if chat.message.trim().is_empty() {
            return Err((ErrorCode::EmptyMessage, "message is empty".into()));
        }
        // Postgres text cannot hold NUL; refuse it here like the REST route does.
        if chat.message.contains('\0') {
            return Err((ErrorCode::ValidationError, "message contains a NUL character".into()));
        }
        if chat.message.chars().count() > max {
            return Err((ErrorCode::MessageTooLarge, format!("message is longer than {max} characters")));
        }
        let max_context = self.deps.settings.max_context_bytes;
        if chat.context.as_ref().is_some_and(|context| super::json_len(context) > max_context) {
            return Err((ErrorCode::MessageTooLarge, format!("a chat's context holds at most {max_context} bytes of JSON")));
        }
        if self.in_flight.len() >= self.deps.settings.max_chats_in_flight {
            return Err((ErrorCode::RateLimitExceeded, "too many messages waiting for an answer; wait for one to finish".into()));
        }
        Ok(())
    }

    /// A refused chat (`id` names it, on v2) or frame counts a violation; five in a minute close.
    pub(super) fn rate_limited(&mut self, myself: &ActorRef<ConnectionMsg>, id: &Option<String>, message: String) {
        metrics::counter!(RATE_LIMITED_TOTAL).increment(1);
        let now = Instant::now();
        self.violations.push_back(now);
        while self.violations.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
            self.violations.pop_front();
        }
        if self.violations.len() >= MAX_VIOLATIONS {
            self.close(myself, CloseCode::RateLimited, "");
        } else {
            self.send(myself, chat_error(id, ErrorCode::RateLimitExceeded, message));
        }
    }

    async fn orchestrator(&mut self) -> Option<ActorRef<OrchestratorMsg>> {
        if self.orchestrator.is_none() {
            let args = OrchestratorArgs { pipeline: self.deps.pipeline() };
            // Not linked: a closing socket must not kill the turns it already handed over.
            match Actor::spawn(None, OrchestratorActor, args).await {
                Ok((actor, _)) => self.orchestrator = Some(actor),
                Err(error) => tracing::error!(conn_id = %self.conn_id, %error, "could not start the orchestrator"),
            }
        }
        self.orchestrator.clone()
    }

    pub(super) fn on_chat_finished(&mut self, myself: &ActorRef<ConnectionMsg>, outcome: ChatOutcome) {
        let Some(in_flight) = self.in_flight.remove(&outcome.turn) else { return };
        metrics::histogram!(CHAT_SECONDS).record(in_flight.started.elapsed().as_secs_f64());
        let latency_ms = u64::try_from(outcome.latency.as_millis()).unwrap_or(u64::MAX);
        let (text, error_code, source, model, ui_actions) = match outcome.result {
            Ok(reply) => (reply.text, None, reply.source, reply.model, reply.ui_actions),
            Err(failure) => (failure.message, Some(failure.code), "fallback".into(), "none".into(), Vec::new()),
        };
        let frame = ChatResponse {
            message: text.clone(),
            content: text,
            ui_actions,
            session_id: outcome.session.to_string(),
            error: error_code.is_some(),
            error_code,
            source,
            model,
            latency_ms,
            timestamp: iso_now(),
        };
        self.send(myself, ServerFrame::ChatResponse(frame));
        self.release_held_pushes(myself);
        self.close_if_drained(myself);
    }
}
