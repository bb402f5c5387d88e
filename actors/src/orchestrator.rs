//! `OrchestratorActor`: started lazily by a connection on its first chat; runs that
//! connection's turns one after another through the shared `TurnPipeline` and reports each
//! outcome to the connection. It is **not** linked to its connection: a socket that closes
//! sends `Finish`, and the turns already queued still run (answered into the void, or into the
//! v2 resume stream) and are stored. Each turn runs on a task of its own, registered as running
//! by the connection when it read the chat, so even killing this actor cannot cancel a turn
//! mid-write; a turn that panics is reported as an internal error and the next one runs.

use pam_protocol::{ErrorCode, V2Frame};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::connection::{ChatOutcome, ConnectionMsg};
use crate::metrics_names::ORCHESTRATORS_ACTIVE;
use crate::running_turns::TurnGuard;
use crate::turn::{TurnFailure, TurnInput, TurnPipeline};
use crate::turn_v2::StreamedJob;

/// What a client is told when its turn failed inside the gateway.
const INTERNAL_FAILURE: &str = "PAM hit an internal error answering this message; please try again";

pub struct OrchestratorActor;

pub struct OrchestratorArgs {
    pub connection: ActorRef<ConnectionMsg>,
    pub pipeline: TurnPipeline,
}

/// One chat turn to answer, numbered by its connection, registered as running since it was read.
pub struct ChatJob {
    pub turn: u64,
    pub input: TurnInput,
    pub guard: TurnGuard,
}

pub enum OrchestratorMsg {
    /// A legacy turn: the outcome goes back to the connection, which sends `chat_response`.
    Chat(ChatJob),
    /// A v2 turn (numbered by its connection): frames go to the stream.
    Streamed(u64, StreamedJob, TurnGuard),
    /// Stop after the turns already queued (the socket is gone, its turns are not).
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
            OrchestratorMsg::Streamed(turn, job, guard) => {
                let (stream, id) = (job.stream.clone(), job.id.clone());
                if let Err(error) = state.args.pipeline.start_streamed(job, guard).await {
                    tracing::error!(%error, "a v2 turn failed");
                    stream.push(V2Frame::error(Some(id), ErrorCode::Internal, INTERNAL_FAILURE));
                }
                let _ = state.args.connection.cast(ConnectionMsg::StreamedFinished(turn));
            }
            OrchestratorMsg::Finish => myself.stop(None),
        }
        Ok(())
    }
}

impl OrchestratorState {
    async fn answer(&mut self, job: ChatJob) -> ChatOutcome {
        let session = job.input.session.clone();
        let started = tokio::time::Instant::now();
        match self.args.pipeline.spawn(job.input, job.guard).await {
            Ok(answer) => ChatOutcome { turn: job.turn, session, latency: answer.latency, result: answer.result },
            Err(error) => {
                tracing::error!(%error, "a chat turn failed");
                let failure = TurnFailure { code: ErrorCode::Internal, message: INTERNAL_FAILURE.into() };
                ChatOutcome { turn: job.turn, session, latency: started.elapsed(), result: Err(failure) }
            }
        }
    }
}
