//! `ContextLoaderActor`: one per context kind per node. Serves `load(user)` from an in-process
//! L1 (moka, short TTL), else the shared `ContextCache` (Redis), else the `ContextStore`. Concurrent loads of one user share one
//! fetch (single-flight), and `handle` never awaits I/O: the fetch runs in a task that reports
//! back, so a slow user never delays a cached one.
//!
//! Invalidation never loses to a fetch that was already running: that fetch's result is served to
//! the loads that were waiting for it but kept out of L1, and its fill of the shared cache is
//! refused (see `ContextCache`); while the shared cache is still evicting a user, that user's
//! fetches skip it (its copy is the one being dropped). `InvalidateAll` does the same for everyone,
//! for when changes may have gone unnoticed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pam_protocol::UserId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use tokio::time::Instant;

pub use crate::metrics_names::{CACHE_REQUESTS_TOTAL, CONTEXT_LOAD_SECONDS};
use crate::ports::{CacheLookup, ContextCache, ContextKind, ContextStore, StoreError};

pub struct ContextLoaderActor;

pub struct ContextLoaderArgs {
    pub kind: ContextKind,
    pub store: Arc<dyn ContextStore>,
    /// Redis between L1 and the database; `None` = L1 only.
    pub cache: Option<Arc<dyn ContextCache>>,
    /// How long an L1 entry lives (`PAM_PROFILE_TTL_S` etc., capped by the L1 maximum).
    pub l1_ttl: Duration,
    pub l1_capacity: u64,
}

/// What a load answers: the context as JSON, shared.
pub type ContextReply = Result<Arc<Value>, StoreError>;

