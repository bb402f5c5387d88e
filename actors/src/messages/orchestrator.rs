//! `OrchestratorMsg`: the turns a connection hands to its `OrchestratorActor`, and `TurnReply`,
//! through which each turn's end reaches the connection exactly once. A leaf above the turn
//! pipeline and the v2 stream, so the connection imports what it sends without the actor.

use std::sync::Arc;

use pam_protocol::{ErrorCode, SessionId, V2Frame};
use ractor::ActorRef;
use tokio::time::Instant;

use super::connection::{ChatOutcome, ConnectionMsg};
use crate::stream::ResumableStream;
use crate::turn::{TurnAnswer, TurnFailure, TurnGuard, TurnInput};

/// What a client is told when its turn failed inside the gateway.
const INTERNAL_FAILURE: &str = "PAM hit an internal error answering this message; please try again";

/// What a connection asks of its orchestrator.
pub(crate) enum OrchestratorMsg {
    /// A legacy turn, answered whole: its outcome goes to the connection, which sends `chat_response`.
    Chat(ChatJob),
    /// A v2 turn: its frames go into the connection's stream.
    Streamed(StreamedChat),
    /// v2 `cancel`: stops the running turn with this client id (its partial answer is stored and sent).
    Cancel(String),
    /// Stop after the turns already queued (the socket is gone, its turns are not).
    Finish,
}

impl OrchestratorMsg {
    /// A message that never reached the orchestrator: its turn is answered by the connection,
    /// so its reply tells nothing.
    pub(crate) fn disarm(self) {
        match self {
            OrchestratorMsg::Chat(job) => job.reply.disarm(),
            OrchestratorMsg::Streamed(chat) => chat.reply.disarm(),
            OrchestratorMsg::Cancel(_) | OrchestratorMsg::Finish => {}
        }
    }
}

/// A legacy chat turn, registered as running since the connection read it.
pub(crate) struct ChatJob {
    /// What to answer.
    pub input: TurnInput,
    /// Its registration among the running turns.
    pub guard: TurnGuard,
    /// Tells the connection the answer.
    pub reply: TurnReply,
}

/// A v2 chat turn, registered as running since the connection read it.
pub(crate) struct StreamedChat {
    /// The client's message id (idempotency key, and what `cancel` names).
    pub id: String,
    /// What to answer.
    pub input: TurnInput,
    /// Its registration among the running turns.
    pub guard: TurnGuard,
    /// Where its frames go, whatever happens to the socket.
    pub stream: Arc<ResumableStream>,
    /// Tells the connection the turn ended.
    pub reply: TurnReply,
}

/// Where a turn's end is told: the connection that read it (for a v2 turn, also its stream).
/// Told exactly once — by the turn when it ends or, when it never ends (its task panicked, was
/// stopped at the end of the shutdown grace, or the orchestrator went down with the turn still
/// in its mailbox), as an internal error when dropped.
pub(crate) struct TurnReply {
    connection: ActorRef<ConnectionMsg>,
    /// The turn's number on its connection.
    turn: u64,
    /// `None` once told.
    to: Option<ReplyTo>,
}

enum ReplyTo {
    /// Legacy: the outcome goes to the connection, which sends the one `chat_response`.
    Chat { session: SessionId, started: Instant },
    /// v2: the turn sent its own frames; one that never ended gets its error frame here.
    Streamed { stream: Arc<ResumableStream>, id: String },
}

impl TurnReply {
    /// For legacy turn `turn` of `connection`, in conversation `session`.
    pub(crate) fn chat(connection: ActorRef<ConnectionMsg>, turn: u64, session: SessionId) -> Self {
        TurnReply { connection, turn, to: Some(ReplyTo::Chat { session, started: Instant::now() }) }
    }

    /// For v2 turn `turn` of `connection`, chat `id`, streaming into `stream`.
    pub(crate) fn streamed(connection: ActorRef<ConnectionMsg>, turn: u64, stream: Arc<ResumableStream>, id: String) -> Self {
        TurnReply { connection, turn, to: Some(ReplyTo::Streamed { stream, id }) }
    }

    /// A legacy turn's answer (a v2 turn only reports that it ended).
    pub(crate) fn answered(mut self, answer: TurnAnswer) {
        match self.to.take() {
            Some(ReplyTo::Chat { session, .. }) => self.tell_chat(session, answer),
            Some(ReplyTo::Streamed { .. }) | None => self.tell_streamed(),
        }
    }

    /// A v2 turn ended (its frames are in the stream).
    pub(crate) fn ended(mut self) {
        self.to = None;
        self.tell_streamed();
    }

    fn disarm(mut self) {
        self.to = None;
    }

    fn tell_chat(&self, session: SessionId, answer: TurnAnswer) {
        let outcome = ChatOutcome { turn: self.turn, session, latency: answer.latency, result: answer.result };
        // The connection may already be gone; then nobody is waiting for the answer.
        let _ = self.connection.cast(ConnectionMsg::ChatFinished(outcome));
    }

    fn tell_streamed(&self) {
        let _ = self.connection.cast(ConnectionMsg::StreamedFinished(self.turn));
    }
}

impl Drop for TurnReply {
    fn drop(&mut self) {
        let Some(to) = self.to.take() else { return };
        let why = if std::thread::panicking() { "panicked" } else { "was stopped before it ended" };
        tracing::error!(turn = self.turn, "a chat turn {why}; its client gets an internal error");
        match to {
            ReplyTo::Chat { session, started } => {
                let failure = TurnFailure { code: ErrorCode::Internal, message: INTERNAL_FAILURE.into() };
                self.tell_chat(session, TurnAnswer { latency: started.elapsed(), result: Err(failure) });
            }
            ReplyTo::Streamed { stream, id } => {
                stream.send(V2Frame::error(Some(id), ErrorCode::Internal, INTERNAL_FAILURE));
                self.tell_streamed();
            }
        }
    }
}
