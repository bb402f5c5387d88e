//! `resume` on a v2 socket: from this node's `ResumeBuffer` when it holds the stream, else (with
//! a `StreamStore`, i.e. `REDIS_URL` set) claimed from the store — the frames another node wrote,
//! the numbering continued, later frames of that node's still-running turn forwarded here. The
//! replay ends with `resumed`; any failure answers `resume_failed` and the fresh stream goes on.
//! Part of the connection actor; imports the stream module, the `StreamStore` port and the turn
//! pipeline's record of a dead node's turns.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ResumeFailure, UserId};
use ractor::ActorRef;

use super::ConnectionState;
use crate::messages::connection::ConnectionMsg;
use crate::ports::{Claim, ConversationStore, StreamStore};
use crate::stream::{ResumableStream, ResumeError, check_replay, failure_of};
use crate::turn::record_crashed;

/// A client may have seen frames the node still writing the stream has not stored yet (its writes
/// are queued, and a writer round collects for 200 ms): an `ahead` claim against a live writer is
/// tried again this often, this many times (1 s); a holder that stored nothing more by then has
/// lost those frames (`epoch_changed`).
const CATCH_UP_PAUSE: Duration = Duration::from_millis(25);
const CATCH_UP_TRIES: u32 = 40;
/// How often a resumed stream whose previous holder was alive asks whether that incarnation still
/// lives while it has turns open: with the registration TTL (`PAM_NODE_TTL_MS`, 15 s), it bounds
/// the time from a crash to the retryable error of each of its turns (≤ TTL + this).
const ORPHAN_CHECK: Duration = Duration::from_secs(2);

impl ConnectionState {
    /// `resume`: replays the named stream after `last_seq`, ends the replay with `resumed` and
    /// continues on that stream, or answers `resume_failed` and goes on with the fresh stream.
    pub(super) async fn on_resume(&mut self, myself: &ActorRef<ConnectionMsg>, stream_id: &str, epoch: Option<&str>, last_seq: u64) {
        let (Some(user), Some(current)) = (self.user.clone(), self.v2.as_ref().and_then(|v2| v2.stream.clone())) else { return };
        if !self.in_flight.is_empty() {
            return self.resume_failed(myself, &current, ResumeFailure::Busy);
        }
        let local = self.deps.resume.find(stream_id, &user);
        let Some(store) = self.deps.resume.store().cloned() else {
            if epoch.is_some_and(|epoch| epoch != self.deps.resume.epoch()) {
                return self.resume_failed(myself, &current, ResumeFailure::EpochChanged);
            }
            return self.resume_local(myself, &current, local, epoch, last_seq);
        };
        if let Some(held) = &local {
            // This object is the stream's holder (or the store cannot tell): its ring is complete.
            if !matches!(store.holds(stream_id, held.inst()).await, Ok(Some(false))) {
                return self.resume_local(myself, &current, local, epoch, last_seq);
            }
        }
        self.resume_from_store(myself, &current, &store, (stream_id, user, epoch, last_seq), local).await;
    }

    fn resume_local(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        current: &ResumableStream,
        local: Option<Arc<ResumableStream>>,
        epoch: Option<&str>,
        last_seq: u64,
    ) {
        let Some(old) = local else {
            return self.resume_failed(myself, current, ResumeFailure::UnknownStream);
        };
        if epoch.is_some_and(|epoch| epoch != &*old.epoch()) {
            return self.resume_failed(myself, current, ResumeFailure::EpochChanged);
        }
        self.take_over(myself, current, old, last_seq);
    }

