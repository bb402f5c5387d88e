//! A `ResumableStream` taken over from the store (`REDIS_URL` set): filled with the frames a claim
//! read, continuing the stream's numbering, and fed the frames another node's object of the
//! stream still writes (a turn running on a drained node), which this holder numbers anew.
//! Part of the stream module; imports the claim bookkeeping.

use std::sync::Arc;

use pam_protocol::{SeqFrame, V2Frame};

use super::ResumableStream;
use super::claim::{ForwardGate, Forwarded};
use crate::ports::ClaimedStream;

impl ResumableStream {
    /// A frame forwarded to this holder (by the writer object and the seq it gave it). While the
    /// claim runs it waits (at most `max_frames` of them); after, a frame not taken yet is
    /// numbered and sent.
    pub(super) fn forwarded(&self, origin: u64, origin_seq: u64, prev: Option<u64>, text: String) {
        // Its own frame come back (the store names this object as holder while a stale copy of
        // the claim says otherwise): sending it again would forward it again, without end.
        if origin == self.inst {
            tracing::warn!(stream = %self.id, "a frame of this stream came back to its writer; dropped");
            return;
        }
        let taken = {
            let mut inner = self.lock();
            if let Some(waiting) = inner.restoring.as_mut() {
                if waiting.len() < self.limits.max_frames {
                    waiting.push((origin, origin_seq, prev, text));
                }
                return;
            }
            if inner.lost_origin == Some(origin) {
                return;
            }
            inner.forward_gate.take(origin, origin_seq, prev)
        };
        self.after_gate(origin, taken, &text);
    }

    fn after_gate(&self, origin: u64, taken: Forwarded, text: &str) {
        match taken {
            Forwarded::Take => self.send_forwarded(text),
            Forwarded::Repeat => {}
            Forwarded::Gap => {
                // Sending on would make a partial answer look whole: its turns end instead, and
                // the client's re-send gets the stored answer.
                let turns = {
                    let mut inner = self.lock();
                    inner.lost_origin = Some(origin);
                    inner.watched.clone()
                };
                tracing::warn!(stream = %self.id, turns = turns.len(), "frames forwarded from another node were lost; its turns end with a retryable error");
                self.end_turns(&turns, "part of this answer was lost between PAM nodes; send the same chat again");
            }
        }
    }

    fn send_forwarded(&self, text: &str) {
        match serde_json::from_str::<SeqFrame>(text) {
            Ok(SeqFrame { frame, .. }) => {
                self.send(frame);
            }
            Err(error) => tracing::warn!(stream = %self.id, %error, "dropped an unreadable forwarded frame"),
        }
    }

    /// Fills this object with a claimed stream: its epoch, the frames after the client's
    /// `last_seq` and its numbering; then the frames forwarded meanwhile follow, numbered anew.
    pub fn restore(&self, claimed: &ClaimedStream, last_seq: u64) {
        let waiting = {
            let mut inner = self.lock();
            inner.epoch = Arc::from(claimed.epoch.as_str());
            // A client past the store (its holder died before storing what it sent) goes on
            // after its own position: seqs never go back for it.
            inner.last_seq = inner.last_seq.max(claimed.last_seq).max(last_seq);
            inner.last_replayable = claimed.frames.last().map_or(claimed.last_replayable, |f| f.seq);
            // Frames before the client's position were not read: a resume from before is too old.
            inner.evicted_up_to = last_seq;
            for frame in &claimed.frames {
                self.keep(&mut inner, frame.seq, Arc::from(frame.text.as_str()));
            }
            inner.forward_gate = ForwardGate::after_claim(claimed.last_replayable);
            inner.watched = claimed.open_turns.clone();
            inner.restoring.take().unwrap_or_default()
        };
        for (origin, origin_seq, prev, text) in waiting {
            let taken = {
                let mut inner = self.lock();
                if inner.lost_origin == Some(origin) {
                    continue;
                }
                inner.forward_gate.take(origin, origin_seq, prev)
            };
            self.after_gate(origin, taken, &text);
        }
    }

    /// Ends turns the stream's previous node left open when it died: a retryable error each, so
    /// the client sends the same chat id again (its stored message makes that idempotent).
    pub fn end_orphaned_turns(&self, turns: &[String]) {
        self.end_turns(turns, "the node answering this chat stopped; send the same chat again");
    }

    /// Ends `turns` with a retryable error saying `why`.
    pub fn end_turns(&self, turns: &[String], why: &str) {
        for id in turns {
            self.send(V2Frame::error(Some(id.clone()), pam_protocol::ErrorCode::ServiceRestart, why));
        }
    }
}
