//! v2 resumable streams: one `ResumableStream` per v2 socket numbers every server frame (`seq`),
//! sends it to the socket attached right now (if any) and keeps the replayable ones in a bounded
//! ring that outlives the socket. `ResumeBuffer` is the shared registry, bounded in streams in
//! total and in detached streams per user (`per_user.rs`), with a TTL for streams no socket is
//! attached to (`registry.rs`). Used by the `ConnectionActor` and by the turns its orchestrator
//! runs, which keep sending into a stream after its socket is gone.
//! With a `StreamStore` (`REDIS_URL` set) every frame is also told to the store, after the local
//! send, so the stream resumes on another node (`restore.rs`; the bookkeeping in `claim.rs`).
//! Imports the ports, the outbound queue and the connection's messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pam_protocol::{SeqFrame, UserId, V2Frame};
use ractor::ActorRef;
use tokio::time::Instant;

use crate::messages::connection::ConnectionMsg;
use crate::metrics_names::count_frame;
use crate::outbound::{OutFrame, Outbound, SendError};
use crate::ports::{StreamStore, StreamWrite, TurnMark};

mod claim;
mod per_user;
mod registry;
mod restore;
#[cfg(test)]
mod tests;

use claim::ForwardGate;
pub(crate) use claim::{check_replay, failure_of};
pub use registry::ResumeBuffer;

/// Streams a node keeps at once, attached or not (`ResumeLimits::max_streams` by default).
pub const MAX_RESUMABLE_STREAMS: usize = 20_000;
/// Detached streams a node keeps per user (`ResumeLimits::max_detached_per_user` by default):
/// beyond it a user's own oldest detached stream is forgotten, so one user opening and closing
/// sockets in a loop cannot push other users' streams out. Attached streams are bounded per user
/// by `PAM_MAX_CONNECTIONS_PER_USER`.
pub const MAX_DETACHED_STREAMS_PER_USER: usize = 64;

/// Limits of the resume buffer.
#[derive(Debug, Clone, Copy)]
pub struct ResumeLimits {
    /// Streams kept at once (attached or not); when full, the oldest detached stream of the user
    /// holding the most detached streams makes room.
    pub max_streams: usize,
    /// Detached streams kept per user; beyond it that user's oldest detached one goes.
    pub max_detached_per_user: usize,
    /// Replayable frames kept per stream (oldest dropped first).
    pub max_frames: usize,
    /// Bytes of replayable frames kept per stream.
    pub max_bytes: usize,
    /// How long a stream with no socket stays resumable.
    pub ttl: Duration,
}

impl Default for ResumeLimits {
    fn default() -> Self {
        ResumeLimits {
            max_streams: MAX_RESUMABLE_STREAMS,
            max_detached_per_user: MAX_DETACHED_STREAMS_PER_USER,
            max_frames: 256,
            max_bytes: 64 * 1024,
            ttl: Duration::from_secs(300),
        }
    }
}

/// The socket a stream's frames go to.
struct Attached {
    conn_id: String,
    outbound: Outbound,
    actor: ActorRef<ConnectionMsg>,
    /// `Some` while a resume replay runs: live frames wait here, in order, behind it.
    backlog: Option<VecDeque<Arc<str>>>,
}

/// The frames a resume must replay, in order, before live frames flow again.
#[derive(Debug, Default)]
pub struct Replay {
    frames: Vec<Arc<str>>,
}

