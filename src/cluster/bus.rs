//! The push bus on Redis: a push for a user goes to this node's sockets of the user directly, and
//! to the channel `{p}:node:{id}:push` of every other live node that holds a socket of the user
//! (chosen from presence in the same script) — never a broadcast every node must filter. Each node
//! subscribes to its own channel only, on a connection of its own, re-subscribed after reconnects.
//!
//! The same channel carries frames of v2 streams this node holds (`ChannelMessage::StreamFrame`),
//! handed to the stream in this node's `ResumeBuffer`, and word that another node took over a
//! stream this node held (`ChannelMessage::Taken`), which closes the socket still attached here.
//!
//! Redis pub/sub is at most once: a push published while the receiving node's subscription is
//! down is lost for that node (durable pushes store first; see protocol.md, "Server push").
//!
//! Pushes for other nodes go through one publisher task per bus, which sends whatever is queued
//! when it is free as one pipeline of `EVALSHA`s (one Redis round trip and one timeout for the
//! lot): at thousands of pushes a second, hundreds of separate calls queued behind each other in
//! the client would each run into the operation timeout and open the breaker.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, LuaInterface, PubsubInterface};
use fred::types::{ClusterHash, CustomCommand};
use pam_actors::PushCounters;
use pam_actors::{BoxFuture, PushBus, PushOutcome, PushStats, ResumeBuffer, UserSlots};
use pam_protocol::UserId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{Op, RedisShared, scripts};

/// How often a subscription Redis refused is tried again.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);
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

/// The bus of one node.
pub struct RedisPushBus {
    shared: Arc<RedisShared>,
    slots: Arc<UserSlots>,
    counters: Arc<PushCounters>,
    /// The publisher's queue (it ends when the bus is dropped).
    outgoing: mpsc::Sender<Outgoing>,
}

impl RedisPushBus {
    /// The bus, and the task that listens on this node's channel (abort it at shutdown).
    pub fn start(
        url: &str,
        shared: Arc<RedisShared>,
        slots: Arc<UserSlots>,
        streams: Arc<ResumeBuffer>,
    ) -> anyhow::Result<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let subscriber = super::subscriber_builder(url)?
            .build_subscriber_client()
            .map_err(|e| anyhow::anyhow!("could not set up the Redis subscriber: {e}"))?;
        drop(subscriber.connect());
        let channel = shared.key(&format!("node:{}:push", shared.node));
        let counters = Arc::new(PushCounters::default());
        let listener = tokio::spawn(listen(subscriber, channel, slots.clone(), counters.clone(), streams));
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(shared.clone(), queue));
        Ok((Arc::new(Self { shared, slots, counters, outgoing }), listener))
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

/// Subscribes (retrying while Redis refuses) and hands every push to this node's sockets.
async fn listen(
    subscriber: SubscriberClient,
    channel: String,
    slots: Arc<UserSlots>,
    counters: Arc<PushCounters>,
    streams: Arc<ResumeBuffer>,
) {
    let mut messages = subscriber.message_rx();
    let resubscriber = subscriber.manage_subscriptions();
    let _stop_resubscribing = AbortOnDrop(resubscriber);
    while let Err(error) = subscriber.subscribe(channel.clone()).await {
        tracing::debug!(%error, channel, "could not subscribe to this node's push channel yet");
        tokio::time::sleep(SUBSCRIBE_RETRY).await;
    }
    tracing::info!(channel, "listening for pushes from other nodes");
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(text) = message.value.as_str() else { continue };
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
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
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
                None => PushOutcome { local_sockets, remote_nodes: 0, degraded: true },
            }
        })
    }

    fn stats(&self) -> PushStats {
        self.counters.stats()
    }
}