    /// Claims the stream from the store into a new object of this node, and resumes from it.
    async fn resume_from_store(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        current: &ResumableStream,
        store: &Arc<dyn StreamStore>,
        (stream_id, user, epoch, last_seq): (&str, UserId, Option<&str>, u64),
        local: Option<Arc<ResumableStream>>,
    ) {
        // Registered before the claim: frames forwarded here once it lands wait in it.
        let fresh = self.deps.resume.begin_restore(stream_id, user.clone());
        let mut tries = 0;
        let claim = loop {
            match store.claim(stream_id, &user, epoch, last_seq, fresh.inst()).await {
                Ok(Claim::Ahead { holder_alive: true }) if tries < CATCH_UP_TRIES => {
                    tries += 1;
                    tokio::time::sleep(CATCH_UP_PAUSE).await;
                }
                Ok(Claim::Ahead { holder_alive: true }) => {
                    // A holder still registered that stored nothing more in 1 s (five writer
                    // rounds) is not writing: killed and not yet expired (up to the registration
                    // TTL), or stalled. The frames the client has past the store are lost to every
                    // other node, as when the holder is known dead — not a position that never
                    // existed (`ahead`, which a client only gets from this node's own copy).
                    tracing::info!(conn_id = %self.conn_id, stream = stream_id, last_seq, "a client is past what its still-registered holder stored and it did not catch up in 1 s; resume fails with epoch_changed");
                    break Ok(Claim::EpochChanged);
                }
                other => break other,
            }
        };
        let claimed = match claim {
            Ok(Claim::Claimed(claimed)) => claimed,
            other => {
                tracing::debug!(conn_id = %self.conn_id, stream = stream_id, last_seq, outcome = ?other.as_ref().map(failure_of), "the stream could not be claimed from the store");
                self.deps.resume.forget_exactly(&fresh);
                if let Some(local) = &local {
                    self.deps.resume.register(local);
                }
                return match other {
                    // The store cannot be asked: what this node has is all there is.
                    Err(_) => self.resume_local(myself, current, local, epoch, last_seq),
                    Ok(claim) => self.resume_failed(myself, current, failure_of(&claim).unwrap_or(ResumeFailure::UnknownStream)),
                };
            }
        };
        if last_seq > claimed.last_seq && !claimed.previous_alive {
            // The holder died before storing frames the client has: what they carried (an `ack`,
            // and with it which chats were open) is lost, so the stream cannot go on whole. Like a
            // store that lost frames, that is another epoch: the client re-sends its open chats on
            // the fresh stream (their stored messages make that idempotent).
            tracing::info!(conn_id = %self.conn_id, stream = stream_id, last_seq, stored = claimed.last_seq, "a client is past what its dead holder stored; resume fails with epoch_changed");
            self.deps.resume.forget_exactly(&fresh);
            if let Some(local) = &local {
                self.deps.resume.register(local);
            }
            return self.resume_failed(myself, current, ResumeFailure::EpochChanged);
        }
        fresh.restore(&claimed, last_seq);
        let ours = claimed.previous_node == *self.deps.node
            && (claimed.previous_boot.is_empty() || Some(claimed.previous_boot.as_str()) == self.deps.liveness.as_ref().map(|l| l.boot()));
        if !ours && !claimed.open_turns.is_empty() {
            if claimed.previous_alive {
                // Still alive: its turns end through it (their frames are forwarded here) — or,
                // should it die first, through the watch.
                watch_orphans(
                    store.clone(),
                    self.deps.store.clone(),
                    (fresh.clone(), user.clone()),
                    claimed.previous_node.clone(),
                    claimed.previous_boot.clone(),
                    self.deps.settings.turn_lifetime(),
                );
            } else {
                fresh.end_orphaned_turns(&claimed.open_turns);
                record_crashed(self.deps.store.clone(), &user, &claimed.previous_node, Some(&claimed.previous_boot), &claimed.open_turns);
            }
        }
        tracing::debug!(conn_id = %self.conn_id, stream = stream_id, from = %claimed.previous_node, "stream claimed from the store");
        // The stream is this node's now either way; a client too far behind starts afresh.
        if let Err(reason) = check_replay(last_seq, claimed.last_replayable, &claimed.frames) {
            return self.resume_failed(myself, current, reason);
        }
        self.take_over(myself, current, fresh.clone(), last_seq);
        // The word that another node claimed it since travels by pub/sub (at most once): ask the
        // store once more, so two resumes racing on two nodes never leave both holding it.
        let store = store.clone();
        tokio::spawn(async move {
            if let Ok(Some(false)) = store.holds(fresh.id(), fresh.inst()).await {
                fresh.taken_elsewhere();
            }
        });
    }