impl Replay {
    /// How many frames it replays.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A frame forwarded while the claim runs: its writer object, that writer's seq and the
/// replayable seq before it, and its text.
type WaitingForward = (u64, u64, Option<u64>, String);

struct StreamInner {
    last_seq: u64,
    /// The seq of the last replayable frame (the store sees gaps through it).
    last_replayable: u64,
    /// Names the stream's frames: random per stream with a store, the buffer's without.
    epoch: Arc<str>,
    /// `Some` while this node claims the stream from the store: frames forwarded to it meanwhile
    /// (by their writer object and seq) wait here, to be numbered after the frames the claim reads.
    restoring: Option<Vec<WaitingForward>>,
    /// Forwarded frames already taken (or read by the claim).
    forward_gate: ForwardGate,
    /// Replayable frames, oldest first, with their text.
    frames: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
    /// Highest seq dropped from the ring (a resume from before it cannot be served).
    evicted_up_to: u64,
    attached: Option<Attached>,
    detached_at: Option<Instant>,
    /// Turns another node was answering when this node claimed the stream, still open here:
    /// their frames come forwarded, so a lost one (or a lost end) must end them with an error.
    watched: Vec<String>,
    /// A writer whose forwarded frames were lost: the rest of them are dropped (its turns ended).
    lost_origin: Option<u64>,
    /// Another node claimed the stream from this object: a socket attaching later is told at once
    /// (the word can come before the attach it is about).
    taken: bool,
}

/// Why a resume could not replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("unknown or expired stream")]
    Unknown,
    #[error("the frames after last_seq are no longer buffered")]
    TooOld,
    #[error("last_seq is ahead of the stream")]
    Ahead,
}

/// One v2 stream: its seq counter, replay ring and current socket.
pub struct ResumableStream {
    id: Arc<str>,
    user: UserId,
    limits: ResumeLimits,
    /// This object, among every node's objects of the stream (the store knows the holder's).
    inst: u64,
    /// Where frames also go, beyond this process (`REDIS_URL` set).
    store: Option<Arc<dyn StreamStore>>,
    inner: Mutex<StreamInner>,
}

impl ResumableStream {
    fn new(id: Arc<str>, user: UserId, first_seq: u64, epoch: Arc<str>, limits: ResumeLimits, store: Option<Arc<dyn StreamStore>>) -> Self {
        let inner = StreamInner {
            last_seq: first_seq.saturating_sub(1),
            last_replayable: 0,
            epoch,
            restoring: None,
            forward_gate: ForwardGate::default(),
            frames: VecDeque::new(),
            bytes: 0,
            evicted_up_to: 0,
            attached: None,
            detached_at: Some(Instant::now()),
            taken: false,
            watched: Vec::new(),
            lost_origin: None,
        };
        ResumableStream { id, user, limits, inst: uuid::Uuid::new_v4().as_u64_pair().0, store, inner: Mutex::new(inner) }
    }

    /// The stream id clients resume with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream's epoch (`welcome.epoch`).
    pub fn epoch(&self) -> Arc<str> {
        self.lock().epoch.clone()
    }

    /// This object's id among the stream's objects on every node.
    pub fn inst(&self) -> u64 {
        self.inst
    }

    /// The user the stream belongs to.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    fn lock(&self) -> MutexGuard<'_, StreamInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers `frame`, keeps it if replayable, and sends it to the attached socket; returns its
    /// `seq`. A full socket queue tells the connection to close with 4408 (the frame stays buffered).
    pub fn send(&self, frame: V2Frame) -> u64 {
        let mut inner = self.lock();
        inner.last_seq += 1;
        let seq = inner.last_seq;
        let kind = frame.kind();
        let replayable = frame.is_replayable();
        if !inner.watched.is_empty() {
            if let TurnMark::Close(id) = TurnMark::of(&frame) {
                inner.watched.retain(|open| *open != id);
            }
        }
        let marks = self.store.is_some().then(|| (TurnMark::of(&frame), matches!(frame, V2Frame::Welcome(_))));
        let text: Arc<str> = SeqFrame { seq, frame }.to_text().into();
        let prev = inner.last_replayable;
        if replayable {
            self.keep(&mut inner, seq, text.clone());
            inner.last_replayable = seq;
        }
        self.deliver_live(&mut inner, kind, &text);
        // After the local send; under the lock, so one stream's frames reach the store in order.
        if let Some((turn, open)) = marks {
            self.record(&inner, seq, prev, replayable.then_some(text), turn, open);
        }
        seq
    }

