//! `OrchestratorActor`: started lazily by a connection on its first chat; starts that
//! connection's turns through the shared `TurnPipeline` and reports each outcome to the
//! connection. It is **not** linked to its connection: a socket that closes sends `Finish`, and
//! the turns it handed over still run (answered into the void, or into the v2 resume stream) and
//! are stored. Each turn runs on a task of its own, registered as running by the connection when
//! it read the chat, and stores its user message at once; its model work waits for the previous
//! turn of the connection, so a conversation's turns stay in order. Killing this actor cannot
//! cancel a turn mid-write; a turn that panics is reported as an internal error.

use pam_protocol::{ErrorCode, V2Frame};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::messages::connection::{ChatOutcome, ConnectionMsg};
use crate::messages::orchestrator::{ChatJob, OrchestratorMsg};
use crate::metrics_names::ORCHESTRATORS_ACTIVE;
use crate::turn::{Previous, StreamedJob, TurnFailure, TurnGuard, TurnPipeline};

/// What a client is told when its turn failed inside the gateway.
const INTERNAL_FAILURE: &str = "PAM hit an internal error answering this message; please try again";

pub struct OrchestratorActor;

pub struct OrchestratorArgs {
    pub connection: ActorRef<ConnectionMsg>,
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
            OrchestratorMsg::Chat(job) => state.start_chat(job),
            OrchestratorMsg::Streamed(turn, job, guard, after) => state.start_streamed(turn, job, guard, after),
            OrchestratorMsg::Finish => myself.stop(None),
        }
        Ok(())
    }
}

impl OrchestratorState {
    /// Starts a legacy turn at once (its user message is stored now; its model work waits for
    /// the connection's previous turn) and reports its outcome to the connection when it ends.
    fn start_chat(&mut self, job: ChatJob) {
        let session = job.input.session.clone();
        let started = tokio::time::Instant::now();
        let turn = self.args.pipeline.spawn(job.input, job.guard, job.after);
        let connection = self.args.connection.clone();
        let number = job.turn;
        tokio::spawn(async move {
            let outcome = match turn.await {
                Ok(answer) => ChatOutcome { turn: number, session, latency: answer.latency, result: answer.result },
                Err(error) => {
                    tracing::error!(%error, "a chat turn failed");
                    let failure = TurnFailure { code: ErrorCode::Internal, message: INTERNAL_FAILURE.into() };
                    ChatOutcome { turn: number, session, latency: started.elapsed(), result: Err(failure) }
                }
            };
            // The connection may already be gone; then nobody is waiting for the answer.
            let _ = connection.cast(ConnectionMsg::ChatFinished(outcome));
        });
    }

    /// Starts a v2 turn at once; its frames go to the stream, a crash becomes its error frame.
    fn start_streamed(&mut self, number: u64, job: StreamedJob, guard: TurnGuard, after: Option<Previous>) {
        let (stream, id) = (job.stream.clone(), job.id.clone());
        let turn = self.args.pipeline.start_streamed(job, guard, after);
        let connection = self.args.connection.clone();
        tokio::spawn(async move {
            if let Err(error) = turn.await {
                tracing::error!(%error, "a v2 turn failed");
                stream.push(V2Frame::error(Some(id), ErrorCode::Internal, INTERNAL_FAILURE));
            }
            let _ = connection.cast(ConnectionMsg::StreamedFinished(number));
        });
    }
}
