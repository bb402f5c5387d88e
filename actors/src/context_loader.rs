//! `ContextLoaderActor`: one per context kind per node. Serves `load(user)` from an in-process
//! L1 (moka, short TTL), else the shared `ContextCache` (Redis), else the `ContextStore`. Concurrent loads of one user share one
//! fetch (single-flight), and `handle` never awaits I/O: the fetch runs in a task that reports
//! back, so a slow user never delays a cached one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pam_protocol::UserId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use tokio::time::Instant;

use crate::context::{ContextCache, ContextKind, ContextStore};
use crate::ports::StoreError;

pub const CACHE_REQUESTS_TOTAL: &str = "pam_cache_requests_total";
pub const CONTEXT_LOAD_SECONDS: &str = "pam_context_load_seconds";

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
}

pub struct ContextLoaderState {
    args: ContextLoaderArgs,
    l1: moka::sync::Cache<UserId, Arc<Value>>,
    waiting: HashMap<UserId, Vec<RpcReplyPort<ContextReply>>>,
    /// Users invalidated while their fetch was running: that result is served but not cached.
    stale: HashSet<UserId>,
}

impl Actor for ContextLoaderActor {
    type Msg = ContextLoaderMsg;
    type State = ContextLoaderState;
    type Arguments = ContextLoaderArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: ContextLoaderArgs) -> Result<Self::State, ActorProcessingErr> {
        let l1 = moka::sync::Cache::builder().max_capacity(args.l1_capacity).time_to_live(args.l1_ttl).build();
        Ok(ContextLoaderState { args, l1, waiting: HashMap::new(), stale: HashSet::new() })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match message {
            ContextLoaderMsg::Load(user, reply) => state.load(&myself, user, reply),
            ContextLoaderMsg::Fetched { user, result, source, started } => state.fetched(user, result, source, started),
            ContextLoaderMsg::Invalidate(user) => state.invalidate(user),
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
        let cache = self.args.cache.clone();
        let kind = self.args.kind;
        let myself = myself.clone();
        tokio::spawn(async move {
            let (result, source) = match cache.as_ref() {
                Some(cache) => match cache.get(kind, &user).await {
                    Some(value) => (Ok(value), "redis"),
                    None => {
                        let result = fetch(store.as_ref(), kind, &user).await;
                        if let Ok(value) = &result {
                            cache.put(kind, &user, value).await;
                        }
                        (result, "database")
                    }
                },
                None => (fetch(store.as_ref(), kind, &user).await, "database"),
            };
            let _ = myself.cast(ContextLoaderMsg::Fetched { user, result, source, started });
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

    fn invalidate(&mut self, user: UserId) {
        self.l1.invalidate(&user);
        if let Some(cache) = self.args.cache.clone() {
            let (kind, user) = (self.args.kind, user.clone());
            tokio::spawn(async move { cache.evict(kind, &user).await });
        }
        if self.waiting.contains_key(&user) {
            self.stale.insert(user);
        }
    }
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::context::{FinancialContext, ProfileContext, SocialContext};
    use crate::ports::BoxFuture;

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
