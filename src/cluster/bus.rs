//! The push bus on Redis: a push for a user goes to this node's sockets of the user directly, and
//! to the channel `{p}:node:{id}:push` of every other live node that holds a socket of the user
//! (chosen from presence in the same script) — never a broadcast every node must filter. Each node
//! subscribes to its own channel only, on a connection of its own, re-subscribed by its watch
//! (`watch`) after reconnects.
//!
//! The same channel carries frames of v2 streams this node holds (`ChannelMessage::StreamFrame`),
//! handed to the stream in this node's `ResumeBuffer`, and word that another node took over a
//! stream this node held (`ChannelMessage::Taken`), which closes the socket still attached here.
//!
//! Redis pub/sub is at most once: a push published while the receiving node's subscription is
//! down is lost for that node (durable pushes store first; see protocol.md, "Server push"). What
//! the bus lost is read again from the database (`catch_up.rs`): when this node's subscription
//! comes back after being down (checked every `PROBE_EVERY`, and on every reconnect), when its
//! listener fell behind, and when another node announces users whose pushes it could not publish
//! (`unpublished.rs`) on the shared channel `{p}:catch-up`, which every node subscribes to as well
//! as to its own.
//!
//! Pushes for other nodes go through one publisher task per bus, which sends whatever is queued
//! when it is free as one pipeline of `EVALSHA`s (one Redis round trip and one timeout for the
//! lot): at thousands of pushes a second, hundreds of separate calls queued behind each other in
//! the client would each run into the operation timeout and open the breaker.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, LuaInterface, PubsubInterface};
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand};
use pam_actors::PushCounters;
use pam_actors::{BoxFuture, PushBus, PushOutcome, PushStats, ResumeBuffer, UserSlots};
use pam_protocol::UserId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use super::catch_up::{CatchUp, Reason};
use super::unpublished::{Announcement, Unpublished, announcer};
use super::{Op, RedisShared, scripts};
use crate::redis_target::RedisTarget;

/// How often a subscription Redis refused is tried again.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);
/// How often this node checks that it is subscribed (see `watch`), and how long the check may
/// take before the subscription counts as down.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Most pushes the publisher sends in one pipeline.
const MAX_PUBLISH_BATCH: usize = 256;
/// Pushes waiting for the publisher at most; `publish` waits for room beyond this.
const PUBLISH_QUEUE: usize = 4 * MAX_PUBLISH_BATCH;

/// A push for other nodes handed to the publisher: the user's presence key, the envelope, and
/// where the caller waits for the number of nodes it was published to (`None`: Redis failed).
struct Outgoing {
    key: String,
    message: String,
    reply: oneshot::Sender<Option<i64>>,
}

/// One push on the wire between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    user: UserId,
    /// The frame's JSON text, sent to the sockets as is.
    payload: String,
}

/// What arrives on a node's channel: a push, or a frame of a v2 stream this node holds that
/// another node's object of the stream wrote (published by `STREAM_APPEND`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChannelMessage {
    StreamFrame {
        stream: String,
        /// The writing object (`inst`, in decimal) and the seq it gave the frame (the holder
        /// numbers it anew).
        from: String,
        seq: u64,
        /// The writer's replayable seq before it (the holder sees a lost frame by it).
        #[serde(default)]
        prev: Option<u64>,
        /// Its JSON text, with that seq.
        frame: String,
    },
    /// Another node claimed stream `taken` from this node's object `inst` (in decimal): the
    /// socket attached to it here, if any, is told it was taken over.
    Taken {
        taken: String,
        inst: String,
    },
    Push(Envelope),
}

/// The two channels a node listens on: its own, and the shared announcements.
#[derive(Clone)]
struct Channels {
    own: String,
    catch_up: String,
}

/// The bus of one node.
pub struct RedisPushBus {
    shared: Arc<RedisShared>,
    slots: Arc<UserSlots>,
    counters: Arc<PushCounters>,
    /// The publisher's queue (it ends when the bus is dropped).
    outgoing: mpsc::Sender<Outgoing>,
    /// Users whose pushes reached only this node's sockets, announced once Redis answers again.
    unpublished: Arc<Unpublished>,
}

impl RedisPushBus {
    /// The bus, and the task that listens on this node's channel (abort it at shutdown); what the
    /// bus loses is read again through `catch_up`.
    pub fn start(
        target: &RedisTarget,
        shared: Arc<RedisShared>,
        slots: Arc<UserSlots>,
        streams: Arc<ResumeBuffer>,
        catch_up: Arc<CatchUp>,
    ) -> anyhow::Result<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let subscriber = super::subscriber_builder(target)
            .build_subscriber_client()
            .map_err(|e| anyhow::anyhow!("could not set up the Redis subscriber: {e}"))?;
        drop(subscriber.connect());
        let channels = Channels { own: shared.key(&format!("node:{}:push", shared.node)), catch_up: shared.key("catch-up") };
        let counters = Arc::new(PushCounters::default());
        let unpublished = Arc::new(Unpublished::default());
        let listener =
            tokio::spawn(listen(subscriber, channels.clone(), shared.node.clone(), slots.clone(), counters.clone(), streams, catch_up));
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(shared.clone(), queue));
        tokio::spawn(announcer(shared.clone(), Arc::downgrade(&unpublished), channels.catch_up));
        Ok((Arc::new(Self { shared, slots, counters, outgoing, unpublished }), listener))
    }
}

