//! The v2 `{"type":"ack","seq":n}` proof of receipt the way the pam-client SDK sends it
//! (web/client/src/acks.ts): the position acked is the highest seq up to which the socket read
//! every frame (set by `welcome`, `resumed` or `resume_failed`, moved by each next frame; a gap
//! stops it); an ack is due once a frame the server keeps for a replay arrived (not `ping`,
//! `pong`, `welcome`, `resumed`, `resume_failed`), and goes out when 64 such frames arrived or
//! 2 s after the previous ack — at most one per 64 frames or per 2 s. Nothing while a resume is
//! unanswered. Pure bookkeeping (the socket sends), unit-tested.

use std::time::{Duration, Instant};

/// At most one ack per this long …
pub(super) const ACK_EVERY: Duration = Duration::from_secs(2);
/// … unless this many frames arrived since the last one.
pub(super) const ACK_EVERY_FRAMES: u32 = 64;

fn makes_ack_due(kind: &str) -> bool {
    !matches!(kind, "welcome" | "ping" | "pong" | "resumed" | "resume_failed")
}

/// The ack bookkeeping of one v2 socket.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// The position held; `None` before a welcome and while resuming.
    held: Option<u64>,
    gapped: bool,
    acked: Option<u64>,
    due: u32,
    last_ack: Option<Instant>,
}

impl Acks {
    /// The socket holds every frame of its stream up to `seq` (`welcome`, `resumed`, `resume_failed`).
    pub(super) fn settled(&mut self, seq: u64) {
        self.held = Some(seq);
        self.gapped = false;
    }

    /// A `resume` was sent: no position until its outcome.
    pub(super) fn resuming(&mut self) {
        self.held = None;
    }

    /// A frame of `kind` with `seq` was read.
    pub(super) fn frame(&mut self, kind: &str, seq: u64) {
        if let Some(held) = self.held {
            if seq <= held {
                return;
            }
            if self.gapped || seq != held + 1 {
                self.gapped = true;
                return;
            }
            self.held = Some(seq);
        }
        if makes_ack_due(kind) {
            self.due += 1;
        }
    }

    /// When the next ack goes out (`now` or earlier: at once); `None` when none is due.
    pub(super) fn next_at(&self, now: Instant) -> Option<Instant> {
        let held = self.held?;
        if self.due == 0 || self.acked.is_some_and(|acked| held <= acked) {
            return None;
        }
        if self.due >= ACK_EVERY_FRAMES {
            return Some(now);
        }
        Some(self.last_ack.map_or(now, |last| (last + ACK_EVERY).max(now)))
    }

    /// The seq to ack now, if one is due by `now`; the ack is booked as sent.
    pub(super) fn take(&mut self, now: Instant) -> Option<u64> {
        let at = self.next_at(now)?;
        if at > now {
            return None;
        }
        let held = self.held?;
        self.acked = Some(held);
        self.due = 0;
        self.last_ack = Some(now);
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_push_is_acked_at_once_and_the_next_two_seconds_later() {
        let t0 = Instant::now();
        let mut acks = Acks::default();
        acks.settled(1);
        assert_eq!(acks.next_at(t0), None, "nothing due after the welcome");
        acks.frame("proactive_alert", 2);
        assert_eq!(acks.take(t0), Some(2));
        acks.frame("ping", 3);
        assert_eq!(acks.next_at(t0), None, "a ping makes no ack due");
        acks.frame("timer_expired", 4);
        assert_eq!(acks.next_at(t0), Some(t0 + ACK_EVERY));
        assert_eq!(acks.take(t0 + Duration::from_millis(1999)), None);
        assert_eq!(acks.take(t0 + ACK_EVERY), Some(4), "the position covers the ping too");
    }

    #[test]
    fn sixty_four_frames_make_an_ack_due_at_once() {
        let t0 = Instant::now();
        let mut acks = Acks::default();
        acks.settled(0);
        acks.frame("proactive_alert", 1);
        acks.take(t0);
        for seq in 2..=65 {
            acks.frame("proactive_alert", seq);
        }
        assert_eq!(acks.take(t0 + Duration::from_millis(10)), Some(65));
    }

    #[test]
    fn a_gap_stops_the_position_and_a_resume_holds_acks_until_its_outcome() {
        let t0 = Instant::now();
        let mut acks = Acks::default();
        acks.settled(5);
        acks.frame("proactive_alert", 6);
        acks.frame("proactive_alert", 8);
        assert_eq!(acks.take(t0), Some(6), "never past what was read contiguously");
        acks.resuming();
        acks.frame("proactive_alert", 40);
        assert_eq!(acks.next_at(t0 + ACK_EVERY), None, "no ack while resuming");
        acks.settled(41);
        assert_eq!(acks.take(t0 + ACK_EVERY), Some(41));
        assert_eq!(acks.take(t0 + 2 * ACK_EVERY), None, "a position is acked once");
    }
}
