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

/// What the holder makes of a frame forwarded to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarded {
    /// Not taken yet, and nothing before it is missing: number it and send it.
    Take,
    /// Taken before (a repeat): drop it.
    Repeat,
    /// A frame of its writer before it never arrived (pub/sub is at most once): the answer it
    /// belongs to cannot be whole here.
    Gap,
}

/// Drops a frame forwarded to the holder twice and sees one missing: per writing object (`inst`),
/// each seq once and in order, each naming the replayable seq before it (`prev`, in its writer's
/// numbering; forwarded frames are the replayable ones, so each one's `prev` is the one before).
/// Objects number independently (after a second hand-over the old writer's numbering is not the
/// holder's), so the gate follows the latest writer; the claim itself never overlaps a forward (the
/// store appends or forwards each frame, atomically with the hand-over), so the first writer after
/// a claim continues from the last replayable seq the claim read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardGate {
    origin: u64,
    floor: u64,
}

impl ForwardGate {
    /// The gate of a stream just claimed, whose store held frames up to `last_replayable`.
    pub(crate) fn after_claim(last_replayable: u64) -> Self {
        ForwardGate { origin: 0, floor: last_replayable }
    }

    /// A frame by its writer object, the seq that writer gave it and the replayable seq before
    /// it (`None` from a writer that does not say).
    pub(crate) fn take(&mut self, origin: u64, origin_seq: u64, prev: Option<u64>) -> Forwarded {
        if origin != self.origin {
            let first_after_claim = self.origin == 0;
            let missing = first_after_claim && prev.is_some_and(|prev| prev > self.floor);
            (self.origin, self.floor) = (origin, origin_seq);
            return if missing { Forwarded::Gap } else { Forwarded::Take };
        }
        if origin_seq <= self.floor {
            return Forwarded::Repeat;
        }
        let missing = prev.is_some_and(|prev| prev > self.floor);
        self.floor = origin_seq;
        if missing { Forwarded::Gap } else { Forwarded::Take }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_frame_whose_predecessor_never_came_is_a_gap() {
        let mut gate = ForwardGate::after_claim(12);
        assert_eq!(gate.take(7, 14, Some(12)), Forwarded::Take, "continues from what the claim read");
        assert_eq!(gate.take(7, 15, Some(14)), Forwarded::Take);
        assert_eq!(gate.take(7, 19, Some(17)), Forwarded::Gap, "17 was lost");
        let mut late = ForwardGate::after_claim(12);
        assert_eq!(late.take(7, 16, Some(14)), Forwarded::Gap, "the first frames after the claim were lost");
    }
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
        assert_eq!(gate.take(7, 11, None), Forwarded::Take);
        assert_eq!(gate.take(7, 11, None), Forwarded::Repeat, "a repeat");
        assert_eq!(gate.take(7, 14, Some(11)), Forwarded::Take, "a writer may skip seqs (unreplayable frames are not forwarded)");
        assert_eq!(gate.take(7, 12, Some(11)), Forwarded::Repeat, "older than one taken");
        assert_eq!(gate.take(9, 3, None), Forwarded::Take, "another writer numbers on its own");
        assert_eq!(gate.take(9, 4, Some(3)), Forwarded::Take);
        assert_eq!(gate.take(9, 4, Some(3)), Forwarded::Repeat);
    }
}
