//! Shared cluster state on Redis (`REDIS_URL` set): node registry and heartbeat (`node.rs`),
//! per-user presence and the cross-node socket cap (`presence.rs`), the shared chat rate limit
//! and REST `Idempotency-Key`s (`limits.rs`; the chat route's key bookkeeping, with its in-process
//! fallback, is `idempotency.rs`), the push bus (`bus.rs`) with its catch-up of what the bus lost
//! (`catch_up.rs`, and `unpublished.rs` for what this node could not publish), and v2 streams
//! (`streams.rs`).
//! `wiring.rs` builds a node's cluster parts (in-process ones without Redis) and `admin.rs` serves
//! the nodes and presence routes. Apps build one `RedisShared` per node; the Lua scripts live in
//! `scripts.rs`.
//!
//! Redis trouble is not the user's trouble: every operation gives up within `OP_TIMEOUT` (like
//! the cache), three failures in a row open a breaker for `OPEN_FOR`, and meanwhile every caller
//! falls back to this node's own in-process state (`SharedUnavailable`). The breaker's
//! transitions set `pam_redis_shared_state_degraded` and log one line each; the heartbeat keeps
//! trying, past the open breaker too (`probing`), so the shared state comes back by itself within
//! a heartbeat of Redis answering — and re-syncs this node's presence then.
//!
//! Keys (`{p}` = `PAM_CACHE_PREFIX`, node ids are `[A-Za-z0-9._-]{1,64}`):
//! - `{p}:node:{id}`: the node's JSON (id, incarnation, started_at, address, sockets, users),
//!   expiring `PAM_NODE_TTL_MS` after the last heartbeat; `{p}:nodes`: sorted set id → expiry (ms).
//! - `{p}:presence:{user}`: hash `{id}/{incarnation}` → `"{count}:{version}"`; a field counts only
//!   while `{p}:node:{id}` names that incarnation, so a dead node's sockets stop counting when its
//!   registration expires, without a write per user per heartbeat.
//! - `{p}:rate:{user}`: the user's GCRA arrival time (µs, Redis clock).
//! - `{p}:idem:{user}:{sha256(key)}`: an `Idempotency-Key`'s running marker (owner: node, boot,
//!   request; on a lease the request renews while its turn runs), then its response.
//! - channel `{p}:node:{id}:push`: pushes for sockets on that node, and frames of v2 streams the
//!   node holds that another node's still-running turn wrote (`streams.rs`).
//! - channel `{p}:catch-up`: a node's word that it could not publish pushes for some users
//!   (`unpublished.rs`); every node listens, and reads again for its sockets of those users
//!   (`catch_up.rs`).
//! - `{p}:v2s:{stream}` and `{p}:v2s:{stream}:meta`: a v2 stream's replayable frames and its
//!   user, epoch, holder, last seq and open turns (`streams.rs`).
//!
//! Scripts read keys they are not given (node registrations): a standalone Redis, like the cache.
//!
//! Also here: how a node builds its cluster parts from the settings, Redis or in-process
//! (`wiring.rs`), the REST idempotency port and its single-node store (`idempotency.rs`), and the
//! admin routes that show nodes and presence (`admin.rs`, which imports the edge's `state`,
//! `error` and admin check; nothing else here imports a route). Imports settings, the breaker and
//! `redis_target` (the URL, TLS).

pub mod admin;
mod bus;
pub mod catch_up;
pub mod idempotency;
mod limits;
mod node;
mod presence;
mod scripts;
mod streams;
mod unpublished;
pub mod wiring;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, ReconnectPolicy};
use pam_actors::SharedUnavailable;

pub use bus::RedisPushBus;
pub use node::{NodeInfo, spawn_heartbeat};
pub use presence::UserPresence;
pub use streams::RedisStreamStore;

use crate::breaker::{CircuitBreaker, Transition};
use crate::redis_target::RedisTarget;

/// `1` while Redis is unavailable and the shared cap, rate limit and idempotency run per node.
pub const SHARED_STATE_DEGRADED: &str = "pam_redis_shared_state_degraded";
/// Shared-state operations that failed or timed out, by `op` (a closed set: see `Op`).
pub const SHARED_ERRORS_TOTAL: &str = "pam_redis_shared_errors_total";
/// `1` on every live node, labelled with its `PAM_NODE_ID` (the only metric with a node label).
pub const NODE_UP: &str = "pam_node_up";

