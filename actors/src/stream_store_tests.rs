//! The pure bookkeeping of resuming from the store: which frames prove a complete replay, which
//! failure a claim means, and the seq dedupe of frames forwarded to the holder.

use super::*;
use pam_protocol::{ChatEnd, V2Error};

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
        previous_alive: true,
        open_turns: vec![],
        frames: vec![],
    };
    assert_eq!(failure_of(&Claim::Claimed(claimed)), None);
}

#[test]
fn the_forward_gate_takes_each_seq_of_a_writer_once_and_follows_a_new_writer() {
    let mut gate = ForwardGate::default();
    assert!(gate.admit(7, 11));
    assert!(!gate.admit(7, 11), "a repeat");
    assert!(gate.admit(7, 14), "a writer may skip seqs (unreplayable frames are not forwarded)");
    assert!(!gate.admit(7, 12), "older than one taken");
    assert!(gate.admit(9, 3), "another writer numbers on its own");
    assert!(gate.admit(9, 4));
    assert!(!gate.admit(9, 4));
}

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