    /// The turns another node was answering when this node claimed the stream and that have not
    /// ended here yet.
    pub fn watched_open(&self) -> Vec<String> {
        self.lock().watched.clone()
    }

    /// `true` while a resume replay is being sent: live frames wait behind it, so a frame put
    /// straight into the socket's queue now (a WebSocket ping) would overtake them.
    pub fn replaying(&self) -> bool {
        self.lock().attached.as_ref().is_some_and(|attached| attached.backlog.is_some())
    }

    /// The pushes (`timer_expired`, `proactive_alert`) the ring still holds, as `(seq, id)`,
    /// oldest first: a resume position proves the ones at or before it.
    pub fn pushes(&self) -> Vec<(u64, String)> {
        let inner = self.lock();
        inner
            .frames
            .iter()
            .filter(|(_, text)| text.contains("\"timer_expired\"") || text.contains("\"proactive_alert\""))
            .filter_map(|(seq, text)| {
                let frame: serde_json::Value = serde_json::from_str(text).ok()?;
                let is_push = matches!(frame.get("type").and_then(serde_json::Value::as_str), Some("timer_expired" | "proactive_alert"));
                let id = frame.get("id").and_then(serde_json::Value::as_str).filter(|_| is_push)?;
                Some((*seq, id.to_string()))
            })
            .collect()
    }

    /// Tells the store about frame `seq` (never waits).
    fn record(&self, inner: &StreamInner, seq: u64, prev: u64, text: Option<Arc<str>>, turn: TurnMark, open: bool) {
        let Some(store) = &self.store else { return };
        let write = StreamWrite {
            stream: self.id.clone(),
            inst: self.inst,
            user: self.user.clone(),
            epoch: inner.epoch.clone(),
            seq,
            prev,
            text,
            turn,
            open,
        };
        store.write(write);
    }

    fn deliver_live(&self, inner: &mut StreamInner, kind: &'static str, text: &Arc<str>) {
        let max_frames = self.limits.max_frames;
        if let Some(attached) = inner.attached.as_mut() {
            match attached.backlog.as_mut() {
                Some(backlog) if backlog.len() >= max_frames => {
                    let _ = attached.actor.cast(ConnectionMsg::SlowConsumer);
                }
                Some(backlog) => backlog.push_back(text.clone()),
                None => deliver(attached, kind, text),
            }
        }
    }

    /// Numbers `frame` and returns its text without buffering or sending it (the error frame
    /// that precedes a close travels with the close request).
    pub fn stamp(&self, frame: V2Frame) -> String {
        let mut inner = self.lock();
        inner.last_seq += 1;
        let seq = inner.last_seq;
        // The store learns the seq, so a resume elsewhere from it is not `ahead`.
        let prev = inner.last_replayable;
        self.record(&inner, seq, prev, None, TurnMark::None, false);
        SeqFrame { seq, frame }.to_text()
    }

    fn keep(&self, inner: &mut StreamInner, seq: u64, text: Arc<str>) {
        inner.bytes += text.len();
        inner.frames.push_back((seq, text));
        while inner.frames.len() > self.limits.max_frames || (inner.bytes > self.limits.max_bytes && inner.frames.len() > 1) {
            if let Some((old_seq, old)) = inner.frames.pop_front() {
                inner.bytes -= old.len();
                inner.evicted_up_to = old_seq;
            }
        }
    }