/// The same budget as the context cache: a hanging Redis costs a chat at most this per call.
const OP_TIMEOUT: Duration = Duration::from_millis(100);
/// How long one v2 stream op may take (see `RedisShared::streams`): a writer batch holds no
/// socket up (a longer wait only queues writes), and a resume that waits is better than one that
/// fails in a reconnect storm.
const STREAM_OP_TIMEOUT: Duration = Duration::from_secs(1);
const FAILURES_TO_OPEN: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(5);

/// What a shared operation was, for `pam_redis_shared_errors_total{op}`.
#[derive(Debug, Clone, Copy)]
enum Op {
    Heartbeat,
    Nodes,
    Presence,
    RateLimit,
    Idempotency,
    Push,
    Streams,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Heartbeat => "heartbeat",
            Op::Nodes => "nodes",
            Op::Presence => "presence",
            Op::RateLimit => "rate_limit",
            Op::Idempotency => "idempotency",
            Op::Push => "push",
            Op::Streams => "streams",
        }
    }
}

/// One node's handle on the shared state.
pub struct RedisShared {
    client: Client,
    /// v2 stream work (the writer's batches, claims) on a connection of its own, with
    /// `STREAM_OP_TIMEOUT`: large replies never queue ahead of the request path's small ops.
    pub(super) streams_client: Client,
    prefix: String,
    node: String,
    /// This process's boot id: with `node`, the incarnation that owns its turns and streams.
    boot: String,
    /// Changes whenever this node's presence fields may be wrong (after Redis lost or missed
    /// writes): fields of an older incarnation stop counting at once, and the node re-writes its
    /// counts under the new one.
    incarnation: Mutex<String>,
    node_ttl: Duration,
    breaker: CircuitBreaker,
    /// A presence write was not applied: re-sync at the next heartbeat that reaches Redis.
    resync: AtomicBool,
}

impl RedisShared {
    /// Connects in the background: a Redis that is down at startup only opens the breaker.
    pub fn connect(target: &RedisTarget, prefix: &str, node: &str, node_ttl: Duration) -> anyhow::Result<Self> {
        let client = builder(target).build().map_err(|e| anyhow::anyhow!("could not set up the Redis client: {e}"))?;
        drop(client.connect());
        let streams_client =
            builder_with(target, STREAM_OP_TIMEOUT).build().map_err(|e| anyhow::anyhow!("could not set up the Redis client: {e}"))?;
        drop(streams_client.connect());
        metrics::gauge!(SHARED_STATE_DEGRADED).set(0.0);
        Ok(Self {
            client,
            streams_client,
            prefix: prefix.to_string(),
            node: node.to_string(),
            boot: new_incarnation(),
            incarnation: Mutex::new(new_incarnation()),
            node_ttl,
            breaker: CircuitBreaker::new(FAILURES_TO_OPEN, OPEN_FOR),
            resync: AtomicBool::new(false),
        })
    }

