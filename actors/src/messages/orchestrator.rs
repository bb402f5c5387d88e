//! `OrchestratorMsg`: the turns a connection hands to its `OrchestratorActor`. A leaf, so the
//! connection imports what it sends without importing the actor.

use crate::turn::{Previous, StreamedJob, TurnGuard, TurnInput};

/// One chat turn to answer, numbered by its connection, registered as running since it was read.
pub struct ChatJob {
    pub turn: u64,
    pub input: TurnInput,
    pub guard: TurnGuard,
    /// The connection's previous turn, whose end this one's model work waits for.
    pub after: Option<Previous>,
}

pub enum OrchestratorMsg {
    /// A legacy turn: the outcome goes back to the connection, which sends `chat_response`.
    Chat(ChatJob),
    /// A v2 turn (numbered by its connection): frames go to the stream.
    Streamed(u64, StreamedJob, TurnGuard, Option<Previous>),
    /// Stop after the turns already queued (the socket is gone, its turns are not).
    Finish,
}
