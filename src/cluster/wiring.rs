//! "N gateway nodes behave as one": builds this node's cluster parts from the settings — the
//! shared per-user cap (presence), chat rate limit, REST idempotency, push bus and v2 stream store
//! on Redis when `REDIS_URL` is set (each falling back to this node's own while Redis is
//! unavailable), or the in-process versions of the same when it is not (one node is then the
//! whole cluster).

use std::net::SocketAddr;
use std::sync::Arc;

use pam_actors::{
    ChatRateLimit, LocalPushBus, PushBus, ResumeBuffer, ResumeLimits, SharedPresence, SharedRateLimit, StoredPushDelivery, StreamStore,
    UserSlots,
};

use crate::cluster::catch_up::CatchUp;
use crate::cluster::idempotency::{
    IDEMPOTENCY_CAPACITY, IDEMPOTENCY_KEYS_PER_USER, IDEMPOTENCY_TTL, IdempotencyKeys, RestIdempotency, SharedIdempotency,
};
use crate::cluster::{NodeInfo, RedisPushBus, RedisShared, RedisStreamStore, spawn_heartbeat};
use crate::redis_target::RedisTarget;
use crate::settings::Settings;

/// What the HTTP routes see of the cluster.
#[derive(Clone)]
pub struct ClusterView {
    /// This node's id (`PAM_NODE_ID`).
    pub node: Arc<str>,
    pub started_at: String,
    pub address: SocketAddr,
    /// The shared state, when `REDIS_URL` is set.
    pub redis: Option<Arc<RedisShared>>,
    pub slots: Arc<UserSlots>,
    pub push: Arc<dyn PushBus>,
}

impl ClusterView {
    /// This node as `/api/v1/monitoring/nodes` shows it when Redis cannot be asked.
    pub fn local_node(&self) -> NodeInfo {
        let (sockets, users) = self.slots.totals();
        NodeInfo {
            id: self.node.to_string(),
            boot: self.redis.as_ref().map(|redis| pam_actors::NodeLiveness::boot(&**redis).to_string()).unwrap_or_default(),
            incarnation: String::new(),
            started_at: self.started_at.clone(),
            address: self.address.to_string(),
            sockets,
            users,
            heartbeat_at: pam_actors::iso_now(),
        }
    }
}

/// Everything `Application::build` wires in.
pub struct ClusterParts {
    pub view: ClusterView,
    pub rate_limiter: ChatRateLimit,
    pub idempotency: RestIdempotency,
    /// v2 streams for `resume`: in this process, and in Redis too when it is set.
    pub resume: Arc<ResumeBuffer>,
    /// The heartbeat, the push listener, the push catch-up and the stream writer; aborted at
    /// shutdown.
    pub background: Vec<tokio::task::JoinHandle<()>>,
}

/// This node's cluster parts; with Redis (`redis`, from `REDIS_URL`) they register the node and
/// start its heartbeat, and pushes the bus lost are read again through `stored` (the node's
/// stored-push reader). v2 streams are kept within `limits`.
pub fn build(
    settings: &Settings,
    redis: Option<&RedisTarget>,
    node: Arc<str>,
    address: SocketAddr,
    limits: ResumeLimits,
    stored: StoredPushDelivery,
) -> anyhow::Result<ClusterParts> {
    let started_at = pam_actors::iso_now();
    // A shared idempotency claim stays "running" at most as long as a turn can run.
    let running_for = settings.connection_settings().turn_lifetime();
    let local_keys = IdempotencyKeys::new(IDEMPOTENCY_TTL, IDEMPOTENCY_CAPACITY, IDEMPOTENCY_KEYS_PER_USER);
    let cap = settings.max_connections_per_user;
    let Some(target) = redis else {
        // Said once, with the cache's part, by app.rs.
        tracing::debug!(node = &*node, "cluster parts in process (no REDIS_URL)");
        let slots = UserSlots::new(cap);
        let push: Arc<dyn PushBus> = Arc::new(LocalPushBus::new(slots.clone()));
        return Ok(ClusterParts {
            view: ClusterView { node, started_at, address, redis: None, slots, push },
            rate_limiter: ChatRateLimit::new(settings.rate_limit_per_minute, None),
            idempotency: RestIdempotency::new(local_keys, None, running_for),
            resume: Arc::new(ResumeBuffer::new(limits)),
            background: Vec::new(),
        });
    };
    let redis = Arc::new(RedisShared::connect(target, &settings.cache_prefix, &node, settings.node_ttl())?);
    let slots = UserSlots::with_shared(cap, redis.clone() as Arc<dyn SharedPresence>);
    let (streams, writer) = RedisStreamStore::start(redis.clone(), limits);
    let resume = Arc::new(ResumeBuffer::with_store(limits, Some(streams.clone() as Arc<dyn StreamStore>)));
    let (catch_up, catching_up) = CatchUp::start(slots.clone(), stored);
    let (push, listener) = RedisPushBus::start(target, redis.clone(), slots.clone(), resume.clone(), catch_up.clone())?;
    let heartbeat = spawn_heartbeat(redis.clone(), slots.clone(), address.to_string(), catch_up);
    // Whether they are shared right now (Redis answers) is said once, by app.rs after its probe.
    tracing::debug!(node = &*node, ttl_ms = settings.node_ttl_ms, "cluster parts on Redis (REDIS_URL)");
    Ok(ClusterParts {
        view: ClusterView { node, started_at, address, redis: Some(redis.clone()), slots, push },
        rate_limiter: ChatRateLimit::new(settings.rate_limit_per_minute, Some(redis.clone() as Arc<dyn SharedRateLimit>)),
        idempotency: RestIdempotency::new(local_keys, Some(redis as Arc<dyn SharedIdempotency>), running_for),
        resume,
        background: vec![heartbeat, listener, catching_up, writer],
    })
}
