//! `ContextLoaderActor`: one per context kind per node. Serves `load(user)` from an in-process
//! L1 (moka, short TTL), else the shared `ContextCache` (Redis), else the `ContextStore`.
//! Concurrent loads of one user share one fetch (single-flight), and `handle` never awaits I/O:
//! the fetch runs in a task that reports back, so a slow user never delays a cached one.
//!
//! Invalidation never loses to a fetch that was already running: that fetch's result is served to
//! the loads that were waiting for it but kept out of L1, and its fill of the shared cache is
//! refused (see `ContextCache`); while the shared cache is still evicting a user, that user's
//! fetches skip it (its copy is the one being dropped). `InvalidateAll` does the same for everyone,
//! for when changes may have gone unnoticed.
//! Imports the context ports only; `ContextLoaders` (the handle) is in `loaders.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pam_protocol::UserId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::metrics_names::{CACHE_REQUESTS_TOTAL, CONTEXT_LOAD_SECONDS};
use crate::ports::{CacheLookup, ContextCache, ContextKind, ContextStore, StoreError};

mod loaders;
#[cfg(test)]
mod tests;

pub use loaders::ContextLoaders;

/// Serves one context kind for every user of this node (stateless: see `ContextLoaderState`).
pub struct ContextLoaderActor;

/// What a context loader starts with.
pub struct ContextLoaderArgs {
    /// The context it loads.
    pub kind: ContextKind,
    /// The database, read on a miss.
    pub store: Arc<dyn ContextStore>,
    /// Redis between L1 and the database; `None` = L1 only.
    pub cache: Option<Arc<dyn ContextCache>>,
    /// How long an L1 entry lives (`PAM_PROFILE_TTL_S` etc., capped by the L1 maximum).
    pub l1_ttl: Duration,
    /// Users kept in L1.
    pub l1_capacity: u64,
}

/// What a load answers: the context as JSON, shared.
pub(crate) type ContextReply = Result<Arc<Value>, StoreError>;

/// What a context loader is asked.
pub enum ContextLoaderMsg {
    /// Loads a user's context; the reply is shared with concurrent loads of the same user. The
    /// span is the caller's `context_load` span (`Span::none()` untraced): the loader records on
    /// it how the load was served.
    Load(UserId, Span, RpcReplyPort<ContextReply>),
    /// A fetch task finished.
    Fetched {
        /// Whose context it fetched.
        user: UserId,
        /// The context as JSON, or why it could not be read.
        result: Result<Value, StoreError>,
        /// `redis` or `database`.
        source: &'static str,
        /// When the first load waiting for it arrived.
        started: Instant,
    },
    /// The user's data changed: drop the cached copy (and any fetch already running).
    Invalidate(UserId),
    /// Changes may have gone unnoticed (the invalidation listener reconnected): `Invalidate` for
    /// every user.
    InvalidateAll,
    /// An eviction from the shared cache ended: one user's, or every user's (`None`).
    Evicted(Option<UserId>),
}

pub struct ContextLoaderState {
    args: ContextLoaderArgs,
    l1: moka::sync::Cache<UserId, Arc<Value>>,
    /// Loads waiting for a fetch, each with its span.
    waiting: HashMap<UserId, Vec<(RpcReplyPort<ContextReply>, Span)>>,
    /// Users invalidated while their fetch was running: that result is served but not cached.
    stale: HashSet<UserId>,
    /// Shared-cache evictions still running, per user (each ends within the cache's timeout);
    /// meanwhile that user's fetches skip the shared cache.
    evicting: HashMap<UserId, usize>,
    /// `evict_all`s still running; meanwhile every fetch skips the shared cache.
    evicting_all: usize,
}