    /// Whether the shared state is degraded (the breaker is open or its trial runs): the per-user
    /// cap, rate limit, idempotency keys and pushes are this node's own meanwhile. The same span
    /// as `pam_redis_shared_state_degraded` = 1.
    pub fn degraded(&self) -> bool {
        self.breaker.status() == "open"
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn incarnation(&self) -> String {
        self.incarnation.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// This node's field in presence hashes: `{id}/{incarnation}`.
    fn field(&self) -> String {
        format!("{}/{}", self.node, self.incarnation())
    }

    /// `{prefix}:{rest}`.
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Marks this node's presence for a re-sync (a write did not land).
    fn needs_resync(&self) {
        self.resync.store(true, Ordering::Release);
    }

    /// Runs `op` unless the breaker is open; records the outcome and logs each transition once.
    async fn guarded<T>(&self, op: Op, fut: impl Future<Output = Result<T, fred::error::Error>>) -> Result<T, SharedUnavailable> {
        let permit = self.breaker.admit().ok_or(SharedUnavailable)?;
        match attempt(fut).await {
            Ok(value) => {
                self.closed(permit.succeeded());
                Ok(value)
            }
            Err(error) => {
                metrics::counter!(SHARED_ERRORS_TOTAL, "op" => op.label()).increment(1);
                if permit.failed() == Some(Transition::Opened) {
                    metrics::gauge!(SHARED_STATE_DEGRADED).set(1.0);
                    tracing::warn!(node = %self.node, %error, "Redis unavailable: per-user cap, rate limit and idempotency fall back to this node's own, pushes reach this node's sockets only");
                }
                Err(SharedUnavailable)
            }
        }
    }

    /// [`Self::guarded`] for the heartbeat, which also runs while the breaker is open (a probe past
    /// it, one per heartbeat): when Redis answers it the breaker closes at once, so the shared
    /// state comes back within a heartbeat of Redis answering rather than after `OPEN_FOR`. A
    /// probe that fails is counted and leaves the breaker as it was.
    async fn probing<T>(&self, op: Op, fut: impl Future<Output = Result<T, fred::error::Error>>) -> Result<T, SharedUnavailable> {
        if !self.degraded() {
            return self.guarded(op, fut).await;
        }
        match attempt(fut).await {
            Ok(value) => {
                self.closed(self.breaker.close_after_probe());
                Ok(value)
            }
            Err(_) => {
                metrics::counter!(SHARED_ERRORS_TOTAL, "op" => op.label()).increment(1);
                Err(SharedUnavailable)
            }
        }
    }

    /// Logs and clears the gauge when a success closed the breaker.
    fn closed(&self, transition: Option<Transition>) {
        if transition == Some(Transition::Closed) {
            metrics::gauge!(SHARED_STATE_DEGRADED).set(0.0);
            tracing::info!(node = %self.node, "Redis answers again: per-user cap, rate limit, idempotency and pushes are shared across nodes again");
        }
    }

    /// Runs a v2 stream op (one of `streams_client`) within `STREAM_OP_TIMEOUT`, past the breaker: the
    /// writer's batches and a resume's claim are worth a longer wait than a request-path op, and
    /// must not fail for seconds because a burst of request-path ops timed out. Failures are
    /// counted, not logged (the callers say what they lost).
    async fn streams<T>(&self, fut: impl Future<Output = Result<T, fred::error::Error>>) -> Result<T, SharedUnavailable> {
        match tokio::time::timeout(STREAM_OP_TIMEOUT, fut).await {
            Ok(Ok(value)) => Ok(value),
            _ => {
                metrics::counter!(SHARED_ERRORS_TOTAL, "op" => Op::Streams.label()).increment(1);
                Err(SharedUnavailable)
            }
        }
    }
}

/// `fut` within `OP_TIMEOUT`; the error in words.
async fn attempt<T>(fut: impl Future<Output = Result<T, fred::error::Error>>) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} ms", OP_TIMEOUT.as_millis())),
    }
}

/// A fred builder with the same timeouts and reconnect policy as the context cache's.
fn builder(target: &RedisTarget) -> Builder {
    builder_with(target, OP_TIMEOUT)
}

/// Messages a node's subscriber holds for its listener (fred's default is 32): a burst of pushes
/// or of frames forwarded from a draining node beyond what the listener has taken is dropped
/// (`Lagged`); this is ~1.6 s at 10 000 pushes/s. About 100 bytes a slot, allocated up front:
/// ~1.6 MB per node.
const SUBSCRIBER_BACKLOG: usize = 16_384;

/// [`builder`] for the subscriber of this node's channel, with room for `SUBSCRIBER_BACKLOG`,
/// reconnecting at least every second: while it is disconnected this node misses pushes (then
/// reads them again, see `catch_up.rs`), so that wait is what a catch-up comes late by.
fn subscriber_builder(target: &RedisTarget) -> Builder {
    let mut builder = builder(target);
    builder
        .with_performance_config(|p| p.broadcast_channel_capacity = SUBSCRIBER_BACKLOG)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2));
    builder
}

/// [`builder`] whose commands give up after `command_timeout`.
fn builder_with(target: &RedisTarget, command_timeout: Duration) -> Builder {
    let mut builder = Builder::from_config(target.config());
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
        })
        .with_performance_config(|p| p.default_command_timeout = command_timeout)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    builder
}

fn new_incarnation() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