    /// Attaches a socket. With `last_seq`, the buffered frames after it are returned as a
    /// [`Replay`] that [`ResumableStream::replay`] sends at the socket's pace; live frames wait
    /// behind it, so none overtakes the replay and none is skipped. Another socket attached to
    /// the stream is told it was taken over.
    pub fn attach(
        &self,
        conn_id: &str,
        outbound: Outbound,
        actor: ActorRef<ConnectionMsg>,
        last_seq: Option<u64>,
    ) -> Result<Replay, ResumeError> {
        let mut inner = self.lock();
        let mut replay = Replay::default();
        if let Some(last_seq) = last_seq {
            if last_seq > inner.last_seq {
                return Err(ResumeError::Ahead);
            }
            if last_seq < inner.evicted_up_to {
                return Err(ResumeError::TooOld);
            }
            replay.frames = inner.frames.iter().filter(|(seq, _)| *seq > last_seq).map(|(_, text)| text.clone()).collect();
        }
        let backlog = (!replay.is_empty()).then(VecDeque::new);
        let attached = Attached { conn_id: conn_id.to_string(), outbound, actor, backlog };
        if let Some(previous) = inner.attached.replace(attached) {
            if previous.conn_id != conn_id {
                let _ = previous.actor.cast(ConnectionMsg::StreamTaken);
            }
        }
        if inner.taken {
            // Claimed by another node between this node's claim and this attach: one holder only.
            if let Some(attached) = inner.attached.as_ref() {
                let _ = attached.actor.cast(ConnectionMsg::StreamTaken);
            }
        }
        inner.detached_at = None;
        Ok(replay)
    }

    /// Sends a replay to `conn_id`'s socket, waiting for room in its queue (any
    /// `PAM_OUTBOUND_QUEUE` works), then the live frames that waited behind it; from then on
    /// frames flow live again. Stops when the socket closes or another one takes the stream.
    pub async fn replay(&self, conn_id: &str, outbound: &Outbound, replay: Replay) {
        let replayed = replay.frames.len() as u64;
        if self.send_replay(conn_id, outbound, replay).await {
            self.send(V2Frame::Resumed { stream_id: self.id.to_string(), replayed });
        }
    }

    /// The replay, then the backlog; `true` when it ended with frames flowing live to `conn_id`.
    async fn send_replay(&self, conn_id: &str, outbound: &Outbound, replay: Replay) -> bool {
        for text in replay.frames {
            if outbound.send_when_room(OutFrame::Text(text.to_string())).await.is_err() {
                return false;
            }
            count_frame("out", "replay");
        }
        loop {
            let next = {
                let mut inner = self.lock();
                let Some(attached) = inner.attached.as_mut().filter(|a| a.conn_id == conn_id) else { return false };
                match attached.backlog.as_mut().and_then(VecDeque::pop_front) {
                    Some(text) => text,
                    None => {
                        attached.backlog = None;
                        return true;
                    }
                }
            };
            if outbound.send_when_room(OutFrame::Text(next.to_string())).await.is_err() {
                return false;
            }
            count_frame("out", "live");
        }
    }

    /// Another node now holds this stream: the attached socket (if any) is told it was taken over
    /// and closes, detaching itself.
    pub(crate) fn taken_elsewhere(&self) {
        let mut inner = self.lock();
        inner.taken = true;
        if let Some(attached) = inner.attached.as_ref() {
            let _ = attached.actor.cast(ConnectionMsg::StreamTaken);
        }
    }

    /// Detaches `conn_id`'s socket (if it is still the attached one); the TTL starts. Returns
    /// when it was detached (use [`ResumeBuffer::detach`], which also schedules its expiry).
    pub fn detach(&self, conn_id: &str) -> Option<Instant> {
        let mut inner = self.lock();
        if inner.attached.as_ref().is_some_and(|a| a.conn_id == conn_id) {
            let now = Instant::now();
            inner.attached = None;
            inner.detached_at = Some(now);
            return Some(now);
        }
        None
    }

    fn detached_since(&self) -> Option<Instant> {
        self.lock().detached_at
    }
}

fn deliver(attached: &Attached, kind: &'static str, text: &Arc<str>) {
    match attached.outbound.send(OutFrame::Text(text.to_string())) {
        Ok(()) => count_frame("out", kind),
        Err(SendError::Full) => {
            let _ = attached.actor.cast(ConnectionMsg::SlowConsumer);
        }
        Err(SendError::Closed) => {}
    }
}