impl Actor for ContextLoaderActor {
    type Msg = ContextLoaderMsg;
    type State = ContextLoaderState;
    type Arguments = ContextLoaderArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: ContextLoaderArgs) -> Result<Self::State, ActorProcessingErr> {
        let l1 = moka::sync::Cache::builder().max_capacity(args.l1_capacity).time_to_live(args.l1_ttl).build();
        Ok(ContextLoaderState { args, l1, waiting: HashMap::new(), stale: HashSet::new(), evicting: HashMap::new(), evicting_all: 0 })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match message {
            ContextLoaderMsg::Load(user, span, reply) => state.load(&myself, user, span, reply),
            ContextLoaderMsg::Fetched { user, result, source, started } => state.fetched(user, result, source, started),
            ContextLoaderMsg::Invalidate(user) => state.invalidate(&myself, user),
            ContextLoaderMsg::InvalidateAll => state.invalidate_all(&myself),
            ContextLoaderMsg::Evicted(user) => state.evicted(user),
        }
        Ok(())
    }
}

impl ContextLoaderState {
    fn kind(&self) -> &'static str {
        self.args.kind.as_str()
    }

    fn load(&mut self, myself: &ActorRef<ContextLoaderMsg>, user: UserId, span: Span, reply: RpcReplyPort<ContextReply>) {
        let started = Instant::now();
        if let Some(cached) = self.l1.get(&user) {
            metrics::counter!(CACHE_REQUESTS_TOTAL, "kind" => self.kind(), "result" => "hit").increment(1);
            metrics::histogram!(CONTEXT_LOAD_SECONDS, "kind" => self.kind(), "source" => "l1").record(started.elapsed().as_secs_f64());
            tracing::debug!(kind = self.kind(), cache = "hit", source = "l1", elapsed_ms = 0, "context load");
            span.record("cache", "hit").record("source", "l1").record("outcome", "ok");
            let _ = reply.send(Ok(cached));
            return;
        }
        let waiters = self.waiting.entry(user.clone()).or_default();
        // The fetch is traced under the load that started it; the loads that join it share it.
        let fetch_span = span.clone();
        waiters.push((reply, span));
        if waiters.len() > 1 {
            return; // a fetch for this user is already running
        }
        let store = self.args.store.clone();
        let skip_cache = self.evicting_all > 0 || self.evicting.contains_key(&user);
        let cache = self.args.cache.clone().filter(|_| !skip_cache);
        let kind = self.args.kind;
        let report = FetchReport { myself: myself.clone(), user: Some(user.clone()), started };
        tokio::spawn(
            async move {
                let (result, source) = fetch_through(cache.as_deref(), store.as_ref(), kind, &user).await;
                report.send(result, source);
            }
            .instrument(fetch_span),
        );
    }

    fn fetched(&mut self, user: UserId, result: Result<Value, StoreError>, source: &'static str, started: Instant) {
        let elapsed = started.elapsed();
        let outcome = if source == "redis" { "hit" } else { "miss" };
        metrics::histogram!(CONTEXT_LOAD_SECONDS, "kind" => self.kind(), "source" => source).record(elapsed.as_secs_f64());
        tracing::debug!(
            kind = self.kind(),
            cache = outcome,
            source,
            elapsed_ms = elapsed.as_millis() as u64,
            ok = result.is_ok(),
            "context load"
        );
        let was_invalidated = self.stale.remove(&user);
        let reply: ContextReply = result.map(Arc::new);
        if let (Ok(value), false) = (&reply, was_invalidated) {
            self.l1.insert(user.clone(), value.clone());
        }
        let waiters = self.waiting.remove(&user).unwrap_or_default();
        metrics::counter!(CACHE_REQUESTS_TOTAL, "kind" => self.kind(), "result" => outcome).increment(waiters.len() as u64);
        for (waiter, span) in waiters {
            span.record("cache", outcome).record("source", source).record("outcome", if reply.is_ok() { "ok" } else { "error" });
            let _ = waiter.send(reply.clone());
        }
    }

    fn invalidate(&mut self, myself: &ActorRef<ContextLoaderMsg>, user: UserId) {
        self.l1.invalidate(&user);
        if let Some(cache) = self.args.cache.clone() {
            *self.evicting.entry(user.clone()).or_default() += 1;
            let (kind, done, user) = (self.args.kind, EvictReport(myself.clone(), Some(user.clone())), user.clone());
            tokio::spawn(async move {
                cache.evict(kind, &user).await;
                drop(done);
            });
        }
        if self.waiting.contains_key(&user) {
            self.stale.insert(user);
        }
    }

    fn invalidate_all(&mut self, myself: &ActorRef<ContextLoaderMsg>) {
        self.l1.invalidate_all();
        self.stale.extend(self.waiting.keys().cloned());
        if let Some(cache) = self.args.cache.clone() {
            self.evicting_all += 1;
            let (kind, done) = (self.args.kind, EvictReport(myself.clone(), None));
            tokio::spawn(async move {
                cache.evict_all(kind).await;
                drop(done);
            });
        }
        tracing::info!(kind = self.kind(), "evicted every cached context of this kind");
    }

    fn evicted(&mut self, user: Option<UserId>) {
        match user {
            None => self.evicting_all = self.evicting_all.saturating_sub(1),
            Some(user) => {
                if let Some(running) = self.evicting.get_mut(&user) {
                    *running -= 1;
                    if *running == 0 {
                        self.evicting.remove(&user);
                    }
                }
            }
        }
    }
}

