//! The pure bookkeeping of a resume from the `StreamStore`: which frames prove a complete replay,
//! which failure a claim means, and the seq dedupe of frames forwarded to the stream's holder.
//! Imports only the port's data; unit-tested alone.

use pam_protocol::ResumeFailure;

use crate::ports::{Claim, StoredFrame};

/// Why a claimed stream cannot be replayed from `last_seq`: a kept frame is missing between it
/// and the end (trimmed by the length cap, lost while the store was unavailable, or the frames
/// key expired while the stream's meta lived on) — `last_replayable` is the seq of the last
/// replayable frame the stream says it wrote, so a replay must reach it.
pub(crate) fn check_replay(last_seq: u64, last_replayable: u64, frames: &[StoredFrame]) -> Result<(), ResumeFailure> {
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
pub(crate) fn failure_of(claim: &Claim) -> Option<ResumeFailure> {
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
pub(crate) struct ForwardGate {
    origin: u64,
    floor: u64,
}

impl ForwardGate {
    /// `true` for a frame (by its writer object and the seq that writer gave it) not taken yet.
    pub(crate) fn take(&mut self, origin: u64, origin_seq: u64) -> bool {
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
mod tests {
    use super::*;
    use crate::ports::ClaimedStream;

    fn frame(seq: u64, prev: u64) -> StoredFrame {
        StoredFrame { seq, prev, text: format!("{{\"seq\":{seq}}}") }
    }

    #[test]
    fn a_chain_of_kept_frames_from_last_seq_on_replays() {
        assert_eq!(check_replay(4, 9, &[frame(5, 4), frame(6, 5), frame(9, 6)]), Ok(()));
        // Unreplayable frames (pongs) between do not break the chain: prev names the last replayable one.
        assert_eq!(check_replay(4, 9, &[frame(8, 3), frame(9, 8)]), Ok(()));
        assert_eq!(check_replay(7, 6, &[]), Ok(()), "nothing kept after last_seq: nothing to replay");
    }

    #[test]
    fn a_trimmed_first_frame_or_a_hole_in_the_chain_is_too_old() {
        assert_eq!(check_replay(2, 7, &[frame(6, 5), frame(7, 6)]), Err(ResumeFailure::TooOld), "frame 5 was trimmed");
        assert_eq!(check_replay(2, 7, &[frame(3, 2), frame(7, 5)]), Err(ResumeFailure::TooOld), "frame 5 never reached the store");
        assert_eq!(check_replay(5, 5, &[frame(5, 4)]), Err(ResumeFailure::TooOld), "a frame at or below last_seq is not a replay");
        assert_eq!(check_replay(3, 8, &[]), Err(ResumeFailure::TooOld), "the frames expired while the meta lived on");
        assert_eq!(check_replay(3, 9, &[frame(4, 3), frame(8, 4)]), Err(ResumeFailure::TooOld), "the last frame never reached the store");
    }

    #[test]
    fn every_claim_but_a_hand_over_names_its_failure() {
        assert_eq!(failure_of(&Claim::Unknown), Some(ResumeFailure::UnknownStream));
        assert_eq!(failure_of(&Claim::EpochChanged), Some(ResumeFailure::EpochChanged));
        assert_eq!(failure_of(&Claim::Ahead { holder_alive: true }), Some(ResumeFailure::Ahead));
        let claimed = ClaimedStream {
            epoch: "e".into(),
            last_seq: 3,
            last_replayable: 2,
            previous_node: "a".into(),
            previous_boot: String::new(),
            previous_alive: true,
            open_turns: vec![],
            frames: vec![],
        };
        assert_eq!(failure_of(&Claim::Claimed(claimed)), None);
    }

    #[test]
    fn the_forward_gate_takes_each_seq_of_a_writer_once_and_follows_a_new_writer() {
        let mut gate = ForwardGate::default();
        assert!(gate.take(7, 11));
        assert!(!gate.take(7, 11), "a repeat");
        assert!(gate.take(7, 14), "a writer may skip seqs (unreplayable frames are not forwarded)");
        assert!(!gate.take(7, 12), "older than one taken");
        assert!(gate.take(9, 3), "another writer numbers on its own");
        assert!(gate.take(9, 4));
        assert!(!gate.take(9, 4));
    }
}