    /// Attaches this socket to `old` and replays it from `last_seq`.
    fn take_over(&mut self, myself: &ActorRef<ConnectionMsg>, current: &ResumableStream, old: Arc<ResumableStream>, last_seq: u64) {
        match old.attach(&self.conn_id, self.outbound.clone(), myself.clone(), Some(last_seq)) {
            Ok(replay) => {
                tracing::debug!(conn_id = %self.conn_id, replayed = replay.len(), "stream resumed");
                // Paced by the socket's queue (a full ring resumes with any PAM_OUTBOUND_QUEUE),
                // then `resumed` as the first live frame.
                let (stream, conn_id, outbound) = (old.clone(), self.conn_id.clone(), self.outbound.clone());
                tokio::spawn(async move { stream.replay(&conn_id, &outbound, replay).await });
                // The resume position is proof of receipt for the pushes at or before it.
                self.resumed_pushes(myself, old.pushes(), last_seq);
                if old.id() != current.id() {
                    current.detach(&self.conn_id);
                    self.deps.resume.forget(current.id());
                }
                if let Some(v2) = self.v2.as_mut() {
                    v2.stream = Some(old);
                }
            }
            Err(ResumeError::Unknown) => self.resume_failed(myself, current, ResumeFailure::UnknownStream),
            Err(ResumeError::TooOld) => self.resume_failed(myself, current, ResumeFailure::TooOld),
            Err(ResumeError::Ahead) => self.resume_failed(myself, current, ResumeFailure::Ahead),
        }
    }
}

/// Watches the turns a live node left open on a stream this node took over: they end through that
/// node (their frames forwarded here) while it lives. When that incarnation is gone (killed, or
/// restarted under the same id) the ones still open here end with a retryable error, so the
/// client sends them again; so do the ones the store says ended while their end never arrived
/// here (lost between nodes: pub/sub is at most once) — after one more check, for an end still
/// on its way. Ends once none is open here, or after `lifetime` (the longest a turn can run).
/// Turns ended because their node is gone are recorded as abandoned (`crash`): that node counted
/// nothing before it died.
fn watch_orphans(
    store: Arc<dyn StreamStore>,
    conversations: Arc<dyn ConversationStore>,
    (stream, user): (Arc<ResumableStream>, UserId),
    node: String,
    boot: String,
    lifetime: Duration,
) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + lifetime;
        let mut ended_elsewhere: Vec<String> = Vec::new();
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(ORPHAN_CHECK).await;
            let open_here = stream.watched_open();
            if open_here.is_empty() {
                return;
            }
            let Ok(found) = store.orphans(stream.id(), &node, &boot).await else { continue };
            if !found.holder_alive {
                tracing::info!(
                    stream = stream.id(),
                    node,
                    turns = open_here.len(),
                    "the node answering a resumed stream's turns is gone; they end with a retryable error"
                );
                stream.end_orphaned_turns(&open_here);
                return record_crashed(conversations, &user, &node, Some(&boot), &open_here);
            }
            let lost: Vec<String> = open_here.into_iter().filter(|id| !found.open_turns.contains(id)).collect();
            let confirmed: Vec<String> = lost.iter().filter(|id| ended_elsewhere.contains(id)).cloned().collect();
            if !confirmed.is_empty() {
                tracing::warn!(
                    stream = stream.id(),
                    node,
                    turns = confirmed.len(),
                    "a resumed stream's turn ended on another node but its end never arrived; it ends with a retryable error"
                );
                stream.end_turns(&confirmed, "the end of this answer was lost between PAM nodes; send the same chat again");
            }
            ended_elsewhere = lost;
        }
    });
}