/// Reports a fetch's end to its loader, also when the task ends without an answer (a panic, a
/// runtime shutting down), so the loads waiting for it are never left hanging.
struct FetchReport {
    myself: ActorRef<ContextLoaderMsg>,
    /// Taken when the answer is sent.
    user: Option<UserId>,
    started: Instant,
}

impl FetchReport {
    fn send(mut self, result: Result<Value, StoreError>, source: &'static str) {
        if let Some(user) = self.user.take() {
            let _ = self.myself.cast(ContextLoaderMsg::Fetched { user, result, source, started: self.started });
        }
    }
}

impl Drop for FetchReport {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let result = Err(StoreError::Unavailable("the context fetch ended without an answer".into()));
            let _ = self.myself.cast(ContextLoaderMsg::Fetched { user, result, source: "database", started: self.started });
        }
    }
}

/// Tells the loader an eviction ended when dropped, however the eviction task ends.
struct EvictReport(ActorRef<ContextLoaderMsg>, Option<UserId>);

impl Drop for EvictReport {
    fn drop(&mut self) {
        let _ = self.0.cast(ContextLoaderMsg::Evicted(self.1.take()));
    }
}

/// The shared cache (looked up before the store is read, so an invalidation after that read
/// refuses the fill), else the store; `redis` or `database` says which answered.
async fn fetch_through(
    cache: Option<&dyn ContextCache>,
    store: &dyn ContextStore,
    kind: ContextKind,
    user: &UserId,
) -> (Result<Value, StoreError>, &'static str) {
    let token = match cache {
        Some(cache) => match cache.get(kind, user).await {
            CacheLookup::Hit(value) => return (Ok(value), "redis"),
            CacheLookup::Miss(token) => token,
        },
        None => None,
    };
    let result = fetch(store, kind, user).await;
    if let (Some(cache), Some(token), Ok(value)) = (cache, &token, &result) {
        cache.fill(kind, user, value, token).await;
    }
    (result, "database")
}

async fn fetch(store: &dyn ContextStore, kind: ContextKind, user: &UserId) -> Result<Value, StoreError> {
    let encode = |v: Result<Value, serde_json::Error>| v.map_err(|e| StoreError::Unavailable(format!("encoding context: {e}")));
    match kind {
        ContextKind::Profile => encode(serde_json::to_value(store.load_profile(user).await?)),
        ContextKind::Financial => encode(serde_json::to_value(store.load_financial(user).await?)),
        ContextKind::Social => encode(serde_json::to_value(store.load_social(user).await?)),
    }
}
