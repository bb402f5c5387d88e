//! Unit tests of the resume buffer (paused tokio time for the TTL).

use super::*;
use crate::outbound::{Outbound, OutboundReceiver, WriterEvent};
use ractor::{Actor, ActorProcessingErr};

/// Stands in for a connection actor: swallows every message.
struct Sink;

impl Actor for Sink {
    type Msg = ConnectionMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn user(n: u8) -> UserId {
    UserId::parse(&format!("{n}{n}{n}{n}{n}{n}{n}{n}-1111-4111-8111-111111111111")).unwrap()
}

fn limits(max_frames: usize) -> ResumeLimits {
    ResumeLimits { max_streams: 2, max_detached_per_user: 64, max_frames, max_bytes: 1 << 20, ttl: Duration::from_secs(60) }
}

/// The seqs waiting in the socket's queue, leaving out the `resumed` that ends a replay.
async fn seqs(rx: &mut OutboundReceiver) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(OutFrame::Text(text)) = rx.try_next_frame() {
        let frame: SeqFrame = serde_json::from_str(&text).unwrap();
        if !matches!(frame.frame, V2Frame::Resumed { .. }) {
            seen.push(frame.seq);
        }
    }
    seen
}

fn ack(id: &str) -> V2Frame {
    V2Frame::Ack { id: id.into() }
}

#[tokio::test]
async fn frames_are_numbered_and_replayed_after_last_seq() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(limits(10));
    let stream = buffer.open(user(1), 1);
    stream.send(V2Frame::Welcome(pam_protocol::Welcome::new("c", stream.id(), buffer.epoch(), 1, 1)));
    for id in ["a", "b", "c"] {
        stream.send(ack(id));
    }
    stream.send(V2Frame::Ping { timestamp: 1 });
    let (out, mut rx) = Outbound::channel(16);
    let found = buffer.find(stream.id(), &user(1)).expect("own stream is found");
    assert_eq!(attach_and_replay(&found, "c2", &out, &actor, Some(2)).await, Ok(2));
    assert_eq!(seqs(&mut rx).await, vec![3, 4], "acks b and c; welcome and ping are not replayed");
    stream.send(ack("d"));
    assert_eq!(seqs(&mut rx).await, vec![7], "live frames follow the replay and its `resumed` (6)");
    assert_eq!(found.attach("c3", out, actor.clone(), Some(8)).map(|r| r.len()), Err(ResumeError::Ahead));
    actor.stop(None);
}

#[tokio::test]
async fn a_resume_from_before_the_ring_fails_as_too_old() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(limits(2));
    let stream = buffer.open(user(1), 1);
    for id in ["a", "b", "c", "d"] {
        stream.send(ack(id));
    }
    let (out, mut rx) = Outbound::channel(16);
    assert_eq!(stream.attach("c2", out.clone(), actor.clone(), Some(1)).map(|r| r.len()), Err(ResumeError::TooOld));
    assert_eq!(attach_and_replay(&stream, "c2", &out, &actor, Some(2)).await, Ok(2));
    assert_eq!(seqs(&mut rx).await, vec![3, 4]);
    actor.stop(None);
}

#[tokio::test]
async fn streams_are_only_found_by_their_user() {
    let buffer = ResumeBuffer::new(limits(2));
    let stream = buffer.open(user(1), 1);
    assert!(buffer.find(stream.id(), &user(2)).is_none());
    assert!(buffer.find("nope", &user(1)).is_none());
    assert!(buffer.find(stream.id(), &user(1)).is_some());
}

#[tokio::test(start_paused = true)]
async fn detached_streams_expire_and_the_registry_stays_bounded() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(limits(2));
    let attached = buffer.open(user(1), 1);
    let (out, _rx) = Outbound::channel(4);
    attached.attach("c1", out, actor.clone(), None).unwrap();
    let detached = buffer.open(user(1), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(buffer.find(detached.id(), &user(1)).is_none(), "expired after the TTL");
    assert!(buffer.find(attached.id(), &user(1)).is_some(), "an attached stream never expires");
    let a = buffer.open(user(1), 1);
    let b = buffer.open(user(1), 1);
    assert_eq!(buffer.len(), 2, "bounded in streams");
    assert!(buffer.find(a.id(), &user(1)).is_none(), "the oldest detached stream made room");
    assert!(buffer.find(b.id(), &user(1)).is_some());
    buffer.detach(&attached, "c1");
    actor.stop(None);
}