/// The publisher: a batch at a time (so pushes leave in the order they were handed over), until
/// the bus is dropped. A batch is one guarded operation: when it fails or the breaker is open,
/// each of its pushes reached this node's sockets only.
async fn publisher(shared: Arc<RedisShared>, mut queue: mpsc::Receiver<Outgoing>) {
    // The SHA1 of `scripts::PUSH` once Redis has it: a push sends the hash, not the ~2 KB script.
    let mut sha = None;
    let mut batch = Vec::with_capacity(MAX_PUBLISH_BATCH);
    while queue.recv_many(&mut batch, MAX_PUBLISH_BATCH).await > 0 {
        let sent = shared.guarded(Op::Push, publish_batch(&shared, &mut sha, &batch)).await;
        match sent {
            Ok(nodes) => {
                for (push, nodes) in batch.drain(..).zip(nodes) {
                    let _ = push.reply.send(nodes);
                }
            }
            Err(_) => {
                for push in batch.drain(..) {
                    let _ = push.reply.send(None);
                }
            }
        }
    }
}

/// Runs `scripts::PUSH` for each push of `batch` in one pipeline, by its hash, loading the script
/// first when this publisher has not yet or Redis lost it (a restart, `SCRIPT FLUSH`; then the
/// pushes it refused with `NOSCRIPT`, which ran nothing, are sent once more). For each push: how
/// many other nodes it was published to, `None` when Redis refused it. An error when every push
/// failed (Redis is down, as far as the breaker is concerned).
async fn publish_batch(shared: &RedisShared, sha: &mut Option<String>, batch: &[Outgoing]) -> Result<Vec<Option<i64>>, fred::error::Error> {
    let noscript = |result: &Result<i64, fred::error::Error>| result.as_ref().is_err_and(|e| e.details().starts_with("NOSCRIPT"));
    let mut results = run_pipeline(shared, sha, batch.iter()).await?;
    if results.iter().any(noscript) {
        *sha = None;
        let again: Vec<usize> = (0..results.len()).filter(|&i| noscript(&results[i])).collect();
        let retried = run_pipeline(shared, sha, again.iter().map(|&i| &batch[i])).await?;
        for (i, result) in again.into_iter().zip(retried) {
            results[i] = result;
        }
    }
    if let Some(Err(error)) = results.iter().all(Result::is_err).then(|| results.pop()).flatten() {
        return Err(error);
    }
    Ok(results
        .into_iter()
        .map(|result| result.map_err(|error| tracing::warn!(%error, "Redis refused a push to other nodes")).ok())
        .collect())
}

/// One pipeline of `EVALSHA`s of `scripts::PUSH` (loaded first when `sha` is unknown); each
/// push's result in order.
async fn run_pipeline(
    shared: &RedisShared,
    sha: &mut Option<String>,
    pushes: impl Iterator<Item = &Outgoing>,
) -> Result<Vec<Result<i64, fred::error::Error>>, fred::error::Error> {
    let hash = match sha.clone() {
        Some(hash) => hash,
        None => {
            let hash: String = shared.client.script_load(scripts::PUSH).await?;
            *sha = Some(hash.clone());
            hash
        }
    };
    let pipeline = shared.client.pipeline();
    for push in pushes {
        // EVALSHA sha 1 presence-key prefix field message (fred's pipelines take scripts as
        // custom commands).
        let args = vec![hash.clone(), "1".into(), push.key.clone(), shared.prefix.clone(), shared.field(), push.message.clone()];
        pipeline.custom::<(), _>(CustomCommand::new_static("EVALSHA", ClusterHash::Random, false), args).await?;
    }
    Ok(pipeline.try_all::<i64>().await)
}

