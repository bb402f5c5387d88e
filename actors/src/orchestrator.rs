//! `OrchestratorActor`: started lazily by a connection on its first chat. Runs each turn through
//! the shared `TurnPipeline` and reports the outcome to its connection. One per chatting
//! connection; it may crash without taking the connection down. v2 turns (`Streamed`) push
//! their frames into the session's resume stream; when a v2 socket closes mid-turn the
//! connection sends `Finish`, so queued turns still complete (into the resume buffer) first.

use pam_protocol::SessionId;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::connection::{ChatOutcome, ConnectionMsg};
use crate::metrics_names::ORCHESTRATORS_ACTIVE;
use crate::turn::{TurnInput, TurnPipeline};
use crate::turn_v2::StreamedJob;

pub struct OrchestratorActor;

pub struct OrchestratorArgs {
    pub connection: ActorRef<ConnectionMsg>,
    pub pipeline: TurnPipeline,
}

/// One chat turn to answer, numbered by its connection.
#[derive(Debug, Clone)]
pub struct ChatJob {
    pub turn: u64,
    pub input: TurnInput,
}

pub enum OrchestratorMsg {
    /// A legacy turn: the outcome goes back to the connection, which sends `chat_response`.
    Chat(ChatJob),
    /// A v2 turn (numbered by its connection): frames go to the session stream.
    Streamed(u64, StreamedJob),
    /// Stop after the turns already queued (the v2 socket is gone, its session is not).
    Finish,
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

pub struct OrchestratorState {
    args: OrchestratorArgs,
    _active: ActiveGauge,
}

impl Actor for OrchestratorActor {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: OrchestratorArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(OrchestratorState { args, _active: ActiveGauge::new() })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match message {
            OrchestratorMsg::Chat(job) => {
                let outcome = state.answer(job).await;
                // The connection may already be gone; then nobody is waiting for the answer.
                let _ = state.args.connection.cast(ConnectionMsg::ChatFinished(outcome));
            }
            OrchestratorMsg::Streamed(turn, job) => {
                state.args.pipeline.answer_streamed(job).await;
                let _ = state.args.connection.cast(ConnectionMsg::StreamedFinished(turn));
            }
            OrchestratorMsg::Finish => myself.stop(None),
        }
        Ok(())
    }
}

impl OrchestratorState {
    async fn answer(&mut self, job: ChatJob) -> ChatOutcome {
        let session: SessionId = job.input.session.clone();
        // Legacy answers are sent whole, so nobody reads deltas here: a closed channel makes
        // providers skip them instead of waiting.
        let (deltas, _) = mpsc::channel(1);
        let answer = self.args.pipeline.answer(job.input, deltas).await;
        ChatOutcome { turn: job.turn, session, latency: answer.latency, result: answer.result }
    }
}