#[tokio::test(start_paused = true)]
async fn detached_streams_are_forgotten_by_age_while_the_registry_is_not_full() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(ResumeLimits { max_streams: 1_000, ..limits(4) });
    let (out, _rx) = Outbound::channel(4);
    for _ in 0..10 {
        let stream = buffer.open(user(1), 1);
        stream.attach("c", out.clone(), actor.clone(), None).unwrap();
        buffer.detach(&stream, "c");
    }
    assert_eq!(buffer.len(), 10);
    tokio::time::advance(Duration::from_secs(61)).await;
    let fresh = buffer.open(user(1), 1);
    assert_eq!(buffer.len(), 1, "the expired ones are gone, only the fresh one is left");
    assert!(buffer.find(fresh.id(), &user(1)).is_some());
    actor.stop(None);
}

#[tokio::test]
async fn a_replay_larger_than_the_socket_queue_arrives_whole_and_live_frames_follow_it() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(ResumeLimits { max_frames: 256, ..limits(256) });
    let stream = buffer.open(user(1), 1);
    for n in 0..200 {
        stream.send(ack(&n.to_string()));
    }
    let (out, mut rx) = Outbound::channel(16);
    let replay = stream.attach("c2", out.clone(), actor.clone(), Some(0)).unwrap();
    assert_eq!(replay.len(), 200);
    let replaying = {
        let stream = stream.clone();
        tokio::spawn(async move { stream.replay("c2", &out, replay).await })
    };
    stream.send(ack("live"));
    let mut seen = Vec::new();
    while seen.len() < 202 {
        if let WriterEvent::Frame(OutFrame::Text(text)) = rx.next().await {
            seen.push(serde_json::from_str::<SeqFrame>(&text).unwrap());
        }
    }
    replaying.await.unwrap();
    let seqs: Vec<u64> = seen.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (1..=202).collect::<Vec<_>>(), "every frame once, in order, the live one after the replay");
    assert_eq!(seen[201].frame, V2Frame::Resumed { stream_id: stream.id().to_string(), replayed: 200 }, "resumed ends the replay");
    actor.stop(None);
}

/// Attaches and runs the replay to its end (the queue must hold it).
async fn attach_and_replay(
    stream: &ResumableStream,
    conn: &str,
    out: &crate::outbound::Outbound,
    actor: &ActorRef<ConnectionMsg>,
    last_seq: Option<u64>,
) -> Result<usize, ResumeError> {
    let replay = stream.attach(conn, out.clone(), actor.clone(), last_seq)?;
    let len = replay.len();
    stream.replay(conn, out, replay).await;
    Ok(len)
}

#[tokio::test]
async fn a_full_socket_queue_keeps_the_frame_for_resume() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(limits(10));
    let stream = buffer.open(user(1), 1);
    let (out, mut rx) = Outbound::channel(1);
    stream.attach("c1", out, actor.clone(), None).unwrap();
    stream.send(ack("a"));
    stream.send(ack("b"));
    assert!(matches!(rx.next().await, WriterEvent::Frame(_)));
    buffer.detach(&stream, "c1");
    let (out, mut rx) = Outbound::channel(4);
    assert_eq!(attach_and_replay(&stream, "c2", &out, &actor, Some(1)).await, Ok(1));
    assert_eq!(seqs(&mut rx).await, vec![2]);
    actor.stop(None);
}

/// A stream of `user` whose socket came and went (detached now).
fn closed_stream(buffer: &ResumeBuffer, user: &UserId, out: &Outbound, actor: &ActorRef<ConnectionMsg>) -> Arc<ResumableStream> {
    let stream = buffer.open(user.clone(), 1);
    stream.attach("c", out.clone(), actor.clone(), None).unwrap();
    buffer.detach(&stream, "c");
    stream
}

fn held(buffer: &ResumeBuffer, streams: &[Arc<ResumableStream>], user: &UserId) -> usize {
    streams.iter().filter(|s| buffer.find(s.id(), user).is_some()).count()
}

