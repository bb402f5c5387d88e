//! Cached context never outlives a change it could have missed: a fetch that read the database
//! before an invalidation does not write its stale answer into Redis (or L1), and an invalidation
//! listener that lost its connection evicts everything once it listens again (real Redis, real
//! Postgres).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::cluster::Cluster;
use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::*;
use fred::prelude::{ClientLike, KeysInterface};
use pam_actors::{
    BoxFuture, CacheLookup, ContextCache, ContextKind, ContextStore, FillToken, FinancialContext, ProfileContext, SocialContext, StoreError,
};
use pam_actors::{ContextLoaderActor, ContextLoaderArgs, ContextLoaderMsg};
use pam_gateway::context::redis_cache::RedisCache;
use pam_protocol::UserId;
use ractor::{Actor, ActorRef};
use serde_json::{Value, json};

/// Deletes every key under `prefix`.
async fn clean(redis: &fred::prelude::Client, prefix: &str) {
    let keys: Vec<String> = ["profile", "financial", "social"]
        .iter()
        .flat_map(|kind| [format!("{prefix}:{kind}:"), format!("{prefix}:gen:{kind}:"), format!("{prefix}:epoch:{kind}")])
        .collect();
    for pattern in keys {
        let (_, found): (String, Vec<String>) = redis
            .custom(fred::cmd!("SCAN"), vec!["0".to_string(), "MATCH".into(), format!("{pattern}*"), "COUNT".into(), "10000".into()])
            .await
            .unwrap();
        if !found.is_empty() {
            let _: i64 = redis.del(found).await.unwrap();
        }
    }
}

