//! The `StreamStore` port: where a v2 stream's replayable frames live beyond this process, so a
//! client drained from one node resumes on another (`REDIS_URL` set; the gateway implements it on
//! Redis). Without a store a stream lives in this node's `ResumeBuffer` only.
//!
//! The node whose `ResumableStream` object *holds* a stream (its node id and that object's `inst`)
//! is the only one that numbers its frames. Writes of any other object of the stream (a turn that
//! still runs on a drained node) are forwarded to the holder, which numbers them anew; the store
//! decides which, atomically with the append.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{UserId, V2Frame};

use super::{BoxFuture, SharedUnavailable};

/// What a frame does to the stream's open turns (kept with the stream, for a node that died).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnMark {
    /// The frame opens or closes no turn.
    None,
    /// `ack {id}`: the turn runs.
    Open(String),
    /// `chat_end` or `error` with the id: the turn is over.
    Close(String),
}

impl TurnMark {
    /// The mark a frame carries.
    pub fn of(frame: &V2Frame) -> Self {
        match frame {
            V2Frame::Ack { id } => TurnMark::Open(id.clone()),
            V2Frame::ChatEnd(end) => TurnMark::Close(end.id.clone()),
            V2Frame::Error(error) => error.id.clone().map_or(TurnMark::None, TurnMark::Close),
            _ => TurnMark::None,
        }
    }
}

/// One frame of a stream, as the store is told about it (in order per stream).
#[derive(Debug, Clone)]
pub struct StreamWrite {
    /// The stream's id (`welcome.stream_id`).
    pub stream: Arc<str>,
    /// The writing `ResumableStream` object (random per object; the holder's is stored).
    pub inst: u64,
    /// Whose stream (a claim by anyone else fails as unknown).
    pub user: UserId,
    /// The stream's epoch (`welcome.epoch`).
    pub epoch: Arc<str>,
    /// The frame's seq.
    pub seq: u64,
    /// The seq of the stream's previous replayable frame (0: none), to see gaps on read.
    pub prev: u64,
    /// The frame's JSON text with its seq, when replayable; `None` only moves the stream's seq.
    pub text: Option<Arc<str>>,
    /// The turn this frame opens or closes.
    pub turn: TurnMark,
    /// The stream's first frame (its welcome): creates the stream in the store.
    pub open: bool,
}

/// A frame read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    /// The frame's seq.
    pub seq: u64,
    /// The seq of the replayable frame before it, to see gaps.
    pub prev: u64,
    /// The frame's JSON text with its seq.
    pub text: String,
}

/// A stream the store handed to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedStream {
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's last seq (replayable or not), and its last replayable one.
    pub last_seq: u64,
    /// The last replayable seq: a replay must reach it.
    pub last_replayable: u64,
    /// The node that held it before, and whether it is still registered (alive).
    pub previous_node: String,
    /// That holder's boot id (with `previous_node`, its incarnation; empty when unknown).
    pub previous_boot: String,
    /// Whether that incarnation is still registered (a restart under the same id is not).
    pub previous_alive: bool,
    /// Turns acknowledged and not yet ended.
    pub open_turns: Vec<String>,
    /// The kept frames after the client's `last_seq`, oldest first.
    pub frames: Vec<StoredFrame>,
}

/// What a claim answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No such stream, or another user's (they look alike).
    Unknown,
    /// The stream's epoch is not the one the client named.
    EpochChanged,
    /// `last_seq` is past the stream's; `holder_alive` when another live node still writes it.
    Ahead {
        /// Another live node still writes the stream (its frames may not be stored yet).
        holder_alive: bool,
    },
    /// This node holds it now (the store forwards every later write of other objects here).
    Claimed(ClaimedStream),
}

/// The store of streams beyond this process.
pub trait StreamStore: Send + Sync + 'static {
    /// Queues a frame for the store. Never waits and never fails: a full queue or an unavailable
    /// store drops it (counted), and a later read sees the gap through `prev`.
    fn write(&self, write: StreamWrite);
    /// Whether object `inst` of this node holds `stream` (`None`: the store does not know it).
    fn holds<'a>(&'a self, stream: &'a str, inst: u64) -> BoxFuture<'a, Result<Option<bool>, SharedUnavailable>>;
    /// Makes object `inst` of this node the holder of `stream`, if it is `user`'s, of `epoch`
    /// (when given) and not behind `last_seq`, and reads its frames after `last_seq`, atomically.
    fn claim<'a>(
        &'a self,
        stream: &'a str,
        user: &'a UserId,
        epoch: Option<&'a str>,
        last_seq: u64,
        inst: u64,
    ) -> BoxFuture<'a, Result<Claim, SharedUnavailable>>;
    /// Whether the incarnation `node`/`boot` that held `stream` still lives, and which of the
    /// stream's turns are still open (a resume that found their holder alive watches them with it).
    fn orphans<'a>(&'a self, stream: &'a str, node: &'a str, boot: &'a str) -> BoxFuture<'a, Result<Orphans, SharedUnavailable>>;
    /// Waits until every queued write was tried, or `within` passed; `true` when all were.
    fn flush(&self, within: Duration) -> BoxFuture<'_, bool>;
}

/// What [`StreamStore::orphans`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphans {
    /// The incarnation asked about is still registered.
    pub holder_alive: bool,
    /// The stream's turns acknowledged and not yet ended.
    pub open_turns: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_protocol::{ChatEnd, V2Error};

    #[test]
    fn acks_open_turns_and_ends_or_errors_with_the_id_close_them() {
        assert_eq!(TurnMark::of(&V2Frame::Ack { id: "c1".into() }), TurnMark::Open("c1".into()));
        let end = ChatEnd {
            id: "c1".into(),
            message: "hi".into(),
            ui_actions: vec![],
            model: "m".into(),
            source: "s".into(),
            cached: false,
            first_token_ms: None,
            latency_ms: 1,
        };
        assert_eq!(TurnMark::of(&V2Frame::ChatEnd(end)), TurnMark::Close("c1".into()));
        let error = V2Error { id: Some("c1".into()), error_code: pam_protocol::ErrorCode::Internal, message: "x".into(), retryable: true };
        assert_eq!(TurnMark::of(&V2Frame::Error(error)), TurnMark::Close("c1".into()));
        assert_eq!(TurnMark::of(&V2Frame::error(None, pam_protocol::ErrorCode::Internal, "x")), TurnMark::None);
        assert_eq!(TurnMark::of(&V2Frame::Pong { timestamp: 1.into() }), TurnMark::None);
    }
}