#[tokio::test]
async fn one_user_over_its_share_of_detached_streams_loses_only_its_own_oldest() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(ResumeLimits { max_streams: 1_000, max_detached_per_user: 3, ..limits(4) });
    let (out, _rx) = Outbound::channel(4);
    let other = closed_stream(&buffer, &user(2), &out, &actor);
    let attached = buffer.open(user(1), 1);
    attached.attach("live", out.clone(), actor.clone(), None).unwrap();
    let churn: Vec<_> = (0..50).map(|_| closed_stream(&buffer, &user(1), &out, &actor)).collect();
    assert!(buffer.find(other.id(), &user(2)).is_some(), "another user's stream stays resumable");
    assert!(buffer.find(attached.id(), &user(1)).is_some(), "an attached stream is not in the share");
    assert_eq!(held(&buffer, &churn[47..], &user(1)), 3, "the newest three detached streams are kept");
    assert_eq!(held(&buffer, &churn, &user(1)), 3);
    assert_eq!(buffer.len(), 5);
    // Resumed and closed again, a stream counts once.
    let resumed = &churn[49];
    resumed.attach("c2", out.clone(), actor.clone(), Some(0)).unwrap();
    buffer.detach(resumed, "c2");
    assert_eq!(held(&buffer, &churn, &user(1)), 3);
    actor.stop(None);
}

#[tokio::test]
async fn a_full_registry_makes_room_from_the_user_holding_the_most_detached_streams() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(ResumeLimits { max_streams: 8, max_detached_per_user: 4, ..limits(4) });
    let (out, _rx) = Outbound::channel(4);
    // The globally oldest detached streams belong to users 2 and 3; users 4 and 1 hold more.
    let quiet = [closed_stream(&buffer, &user(2), &out, &actor), closed_stream(&buffer, &user(3), &out, &actor)];
    let fewer: Vec<_> = (0..2).map(|_| closed_stream(&buffer, &user(4), &out, &actor)).collect();
    let busy: Vec<_> = (0..4).map(|_| closed_stream(&buffer, &user(1), &out, &actor)).collect();
    assert_eq!(buffer.len(), 8, "full");
    let newcomer = closed_stream(&buffer, &user(5), &out, &actor);
    assert!(buffer.find(newcomer.id(), &user(5)).is_some(), "a new stream still gets a place");
    assert_eq!(held(&buffer, &busy, &user(1)), 3, "the user holding the most made room, oldest first");
    assert!(buffer.find(busy[0].id(), &user(1)).is_none());
    for _ in 0..2 {
        closed_stream(&buffer, &user(6), &out, &actor);
    }
    assert_eq!(held(&buffer, &busy, &user(1)), 2, "still the one holding the most, until it holds as many as the rest");
    assert_eq!(held(&buffer, &fewer, &user(4)), 1, "then, of those holding as many, the one detached longest ago");
    assert!(buffer.find(fewer[0].id(), &user(4)).is_none());
    assert!(
        buffer.find(quiet[0].id(), &user(2)).is_some() && buffer.find(quiet[1].id(), &user(3)).is_some(),
        "the quiet users keep theirs"
    );
    assert_eq!(buffer.len(), 8);
    actor.stop(None);
}

#[tokio::test(start_paused = true)]
async fn the_per_user_bookkeeping_empties_as_streams_expire() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(ResumeLimits { max_streams: 1_000, max_detached_per_user: 2, ..limits(4) });
    let (out, _rx) = Outbound::channel(4);
    for n in 0..20 {
        closed_stream(&buffer, &user(n % 5), &out, &actor);
    }
    assert_eq!(buffer.len(), 10, "two per user");
    tokio::time::advance(Duration::from_secs(61)).await;
    let fresh = buffer.open(user(9), 1);
    assert_eq!(buffer.len(), 1);
    assert_eq!(buffer.users_tracked(), 1, "only the fresh stream's user is tracked");
    buffer.forget(fresh.id());
    assert_eq!(buffer.users_tracked(), 0);
    actor.stop(None);
}

#[tokio::test]
async fn stale_expiry_entries_are_compacted_without_forgetting_any_stream() {
    let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let buffer = ResumeBuffer::new(ResumeLimits { max_streams: 600, max_detached_per_user: 64, ..limits(4) });
    let (out, _rx) = Outbound::channel(4);
    let other = closed_stream(&buffer, &user(2), &out, &actor);
    // Every socket leaves two expiry entries (its open, its close): thousands of them, far more
    // than twice the streams held.
    let churn: Vec<_> = (0..2_000).map(|_| closed_stream(&buffer, &user(1), &out, &actor)).collect();
    assert!(buffer.find(other.id(), &user(2)).is_some(), "the other user's stream is never compacted away");
    assert_eq!(held(&buffer, &churn, &user(1)), 64);
    assert_eq!(buffer.len(), 65);
    actor.stop(None);
}
