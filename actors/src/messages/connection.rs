//! `ConnectionMsg`: what a `ConnectionActor` is told — by its reader task, the supervisor's tick,
//! its turns, its v2 stream, the push bus and its timers. A leaf, so everything that casts to a
//! connection imports it without importing the actor.

use std::time::Duration;

use pam_protocol::{CloseCode, SessionId};
use tokio::sync::OwnedSemaphorePermit;

use crate::ports::LlmReply;
use crate::turn::TurnFailure;

/// What the reader task saw on the socket.
#[derive(Debug)]
pub enum Inbound {
    /// A text frame (the JSON of a client frame).
    Text(String),
    /// A binary frame (refused: the protocol is JSON text).
    Binary,
    /// An RFC 6455 ping (answered by the socket layer).
    Control,
    /// An RFC 6455 pong, with the token its payload echoes (when it is one).
    Pong(Option<u64>),
    /// The client sent a close frame (code if any).
    Closed(Option<u16>),
    /// A frame over `PAM_MAX_FRAME_BYTES`.
    TooBig,
    /// An RFC 6455 violation by the client: close with this code (1002, or 1007 for invalid
    /// UTF-8) after a `PROTOCOL_ERROR` error frame whose message is the detail.
    Violation(CloseCode, &'static str),
    /// The transport failed or ended without a close frame.
    Broken(String),
}

/// The orchestrator's report for one turn.
#[derive(Debug)]
pub struct ChatOutcome {
    pub turn: u64,
    pub session: SessionId,
    pub latency: Duration,
    pub result: Result<LlmReply, TurnFailure>,
}

/// What a connection actor is told.
pub enum ConnectionMsg {
    /// A frame from the reader; the permit bounds how far the reader runs ahead.
    Inbound(Inbound, Option<OwnedSemaphorePermit>),
    /// The supervisor's shared keepalive tick.
    Tick,
    /// A legacy turn ended: its outcome becomes the one `chat_response`.
    ChatFinished(ChatOutcome),
    /// Graceful shutdown: finish running chats, then close with 1012.
    Drain,
    /// The drain grace period is over.
    DrainDeadline,
    /// v2: no `auth` frame came in time.
    AuthDeadline,
    /// v2: the orchestrator finished the connection's turn with this number.
    StreamedFinished(u64),
    /// v2: the stream found the outbound queue full.
    SlowConsumer,
    /// v2: another socket of the same user resumed this connection's stream.
    StreamTaken,
    /// v2: `auth_expiring` is due for the token of this generation.
    TokenExpiring(u64),
    /// v2: the token of this generation expired without an `auth_refresh`.
    TokenExpired(u64),
    /// A server push for this socket's user (one frame's JSON text, from the push bus).
    Push(String),
    /// Legacy: the pushes that passed the held bytes behind a chat, read back from storage by id,
    /// in arrival order (sent before anything held meanwhile).
    HeldFromStore(Vec<String>),
    /// v2: the stored pushes held for the client's resume decision are due now.
    StoredDue,
    /// A push went out and no ping follows it yet: send one, so the client's pong proves it.
    ProofPing,
    /// A stored push read when the socket connected (sent like `Push`, but its delivery is not
    /// timed in `pam_push_delivery_seconds`).
    StoredPush(String),
}
