//! The push bus on Redis: a push for a user goes to this node's sockets of the user directly, and
//! to the channel `{p}:node:{id}:push` of every other live node that holds a socket of the user
//! (chosen from presence in the same script) — never a broadcast every node must filter. Each node
//! subscribes to its own channel only, on a connection of its own, re-subscribed after reconnects.
//!
//! The same channel carries frames of v2 streams this node holds (`ChannelMessage::StreamFrame`),
//! handed to the stream in this node's `ResumeBuffer`.
//!
//! Redis pub/sub is at most once: a push published while the receiving node's subscription is
//! down is lost for that node (durable pushes store first; see protocol.md, "Server push").

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, LuaInterface, PubsubInterface};
use pam_actors::cluster::PushCounters;
use pam_actors::{BoxFuture, PushBus, PushOutcome, PushStats, ResumeBuffer, UserSlots};
use pam_protocol::UserId;
use serde::{Deserialize, Serialize};

use super::{Op, RedisShared, scripts};

/// How often a subscription Redis refused is tried again.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);
/// Messages the subscriber holds for the listener (fred's default is 32): a burst of pushes and
/// stream frames beyond what the listener has taken is dropped (`Lagged`), so this is ~1.6 s at
/// 10 000 pushes/s (~100 bytes a slot, allocated up front).
const SUBSCRIBER_BUFFER: usize = 1 << 14;

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
        /// Its JSON text, with that seq.
        frame: String,
    },
    Push(Envelope),
}

/// The bus of one node.
pub struct RedisPushBus {
    shared: Arc<RedisShared>,
    slots: Arc<UserSlots>,
    counters: Arc<PushCounters>,
    /// The SHA1 of `scripts::PUSH` once Redis has it (`SCRIPT LOAD`): a push sends the hash
    /// (`EVALSHA`), not the ~2 KB script, and loads it again when Redis answers `NOSCRIPT`.
    push_sha: std::sync::RwLock<Option<String>>,
}

impl RedisPushBus {
    /// The bus, and the task that listens on this node's channel (abort it at shutdown).
    pub fn start(
        url: &str,
        shared: Arc<RedisShared>,
        slots: Arc<UserSlots>,
        streams: Arc<ResumeBuffer>,
    ) -> anyhow::Result<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let subscriber = super::builder(url)?
            .with_performance_config(|p| p.broadcast_channel_capacity = SUBSCRIBER_BUFFER)
            .build_subscriber_client()
            .map_err(|e| anyhow::anyhow!("could not set up the Redis subscriber: {e}"))?;
        drop(subscriber.connect());
        let channel = shared.key(&format!("node:{}:push", shared.node));
        let counters = Arc::new(PushCounters::default());
        let listener = tokio::spawn(listen(subscriber, channel, slots.clone(), counters.clone(), streams));
        Ok((Arc::new(Self { shared, slots, counters, push_sha: std::sync::RwLock::new(None) }), listener))
    }

    /// Runs `scripts::PUSH` by its hash, loading it first when this bus has not yet or Redis
    /// lost it (a restart, `SCRIPT FLUSH`); the number of other nodes it published to.
    async fn run_push(&self, key: String, args: Vec<String>) -> Result<i64, fred::error::Error> {
        let client = &self.shared.client;
        let known = self.push_sha.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sha) = known {
            match client.evalsha(sha, vec![key.clone()], args.clone()).await {
                Err(error) if error.details().starts_with("NOSCRIPT") => {}
                done => return done,
            }
        }
        let sha: String = client.script_load(scripts::PUSH).await?;
        *self.push_sha.write().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
        client.evalsha(sha, vec![key], args).await
    }
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
                    Ok(ChannelMessage::StreamFrame { stream, from, seq, frame }) => {
                        streams.forwarded(&stream, from.parse().unwrap_or(0), seq, frame);
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
            let shared = &self.shared;
            let args = vec![shared.prefix.clone(), shared.field(), message];
            let sent: Result<i64, _> = shared.guarded(Op::Push, self.run_push(shared.presence_key(user), args)).await;
            match sent {
                Ok(nodes) => PushOutcome { local_sockets, remote_nodes: usize::try_from(nodes).unwrap_or(0), degraded: false },
                Err(_) => PushOutcome { local_sockets, remote_nodes: 0, degraded: true },
            }
        })
    }

    fn stats(&self) -> PushStats {
        self.counters.stats()
    }
}
