//! `OrchestratorActor`: started lazily by a connection on its first chat, it owns that
//! connection's turns — their order, their cancel, and running them (each on a task of its own,
//! through the shared `TurnPipeline`). The connection keeps the socket and its dialect: it
//! registers each chat as running the moment it reads it, hands it over here with a `TurnReply`,
//! and turns the reply into frames. Imports the turn pipeline and the orchestrator's messages.
//!
//! Deliberate semantics:
//! - It is **not** linked to its connection: a socket that closes sends `Finish`, and the turns it
//!   handed over still run (answered into the void, or into the v2 resume stream) and are stored.
//! - Each turn stores its user message at once, right after the previous turn's store, and its
//!   model work waits for the previous turn's answer (the [`TurnLine`]), so a conversation's
//!   messages are stored and answered in the order the connection read them.
//! - Killing this actor cannot cancel a turn mid-write (turns run on their own tasks); a turn that
//!   panics is reported as an internal error (its `TurnReply` is dropped unanswered).
//! - A crash of this actor is reported to the client as an `error` frame, and the connection's
//!   next chat starts a new orchestrator.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::messages::orchestrator::{ChatJob, OrchestratorMsg, StreamedChat};
use crate::metrics_names::ORCHESTRATORS_ACTIVE;
use crate::turn::{StreamedJob, TurnLine, TurnPipeline};

/// The orchestrator of one chatting connection (stateless: see [`OrchestratorState`]).
pub(crate) struct OrchestratorActor;

/// What an orchestrator starts with.
pub(crate) struct OrchestratorArgs {
    /// Runs the turns (shared by every connection and the REST route).
    pub pipeline: TurnPipeline,
}

/// Keeps `pam_orchestrators_active` right however the actor ends (panics skip `post_stop`).
struct ActiveGauge;

impl ActiveGauge {
    fn new() -> Self {
        metrics::gauge!(ORCHESTRATORS_ACTIVE).increment(1.0);
        ActiveGauge
    }
}

impl Drop for ActiveGauge {
    fn drop(&mut self) {
        metrics::gauge!(ORCHESTRATORS_ACTIVE).decrement(1.0);
    }
}

/// The turns of one connection.
pub(crate) struct OrchestratorState {
    pipeline: TurnPipeline,
    /// The connection's latest turn, which the next one stores and answers after.
    line: TurnLine,
    /// Fires `cancel` on the running v2 turns, by client id. An ended turn's entry (its receiver
    /// gone) is dropped when the next v2 turn starts, so at most the connection's chats in
    /// flight are kept.
    cancels: HashMap<String, oneshot::Sender<()>>,
    _active: ActiveGauge,
}

impl Actor for OrchestratorActor {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: OrchestratorArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(OrchestratorState { pipeline: args.pipeline, line: TurnLine::default(), cancels: HashMap::new(), _active: ActiveGauge::new() })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match message {
            OrchestratorMsg::Chat(job) => state.start_chat(job),
            OrchestratorMsg::Streamed(chat) => state.start_streamed(chat),
            OrchestratorMsg::Cancel(id) => state.cancel(&id),
            OrchestratorMsg::Finish => myself.stop(None),
        }
        Ok(())
    }
}

impl OrchestratorState {
    /// Starts a legacy turn at once (its user message is stored now; its model work waits for
    /// the connection's previous turn); its task tells the connection the answer.
    fn start_chat(&mut self, ChatJob { input, guard, reply }: ChatJob) {
        let (line, after) = self.line.join(guard.finished());
        let pipeline = self.pipeline.clone();
        let (span, id) = (input.span.clone(), guard.id());
        let turn = async move { reply.answered(pipeline.answer(input, guard, line, after).await) };
        self.pipeline.on_task(id, turn.instrument(span));
    }

    /// Starts a v2 turn at once; its frames go to the stream, and `cancel` can stop it.
    fn start_streamed(&mut self, StreamedChat { id, input, guard, stream, reply }: StreamedChat) {
        let (line, after) = self.line.join(guard.finished());
        self.cancels.retain(|_, cancel| !cancel.is_closed());
        let (cancel, cancelled) = oneshot::channel();
        self.cancels.insert(id.clone(), cancel);
        let (span, turn_id) = (input.span.clone(), guard.id());
        let job = StreamedJob { id, input, stream, cancel: cancelled };
        let pipeline = self.pipeline.clone();
        let turn = async move {
            pipeline.answer_streamed(job, guard, line, after).await;
            reply.ended();
        };
        self.pipeline.on_task(turn_id, turn.instrument(span));
    }

    /// v2 `cancel`: the running turn `id` stops (a turn already ended ignores it).
    fn cancel(&mut self, id: &str) {
        if let Some(cancel) = self.cancels.remove(id) {
            let _ = cancel.send(());
        }
    }
}