/// Subscribes (retrying while Redis refuses) and hands every push to this node's sockets; from
/// then on watches the subscription, and asks for a catch-up whenever pushes may have been lost.
async fn listen(
    subscriber: SubscriberClient,
    channels: Channels,
    node: String,
    slots: Arc<UserSlots>,
    counters: Arc<PushCounters>,
    streams: Arc<ResumeBuffer>,
    catch_up: Arc<CatchUp>,
) {
    let mut messages = subscriber.message_rx();
    let channel = channels.own.clone();
    while let Err(error) = subscriber.subscribe(vec![channels.own.clone(), channels.catch_up.clone()]).await {
        tracing::debug!(%error, channel, "could not subscribe to this node's push channel yet");
        tokio::time::sleep(SUBSCRIBE_RETRY).await;
    }
    tracing::info!(channel, "listening for pushes from other nodes");
    // From the first subscribe on: the sockets that connected before it read their stored pushes
    // on connect, so only a later loss needs a catch-up.
    let _watch = AbortOnDrop(tokio::spawn(watch(subscriber.clone(), channels.clone(), catch_up.clone())));
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(text) = message.value.as_str() else { continue };
                if *message.channel == *channels.catch_up {
                    match serde_json::from_str::<Announcement>(&text) {
                        Ok(Announcement { from, .. }) if from == node => {}
                        Ok(Announcement { users: Some(users), .. }) => catch_up.users(users, Reason::Publisher),
                        Ok(Announcement { users: None, .. }) => catch_up.all(Reason::Publisher),
                        Err(_) => tracing::warn!(channel = channels.catch_up, "ignored an unreadable catch-up announcement"),
                    }
                    continue;
                }
                let envelope = match serde_json::from_str::<ChannelMessage>(&text) {
                    Ok(ChannelMessage::Push(envelope)) => envelope,
                    Ok(ChannelMessage::StreamFrame { stream, from, seq, prev, frame }) => {
                        streams.forwarded(&stream, from.parse().unwrap_or(0), seq, prev, frame);
                        continue;
                    }
                    Ok(ChannelMessage::Taken { taken, inst }) => {
                        streams.taken(&taken, inst.parse().unwrap_or(0));
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(channel, "ignored an unreadable message on this node's push channel");
                        continue;
                    }
                };
                counters.received();
                counters.delivered(slots.deliver(&envelope.user, &envelope.payload));
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "pushes from other nodes arrived faster than they were handed out; some were dropped");
                catch_up.all(Reason::Lagged);
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Watches this node's subscription, and is what re-subscribes it: every `PROBE_EVERY` (and at
/// once on a reconnect, since a new connection means the old one's messages since it broke are
/// lost) it subscribes again and PINGs on the subscriber's connection, which Redis answers only
/// after the SUBSCRIBE sent before it, within `PROBE_EVERY` (fred does not wait for a SUBSCRIBE's
/// reply: the PING is the check). fred's own `manage_subscriptions` is not used: on every
/// reconnect it also sends a PSUBSCRIBE without patterns, whose error reply Redis sends where
/// fred expects the PING's.
/// A failed check marks it down; the first check that succeeds after that — the subscription is
/// in place again, so whatever is published from then on arrives — asks for a catch-up of every
/// socket, which reads what was stored meanwhile.
async fn watch(subscriber: SubscriberClient, channels: Channels, catch_up: Arc<CatchUp>) {
    let mut reconnects = subscriber.reconnect_rx();
    let mut probes = tokio::time::interval(PROBE_EVERY);
    probes.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let probe = subscriber.with_options(&Options { timeout: Some(PROBE_EVERY), fail_fast: true, ..Default::default() });
    let both = vec![channels.own.clone(), channels.catch_up.clone()];
    let mut down = false;
    loop {
        let reconnected = tokio::select! {
            _ = probes.tick() => false,
            event = reconnects.recv() => match event {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        let checked = match probe.subscribe(both.clone()).await {
            Ok(()) => probe.ping::<fred::types::Value>(None).await.map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = &checked {
            tracing::debug!(%error, "checking this node's push subscription failed");
        }
        let subscribed = checked.is_ok();
        if (reconnected || !subscribed) && !down {
            down = true;
            tracing::warn!(
                channel = channels.own,
                "this node's push subscription was down: pushes from other nodes are read again from the database once it is back"
            );
        }
        if subscribed && down {
            down = false;
            tracing::info!(channel = channels.own, "this node's push subscription is back");
            catch_up.all(Reason::Subscription);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PushBus for RedisPushBus {
    fn publish<'a>(&'a self, user: &'a UserId, payload: &'a str) -> BoxFuture<'a, PushOutcome> {
        Box::pin(async move {
            self.counters.published();
            let local_sockets = self.slots.deliver(user, payload);
            self.counters.delivered(local_sockets);
            let envelope = Envelope { user: user.clone(), payload: payload.to_string() };
            let message = serde_json::to_string(&envelope).expect("an envelope serialises");
            let (reply, answer) = oneshot::channel();
            let push = Outgoing { key: self.shared.presence_key(user), message, reply };
            // Once handed over it is published even if this caller is dropped.
            let nodes = match self.outgoing.send(push).await {
                Ok(()) => answer.await.ok().flatten(),
                Err(_) => None,
            };
            match nodes {
                Some(nodes) => PushOutcome { local_sockets, remote_nodes: usize::try_from(nodes).unwrap_or(0), degraded: false },
                None => {
                    // Another node may hold sockets of the user: it reads the push once announced.
                    self.unpublished.record(user);
                    PushOutcome { local_sockets, remote_nodes: 0, degraded: true }
                }
            }
        })
    }

    fn stats(&self) -> PushStats {
        self.counters.stats()
    }
}