/// A profile store answering `v{version}` as read when the fetch starts; each fetch then waits at
/// `gate` (a database read held in flight).
struct GatedStore {
    version: AtomicUsize,
    reads: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

impl ContextStore for GatedStore {
    fn load_profile<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<Option<ProfileContext>, StoreError>> {
        Box::pin(async move {
            let seen = self.version.load(Ordering::SeqCst);
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
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

/// The real Redis cache, saying when an eviction has reached Redis.
struct Observed {
    redis: RedisCache,
    evicted: tokio::sync::Notify,
}

impl ContextCache for Observed {
    fn get<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, CacheLookup> {
        self.redis.get(kind, user)
    }
    fn fill<'a>(&'a self, kind: ContextKind, user: &'a UserId, value: &'a Value, token: &'a FillToken) -> BoxFuture<'a, ()> {
        self.redis.fill(kind, user, value, token)
    }
    fn evict<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.redis.evict(kind, user).await;
            self.evicted.notify_one();
        })
    }
    fn evict_all(&self, kind: ContextKind) -> BoxFuture<'_, ()> {
        self.redis.evict_all(kind)
    }
}

async fn name(loader: &ActorRef<ContextLoaderMsg>, user: &UserId) -> String {
    let value = ractor::call!(loader, ContextLoaderMsg::Load, user.clone(), tracing::Span::none()).unwrap().unwrap();
    value["full_name"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_started_before_an_invalidation_never_writes_its_stale_answer_into_redis() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let cache =
        Arc::new(Observed { redis: RedisCache::connect(&redis_url(), &prefix, [600, 300, 300]).unwrap(), evicted: Default::default() });
    let probe = UserId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    wait_until("the cache reaches Redis", || async { matches!(cache.get(ContextKind::Profile, &probe).await, CacheLookup::Miss(Some(_))) })
        .await;
    let store = Arc::new(GatedStore { version: AtomicUsize::new(1), reads: AtomicUsize::new(0), gate: tokio::sync::Semaphore::new(0) });
    let args = ContextLoaderArgs {
        kind: ContextKind::Profile,
        store: store.clone(),
        cache: Some(cache.clone()),
        l1_ttl: Duration::from_secs(60),
        l1_capacity: 100,
    };
    let (loader, _) = Actor::spawn(None, ContextLoaderActor, args).await.unwrap();
    let user = UserId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let key = format!("{prefix}:profile:{user}");

    let in_flight = tokio::spawn({
        let (loader, user) = (loader.clone(), user.clone());
        async move { name(&loader, &user).await }
    });
    wait_until("the fetch has read the database", || async { store.reads.load(Ordering::SeqCst) == 1 }).await;
    // The data changes and its invalidation reaches Redis while that read is still in flight.
    store.version.store(2, Ordering::SeqCst);
    loader.cast(ContextLoaderMsg::Invalidate(user.clone())).unwrap();
    tokio::time::timeout(WAIT, cache.evicted.notified()).await.expect("the eviction reaches Redis");
    store.gate.add_permits(1);
    assert_eq!(in_flight.await.unwrap(), "v1", "the load that was waiting gets the answer it asked for");
    let cached: Option<String> = redis.get(&key).await.unwrap();
    assert_eq!(cached, None, "the stale answer is not written into Redis");

    // Why a fixed pause: the loader learns the eviction ended by a message its task sends right
    // after the notification above; a load it reads before that message skips the shared cache
    // (on purpose: no fill while an eviction runs), and nothing outside the actor shows it arrived.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.gate.add_permits(1);
    assert_eq!(name(&loader, &user).await, "v2", "the next load reads the database again");
    let cached: Option<String> = redis.get(&key).await.unwrap();
    assert_eq!(
        cached.map(|c| serde_json::from_str::<Value>(&c).unwrap()["full_name"].clone()),
        Some(json!("v2")),
        "a fresh fill is stored"
    );
    clean(&redis, &prefix).await;
}

async fn fuel_answer(client: &mut WsClient) -> String {
    client.send_json(json!({"type":"chat","message":"how much have I spent on fuel this month?"})).await;
    client.recv_non_ping().await["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_listener_that_reconnects_evicts_the_changes_it_may_have_missed() {
    let cluster = Cluster::create();
    let admin = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    // The gateway logs in as its own role, so the test can keep its listener from reconnecting.
    sqlx::query("CREATE ROLE gateway SUPERUSER LOGIN").execute(&admin).await.unwrap();
    let gateway_url = cluster.url().replacen("postgres://postgres@", "postgres://gateway@", 1);
    let (redis, prefix) = (redis().await, fresh_prefix());
    let app = spawn_app_with(
        |s| {
            s.database_url = gateway_url;
            s.redis_url = Some(redis_url());
            s.cache_prefix = prefix.clone();
        },
        Default::default(),
    )
    .await;
    let user = uuid::Uuid::new_v4();
    let insert_fuel = |amount: &'static str| {
        sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES ($1, $2::numeric, 'fuel', CURRENT_DATE)")
            .bind(user)
            .bind(amount)
    };
    let listeners = || async {
        sqlx::query_scalar::<_, i32>("SELECT pid FROM pg_stat_activity WHERE usename = 'gateway' AND query ILIKE 'LISTEN%'")
            .fetch_all(&admin)
            .await
            .unwrap()
    };
    wait_until("the gateway listens for context changes", || async { listeners().await.len() == 1 }).await;
    // The first expense's own NOTIFY must be handled before anything is cached, or its eviction
    // could land after the first chat: a marker under the user's profile key goes with it.
    let marker = format!("{prefix}:profile:{user}");
    let _: () = redis.set(&marker, "{}", None, None, false).await.unwrap();
    insert_fuel("40.00").execute(&admin).await.unwrap();
    wait_until("the first expense is evicted", || async { !redis.exists::<bool, _>(&marker).await.unwrap() }).await;
    let mut client = WsClient::connect(&app.ws_url(&user.to_string(), Some(&token_for(&user.to_string())))).await;
    client.recv_json().await;
    let before = fuel_answer(&mut client).await;
    assert!(before.contains("$40.00 on fuel"), "{before}");
    let financial: Option<String> = redis.get(format!("{prefix}:financial:{user}")).await.unwrap();
    assert!(financial.is_some(), "cached in Redis too");

    // The listener's connection is cut and cannot come back while the role may not log in.
    sqlx::query("ALTER ROLE gateway NOLOGIN").execute(&admin).await.unwrap();
    let terminated: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'gateway' AND query ILIKE 'LISTEN%'")
            .fetch_all(&admin)
            .await
            .unwrap();
    assert_eq!(terminated, [true]);
    wait_until("the listening backend is gone", || async { listeners().await.is_empty() }).await;
    insert_fuel("2.50").execute(&admin).await.unwrap();
    let meanwhile = fuel_answer(&mut client).await;
    assert!(meanwhile.contains("$40.00 on fuel"), "the change's NOTIFY reached no one, the cache still answers: {meanwhile}");

    sqlx::query("ALTER ROLE gateway LOGIN").execute(&admin).await.unwrap();
    wait_until("the gateway listens again", || async { listeners().await.len() == 1 }).await;
    // L1 lives up to 60 s and Redis 300 s: only the eviction on reconnecting shows the change in time.
    // Paced: each check is a chat, and chats are rate-limited (60 a minute).
    let what = "the change made while the listener was down reaches the answer";
    poll_until(Duration::from_secs(5), Duration::from_millis(100), what, async || {
        let seen = fuel_answer(&mut client).await;
        if seen.contains("$42.50 on fuel") { Ok(()) } else { Err(seen) }
    })
    .await;
    clean(&redis, &prefix).await;
}
