//! The turn pipeline: one chat turn answered end to end, the same for sockets (started by the
//! `OrchestratorActor`) and the REST route. The user message is stored first (or journaled in the
//! outbox while storage is down), then history and context load in parallel, the `LlmProvider`
//! answers, and the answer is stored the same way. Turns run on tasks of their own, registered in
//! [`RunningTurns`] from the moment the server read them: a socket that closes, an HTTP client
//! that goes away or an actor that is killed never takes a turn down with it.
//!
//! Layered inside: `input` and `running` and `outbox` are leaves; `pipeline` holds the shared
//! steps; `intake`, `whole` (answered whole), `streamed` (v2) and `abandoned` (a dead node's
//! turns, recorded) build on it.

mod abandoned;
mod input;
mod intake;
mod outbox;
mod pipeline;
mod running;
mod streamed;
mod whole;

pub(crate) use abandoned::record_crashed;
pub(crate) use input::TurnLine;
pub use input::{TurnAnswer, TurnFailure, TurnInput};
pub use outbox::TurnOutbox;
pub use pipeline::TurnPipeline;
pub(crate) use running::TurnGuard;
pub use running::{RunningTurns, TurnOrigin};
pub(crate) use streamed::StreamedJob;
