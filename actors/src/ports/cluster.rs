//! Cluster ports: what lets N gateway nodes behave as one — a user's socket count across nodes
//! (presence, for `PAM_MAX_CONNECTIONS_PER_USER`), the chat rate limit across nodes, and the push
//! bus that reaches a user's sockets on whichever nodes hold them. The gateway implements them
//! on Redis when `REDIS_URL` is set; without it none is set and everything runs in process
//! (`UserSlots`, `RateLimiter`, `LocalPushBus`): one node is then the whole cluster.
//!
//! Every shared operation may answer `SharedUnavailable` (Redis refused, hung past its 100 ms
//! budget, or its breaker is open); callers then use this node's own in-process state, so Redis
//! trouble never becomes the user's trouble.

use pam_protocol::UserId;

use super::BoxFuture;

/// The shared state could not be reached in time: use this node's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shared state unavailable")]
pub struct SharedUnavailable;

/// This node's socket count for one user after a local change. `version` grows with every
/// change on this node, so a write that lands late (writes race) never undoes a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketCount {
    /// This node's sockets of the user.
    pub count: usize,
    /// Grows with every change on this node.
    pub version: u64,
}

/// Per-user socket counts of every live node (presence), with an atomic check-and-set for the cap.
pub trait SharedPresence: Send + Sync + 'static {
    /// Sets this node's count for `user` to `now`, if the user's sockets on every other live
    /// node plus `now.count` stay within `cap`; `Ok(false)` (nothing written) when they would not.
    fn acquire<'a>(&'a self, user: &'a UserId, now: SocketCount, cap: usize) -> BoxFuture<'a, Result<bool, SharedUnavailable>>;
    /// Sets this node's count for `user` to `now` (unless a newer version is stored).
    fn put<'a>(&'a self, user: &'a UserId, now: SocketCount) -> BoxFuture<'a, Result<(), SharedUnavailable>>;
}

/// Which node incarnations are alive (registered and heartbeating), so a turn another node
/// accepted is answered again at once when that node is gone, instead of after the longest a turn
/// can run. An incarnation is a node id plus its process's boot id: a node restarted under the
/// same id (fixed ids are the norm: compose service names, pod names) is not its predecessor.
pub trait NodeLiveness: Send + Sync + 'static {
    /// This process's boot id (random per start).
    fn boot(&self) -> &str;
    /// Whether node `id` (`PAM_NODE_ID`), in its incarnation `boot` when known, may still be
    /// answering a turn it accepted `accepted_ago` ago: `false` when `id` is registered under
    /// another boot id (it restarted), or when it is not registered and the turn is older than a
    /// registration lives (`PAM_NODE_TTL_MS`) — a killed node's registration is gone by then,
    /// while a live node whose registration Redis lost (a restart, a flush) registers again
    /// within a heartbeat. A drained node deregisters only after its running turns ended.
    fn may_be_answering<'a>(
        &'a self,
        id: &'a str,
        boot: Option<&'a str>,
        accepted_ago: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, SharedUnavailable>>;
}

/// The per-user chat rate limit counted across nodes (GCRA, the same rule as `RateLimiter`).
pub trait SharedRateLimit: Send + Sync + 'static {
    /// Takes one chat of `per_minute` for `user`; `Ok(false)` when the budget is spent.
    fn admit<'a>(&'a self, user: &'a UserId, per_minute: u32) -> BoxFuture<'a, Result<bool, SharedUnavailable>>;
}

/// What one `publish` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Sockets of this node the payload was handed to.
    pub local_sockets: usize,
    /// Other nodes it was sent to (those holding sockets of the user).
    pub remote_nodes: usize,
    /// The bus could not reach other nodes: only this node's sockets got it.
    pub degraded: bool,
}

/// Counts of one bus instance (the Prometheus counters add up every node of a process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Payloads this instance published.
    pub published: u64,
    /// Payloads that arrived from other nodes.
    pub received: u64,
    /// Sockets of this node a payload was handed to.
    pub delivered: u64,
}

/// Delivers server frames to every socket of a user on every node — and only to the nodes that
/// hold a socket of that user, never a broadcast every node must filter. Each node subscribes to
/// its own channel when the bus is built.
pub trait PushBus: Send + Sync + 'static {
    /// Sends `payload` (one server frame's JSON text, sent as is) to every socket of `user`.
    fn publish<'a>(&'a self, user: &'a UserId, payload: &'a str) -> BoxFuture<'a, PushOutcome>;
    /// This instance's counts.
    fn stats(&self) -> PushStats;
}