pub enum ContextLoaderMsg {
    Load(UserId, RpcReplyPort<ContextReply>),
    /// A fetch task finished.
    Fetched {
        user: UserId,
        result: Result<Value, StoreError>,
        /// `redis` or `database`.
        source: &'static str,
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
    waiting: HashMap<UserId, Vec<RpcReplyPort<ContextReply>>>,
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
            ContextLoaderMsg::Load(user, reply) => state.load(&myself, user, reply),
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

    fn load(&mut self, myself: &ActorRef<ContextLoaderMsg>, user: UserId, reply: RpcReplyPort<ContextReply>) {
        let started = Instant::now();
        if let Some(cached) = self.l1.get(&user) {
            metrics::counter!(CACHE_REQUESTS_TOTAL, "kind" => self.kind(), "result" => "hit").increment(1);
            metrics::histogram!(CONTEXT_LOAD_SECONDS, "kind" => self.kind(), "source" => "l1").record(started.elapsed().as_secs_f64());
            tracing::debug!(kind = self.kind(), cache = "hit", source = "l1", elapsed_ms = 0, "context load");
            let _ = reply.send(Ok(cached));
            return;
        }
        let waiters = self.waiting.entry(user.clone()).or_default();
        waiters.push(reply);
        if waiters.len() > 1 {
            return; // a fetch for this user is already running
        }
        let store = self.args.store.clone();
        let skip_cache = self.evicting_all > 0 || self.evicting.contains_key(&user);
        let cache = self.args.cache.clone().filter(|_| !skip_cache);
        let kind = self.args.kind;
        let report = FetchReport { myself: myself.clone(), user: Some(user.clone()), started };
        tokio::spawn(async move {
            let (result, source) = fetch_through(cache.as_deref(), store.as_ref(), kind, &user).await;
            report.send(result, source);
        });
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
        for waiter in waiters {
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

/// The three loaders, as the orchestrator uses them.
#[derive(Clone)]
pub struct ContextLoaders {
    pub profile: ActorRef<ContextLoaderMsg>,
    pub financial: ActorRef<ContextLoaderMsg>,
    pub social: ActorRef<ContextLoaderMsg>,
    /// How long a chat waits for context before answering without it.
    pub timeout: Duration,
}

impl ContextLoaders {
    /// Loads all three in parallel into `{"profile","financial","social"}`; a part that fails or
    /// times out is left out and `context_degraded` says why.
    pub async fn load_all(&self, user: &UserId) -> serde_json::Map<String, Value> {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let call = |loader: &ActorRef<ContextLoaderMsg>| {
            let user = user.clone();
            let loader = loader.clone();
            async move { ractor::call_t!(loader, ContextLoaderMsg::Load, ms, user) }
        };
        let (profile, financial, social) = tokio::join!(call(&self.profile), call(&self.financial), call(&self.social));
        let mut context = serde_json::Map::new();
        let mut problems = Vec::new();
        for (kind, result) in [("profile", profile), ("financial", financial), ("social", social)] {
            match result {
                Ok(Ok(value)) => {
                    context.insert(kind.into(), (*value).clone());
                }
                Ok(Err(error)) => problems.push(format!("{kind}: {error}")),
                Err(error) => problems.push(format!("{kind}: {error}")),
            }
        }
        if !problems.is_empty() {
            tracing::warn!(problems = ?problems, "answering with partial context");
            context.insert("context_degraded".into(), Value::String(problems.join("; ")));
        }
        context
    }

    pub fn invalidate(&self, user: &UserId) {
        for loader in [&self.profile, &self.financial, &self.social] {
            let _ = loader.cast(ContextLoaderMsg::Invalidate(user.clone()));
        }
    }

    /// Drops every user's cached context of every kind (L1 and the shared cache), for when
    /// changes may have been missed.
    pub fn invalidate_all(&self) {
        for loader in [&self.profile, &self.financial, &self.social] {
            let _ = loader.cast(ContextLoaderMsg::InvalidateAll);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ports::BoxFuture;
    use crate::ports::{FillToken, FinancialContext, ProfileContext, SocialContext};

    /// Counts fetches; the "slow" user takes a second.
    struct CountingStore {
        fetches: AtomicUsize,
    }

    const SLOW: &str = "99999999-9999-4999-8999-999999999999";

    impl ContextStore for CountingStore {
        fn load_profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<ProfileContext>, StoreError>> {
            Box::pin(async move {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                let delay = if user.as_str() == SLOW { 1000 } else { 50 };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Ok(Some(ProfileContext { full_name: Some(user.to_string()), ..Default::default() }))
            })
        }
        fn load_financial<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<FinancialContext, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("down".into())) })
        }
        fn load_social<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<SocialContext, StoreError>> {
            Box::pin(async { Ok(SocialContext::default()) })
        }
    }

    async fn profile_loader() -> (ActorRef<ContextLoaderMsg>, Arc<CountingStore>) {
        let store = Arc::new(CountingStore { fetches: AtomicUsize::new(0) });
        let args = ContextLoaderArgs {
            kind: ContextKind::Profile,
            store: store.clone(),
            cache: None,
            l1_ttl: Duration::from_secs(60),
            l1_capacity: 100,
        };
        let (actor, _) = Actor::spawn(None, ContextLoaderActor, args).await.unwrap();
        (actor, store)
    }

    fn user(n: u32) -> UserId {
        UserId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_loads_of_one_user_share_one_fetch() {
        let (loader, store) = profile_loader().await;
        let loads = (0..50).map(|_| {
            let loader = loader.clone();
            tokio::spawn(async move { ractor::call!(loader, ContextLoaderMsg::Load, user(1)).unwrap().unwrap() })
        });
        for load in loads {
            assert_eq!(load.await.unwrap()["full_name"], user(1).as_str());
        }
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1);
        ractor::call!(loader, ContextLoaderMsg::Load, user(1)).unwrap().unwrap();
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1, "the next load is an L1 hit");
        loader.cast(ContextLoaderMsg::Invalidate(user(1))).unwrap();
        ractor::call!(loader, ContextLoaderMsg::Load, user(1)).unwrap().unwrap();
        assert_eq!(store.fetches.load(Ordering::SeqCst), 2, "invalidation forces a fetch");
    }

    // Paused time: the clock only jumps when every task waits, so the 500 ms deadline can only
    // pass if the actor is stuck behind the 1 s fetch.
    #[tokio::test(start_paused = true)]
    async fn a_slow_fetch_does_not_delay_a_cached_load() {
        let (loader, _store) = profile_loader().await;
        ractor::call!(loader, ContextLoaderMsg::Load, user(2)).unwrap().unwrap();
        let slow_loader = loader.clone();
        let slow = tokio::spawn(async move { ractor::call!(slow_loader, ContextLoaderMsg::Load, UserId::parse(SLOW).unwrap()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cached = ractor::call_t!(loader, ContextLoaderMsg::Load, 500, user(2));
        assert!(cached.is_ok(), "the cached load waited for the slow fetch");
        assert!(!slow.is_finished());
        slow.await.unwrap().unwrap().unwrap();
    }

    /// A profile store whose answer is `v{version}`, read when the fetch starts; with a gate, each
    /// fetch then waits for a permit before it answers (a read held in flight).
    struct VersionedStore {
        version: AtomicUsize,
        reads: AtomicUsize,
        gate: Option<tokio::sync::Semaphore>,
    }

    impl VersionedStore {
        fn new(gated: bool) -> Arc<Self> {
            Arc::new(VersionedStore {
                version: AtomicUsize::new(1),
                reads: AtomicUsize::new(0),
                gate: gated.then(|| tokio::sync::Semaphore::new(0)),
            })
        }
    }

    impl ContextStore for VersionedStore {
        fn load_profile<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<Option<ProfileContext>, StoreError>> {
            Box::pin(async move {
                let seen = self.version.load(Ordering::SeqCst);
                self.reads.fetch_add(1, Ordering::SeqCst);
                if let Some(gate) = &self.gate {
                    gate.acquire().await.unwrap().forget();
                }
                Ok(Some(ProfileContext { full_name: Some(format!("v{seen}")), ..Default::default() }))
            })
        }
        fn load_financial<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<FinancialContext, StoreError>> {
            Box::pin(async { Ok(FinancialContext::default()) })
        }
        fn load_social<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<SocialContext, StoreError>> {
            Box::pin(async { Ok(SocialContext::default()) })
        }
    }

    /// An in-memory shared cache with the real one's fill rule (a generation per key, bumped by
    /// every eviction); evictions wait for a permit from `evict_gate` when it is set.
    #[derive(Default)]
    struct MemoryCache {
        values: std::sync::Mutex<HashMap<UserId, Value>>,
        generations: std::sync::Mutex<HashMap<UserId, u64>>,
        evict_gate: Option<tokio::sync::Semaphore>,
    }

    impl ContextCache for MemoryCache {
        fn get<'a>(&'a self, _kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, CacheLookup> {
            Box::pin(async move {
                match self.values.lock().unwrap().get(user) {
                    Some(value) => CacheLookup::Hit(value.clone()),
                    None => {
                        let generation = self.generations.lock().unwrap().get(user).copied().unwrap_or(0);
                        CacheLookup::Miss(Some(FillToken(generation.to_string())))
                    }
                }
            })
        }
        fn fill<'a>(&'a self, _kind: ContextKind, user: &'a UserId, value: &'a Value, token: &'a FillToken) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                let generation = self.generations.lock().unwrap().get(user).copied().unwrap_or(0);
                if token.0 == generation.to_string() {
                    self.values.lock().unwrap().insert(user.clone(), value.clone());
                }
            })
        }
        fn evict<'a>(&'a self, _kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                if let Some(gate) = &self.evict_gate {
                    gate.acquire().await.unwrap().forget();
                }
                *self.generations.lock().unwrap().entry(user.clone()).or_default() += 1;
                self.values.lock().unwrap().remove(user);
            })
        }
        fn evict_all(&self, _kind: ContextKind) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                let users: Vec<UserId> = self.values.lock().unwrap().keys().cloned().collect();
                for user in users {
                    self.evict(ContextKind::Profile, &user).await;
                }
            })
        }
    }

    async fn loader_with(store: Arc<VersionedStore>, cache: Option<Arc<MemoryCache>>) -> ActorRef<ContextLoaderMsg> {
        let cache = cache.map(|c| c as Arc<dyn ContextCache>);
        let args = ContextLoaderArgs { kind: ContextKind::Profile, store, cache, l1_ttl: Duration::from_secs(60), l1_capacity: 100 };
        Actor::spawn(None, ContextLoaderActor, args).await.unwrap().0
    }

    async fn name(loader: &ActorRef<ContextLoaderMsg>, user: UserId) -> String {
        let value = ractor::call!(loader, ContextLoaderMsg::Load, user).unwrap().unwrap();
        value["full_name"].as_str().unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fetch_running_across_an_invalidation_fills_neither_l1_nor_the_shared_cache() {
        let store = VersionedStore::new(true);
        let cache = Arc::new(MemoryCache::default());
        let loader = loader_with(store.clone(), Some(cache.clone())).await;
        let in_flight = tokio::spawn({
            let loader = loader.clone();
            async move { name(&loader, user(4)).await }
        });
        while store.reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The fetch read v1 and is held; the data changes and the change is evicted meanwhile.
        store.version.store(2, Ordering::SeqCst);
        loader.cast(ContextLoaderMsg::Invalidate(user(4))).unwrap();
        while cache.generations.lock().unwrap().get(&user(4)).is_none() {
            tokio::task::yield_now().await;
        }
        store.gate.as_ref().unwrap().add_permits(1);
        assert_eq!(in_flight.await.unwrap(), "v1", "the loads that were waiting get the answer they asked for");
        assert!(cache.values.lock().unwrap().get(&user(4)).is_none(), "the stale answer is not in the shared cache");
        store.gate.as_ref().unwrap().add_permits(1);
        assert_eq!(name(&loader, user(4)).await, "v2", "nor in L1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_while_the_shared_cache_is_still_evicting_does_not_read_the_evicted_copy() {
        let store = VersionedStore::new(false);
        let cache = Arc::new(MemoryCache { evict_gate: Some(tokio::sync::Semaphore::new(0)), ..Default::default() });
        let loader = loader_with(store.clone(), Some(cache.clone())).await;
        assert_eq!(name(&loader, user(5)).await, "v1");
        assert!(cache.values.lock().unwrap().contains_key(&user(5)), "filled");
        store.version.store(2, Ordering::SeqCst);
        loader.cast(ContextLoaderMsg::Invalidate(user(5))).unwrap();
        // The eviction is held: the shared cache still holds v1.
        assert_eq!(name(&loader, user(5)).await, "v2");
        cache.evict_gate.as_ref().unwrap().add_permits(1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalidate_all_drops_every_users_context_from_l1_and_the_shared_cache() {
        let store = VersionedStore::new(false);
        let cache = Arc::new(MemoryCache::default());
        let loader = loader_with(store.clone(), Some(cache.clone())).await;
        assert_eq!((name(&loader, user(6)).await, name(&loader, user(7)).await), ("v1".into(), "v1".into()));
        store.version.store(2, Ordering::SeqCst);
        loader.cast(ContextLoaderMsg::InvalidateAll).unwrap();
        assert_eq!((name(&loader, user(6)).await, name(&loader, user(7)).await), ("v2".into(), "v2".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_all_reports_a_failed_part_as_degraded() {
        let store: Arc<dyn ContextStore> = Arc::new(CountingStore { fetches: AtomicUsize::new(0) });
        let spawn = |kind| {
            let args = ContextLoaderArgs { kind, store: store.clone(), cache: None, l1_ttl: Duration::from_secs(60), l1_capacity: 10 };
            Actor::spawn(None, ContextLoaderActor, args)
        };
        let loaders = ContextLoaders {
            profile: spawn(ContextKind::Profile).await.unwrap().0,
            financial: spawn(ContextKind::Financial).await.unwrap().0,
            social: spawn(ContextKind::Social).await.unwrap().0,
            timeout: Duration::from_secs(5),
        };
        let context = loaders.load_all(&user(3)).await;
        assert!(context.contains_key("profile") && context.contains_key("social"));
        assert!(!context.contains_key("financial"));
        assert!(context["context_degraded"].as_str().unwrap().contains("financial"));
    }
}
