//! Unit tests of the context loaders: single-flight, a slow fetch beside a cached load,
//! invalidation racing a fetch, and `load_all`'s degraded parts.

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
        tokio::spawn(async move { ractor::call!(loader, ContextLoaderMsg::Load, user(1), tracing::Span::none()).unwrap().unwrap() })
    });
    for load in loads {
        assert_eq!(load.await.unwrap()["full_name"], user(1).as_str());
    }
    assert_eq!(store.fetches.load(Ordering::SeqCst), 1);
    ractor::call!(loader, ContextLoaderMsg::Load, user(1), tracing::Span::none()).unwrap().unwrap();
    assert_eq!(store.fetches.load(Ordering::SeqCst), 1, "the next load is an L1 hit");
    loader.cast(ContextLoaderMsg::Invalidate(user(1))).unwrap();
    ractor::call!(loader, ContextLoaderMsg::Load, user(1), tracing::Span::none()).unwrap().unwrap();
    assert_eq!(store.fetches.load(Ordering::SeqCst), 2, "invalidation forces a fetch");
}

// Paused time: the clock only jumps when every task waits, so the 500 ms deadline can only
// pass if the actor is stuck behind the 1 s fetch.
#[tokio::test(start_paused = true)]
async fn a_slow_fetch_does_not_delay_a_cached_load() {
    let (loader, _store) = profile_loader().await;
    ractor::call!(loader, ContextLoaderMsg::Load, user(2), tracing::Span::none()).unwrap().unwrap();
    let slow_loader = loader.clone();
    let slow =
        tokio::spawn(
            async move { ractor::call!(slow_loader, ContextLoaderMsg::Load, UserId::parse(SLOW).unwrap(), tracing::Span::none()) },
        );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cached = ractor::call_t!(loader, ContextLoaderMsg::Load, 500, user(2), tracing::Span::none());
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
    let value = ractor::call!(loader, ContextLoaderMsg::Load, user, tracing::Span::none()).unwrap().unwrap();
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
