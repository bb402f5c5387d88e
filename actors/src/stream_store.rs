//! The `StreamStore` port: where a v2 stream's replayable frames live beyond this process, so a
//! client drained from one node resumes on another (`REDIS_URL` set; the Redis adapter lives in
//! the gateway's `adapters/cluster/streams.rs`). Without a store a stream lives in this node's
//! `ResumeBuffer` only, as it always did.
//!
//! The node whose `SessionStream` object *holds* a stream (its node id and that object's `inst`)
//! is the only one that numbers its frames. Writes of any other object of the stream (a turn that
//! still runs on a drained node) are forwarded to the holder, which numbers them anew; the store
//! decides which, atomically with the append. Also here: the pure bookkeeping of a resume from
//! the store (failure reasons, gap checks, seq dedupe of forwarded frames), unit-tested alone.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ResumeFailure, UserId, V2Frame};

use crate::cluster::SharedUnavailable;
use crate::ports::BoxFuture;

/// Redis stream writes by outcome (`written`, `forwarded`, `failed`, `dropped`: a closed set).
pub const STREAM_WRITES_TOTAL: &str = "pam_resume_store_writes_total";
/// `1` while the last batch of stream writes failed (resume then works on this node only).
pub const STREAM_STORE_DEGRADED: &str = "pam_resume_store_degraded";

/// What a frame does to the stream's open turns (kept with the stream, for a node that died).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnMark {
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
    pub stream: Arc<str>,
    /// The writing `SessionStream` object (random per object; the holder's is stored).
    pub inst: u64,
    pub user: UserId,
    pub epoch: Arc<str>,
    pub seq: u64,
    /// The seq of the stream's previous replayable frame (0: none), to see gaps on read.
    pub prev: u64,
    /// The frame's JSON text with its seq, when replayable; `None` only moves the stream's seq.
    pub text: Option<Arc<str>>,
    pub turn: TurnMark,
    /// The stream's first frame (its welcome): creates the stream in the store.
    pub open: bool,
}

/// A frame read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub seq: u64,
    pub prev: u64,
    pub text: String,
}

/// A stream the store handed to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedStream {
    pub epoch: String,
    /// The stream's last seq (replayable or not), and its last replayable one.
    pub last_seq: u64,
    pub last_replayable: u64,
    /// The node that held it before, and whether it is still registered (alive).
    pub previous_node: String,
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
    EpochChanged,
    /// `last_seq` is past the stream's; `holder_alive` when another live node still writes it.
    Ahead {
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
    /// Waits until every queued write was tried, or `within` passed; `true` when all were.
    fn flush(&self, within: Duration) -> BoxFuture<'_, bool>;
}

/// Why a claimed stream cannot be replayed from `last_seq`: a kept frame is missing between it
/// and the end (trimmed by the length cap, lost while the store was unavailable, or the frames
/// key expired while the stream's meta lived on) — `last_replayable` is the seq of the last
/// replayable frame the stream says it wrote, so a replay must reach it.
pub fn check_replay(last_seq: u64, last_replayable: u64, frames: &[StoredFrame]) -> Result<(), ResumeFailure> {
    if frames.last().map_or(last_seq, |frame| frame.seq) < last_replayable {
        return Err(ResumeFailure::TooOld);
    }
    let mut expected_prev_at_most = last_seq;
    for (n, frame) in frames.iter().enumerate() {
        let chained = if n == 0 { frame.prev <= expected_prev_at_most } else { frame.prev == expected_prev_at_most };
        if !chained || frame.seq <= last_seq {
            return Err(ResumeFailure::TooOld);
        }
        expected_prev_at_most = frame.seq;
    }
    Ok(())
}

/// The resume answer for a claim that did not hand the stream over.
pub fn failure_of(claim: &Claim) -> Option<ResumeFailure> {
    match claim {
        Claim::Unknown => Some(ResumeFailure::UnknownStream),
        Claim::EpochChanged => Some(ResumeFailure::EpochChanged),
        Claim::Ahead { .. } => Some(ResumeFailure::Ahead),
        Claim::Claimed(_) => None,
    }
}

/// Drops a frame forwarded to the holder twice: per writing object (`inst`), each seq once and in
/// order. Objects number independently (after a second hand-over the old writer's numbering is
/// not the holder's), so the gate follows the latest writer; the claim itself never overlaps a
/// forward (the store appends or forwards each frame, atomically with the hand-over).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardGate {
    origin: u64,
    floor: u64,
}

impl ForwardGate {
    /// `true` for a frame (by its writer object and the seq that writer gave it) not taken yet.
    pub fn admit(&mut self, origin: u64, origin_seq: u64) -> bool {
        if origin != self.origin {
            (self.origin, self.floor) = (origin, origin_seq);
            return true;
        }
        if origin_seq <= self.floor {
            return false;
        }
        self.floor = origin_seq;
        true
    }
}

#[cfg(test)]
#[path = "stream_store_tests.rs"]
mod tests;
