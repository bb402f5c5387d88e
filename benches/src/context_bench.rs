//! `context` (benchmark): the gateway's real context loaders, built in-process from the
//! pam-gateway library (`spawn_loaders` on the real Postgres store and Redis cache), timed at a
//! fixed concurrency on a miss (Redis miss → Postgres → Redis put), a Redis hit (fresh loaders, empty
//! L1) and an L1 hit — beside raw Redis `GET`s of the same keys and raw Postgres primary-key lookups
//! of the same rows, measured in the same run. Users are seeded once with the demo traveller seed
//! into a dedicated database (created when missing) and Redis keys get their own prefix.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
use pam_actors::{CacheLookup, ContextCache, ContextKind};
use pam_actors::{ContextLoaderMsg, ContextLoaders};
use pam_gateway::Settings;
use pam_gateway::context::redis_cache::RedisCache;
use pam_gateway::storage::database::Database;
use pam_gateway::storage::demo_seed::seed_demo_traveller;
use pam_protocol::UserId;
use sqlx::{Connection, PgConnection};

use pam_loadtest::summary::{Report, Rule, Trend, fmt_ms};

/// Options of `pam-bench context`.
#[derive(clap::Args, Clone)]
pub(crate) struct ContextArgs {
    /// Postgres database for the benchmark users (created when missing).
    #[arg(long, env = "PAM_BENCH_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/pam_bench")]
    database_url: String,
    /// Redis for the gateway's cache and the raw GETs (keys under `pam-bench:`).
    #[arg(long, env = "PAM_BENCH_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Benchmark users, seeded once with the demo traveller.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Loads in flight at once, in every phase.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// L1 hits per user (they are cheap; more samples steady the tail).
    #[arg(long, default_value_t = 5)]
    l1_rounds: usize,
}

const PREFIX: &str = "pam-bench";
const RAW_PK_LOOKUP: &str = "SELECT * FROM profiles WHERE id = $1";

/// Benchmark user `n`.
fn bench_user(n: usize) -> UserId {
    UserId::parse(&format!("00000000-0000-4000-b000-{n:012}")).expect("a valid uuid")
}

/// Runs the five phases and prints their table and summary; `Ok(true)` when no load failed.
pub(crate) async fn run(plan: &ContextArgs) -> Result<bool, String> {
    let started = Instant::now();
    ensure_database(&plan.database_url).await?;
    let db = Database::connect(&plan.database_url, true).await.map_err(|e| format!("{e:#}"))?;
    let Database::Postgres(pool) = db.clone() else { return Err("--database-url must be a postgres:// URL".into()) };
    seed(&db, plan.users).await?;
    let redis = raw_redis(&plan.redis_url).await?;
    let settings = Settings::defaults();
    let ttls = [settings.profile_ttl_s, settings.financial_ttl_s, settings.social_ttl_s];
    let cache: Arc<dyn ContextCache> = Arc::new(RedisCache::connect(&plan.redis_url, PREFIX, ttls).map_err(|e| format!("{e:#}"))?);
    // The cache connects in the background: wait until it answers so no phase runs with the breaker open.
    wait_for_cache(cache.as_ref()).await?;
    let keys: Arc<Vec<String>> = Arc::new((0..plan.users).map(|n| format!("{PREFIX}:profile:{}", bench_user(n))).collect());
    let _: i64 = redis.del(keys.to_vec()).await.map_err(|e| format!("redis DEL: {e}"))?;

    let loaders = |cache: Arc<dyn ContextCache>| {
        let (db, settings) = (db.clone(), settings.clone());
        async move { pam_gateway::context::spawn_loaders(&db, &settings, Some(cache)).await.map_err(|e| format!("{e:#}")) }
    };
    let (n, c) = (plan.users, plan.concurrency);
    eprintln!("context: {n} users, {c} concurrent");
    let cold = loaders(cache.clone()).await?;
    let miss = timed(n, c, move |i| load_profile(cold.clone(), i)).await;
    let warm = loaders(cache.clone()).await?;
    let warm2 = warm.clone();
    let redis_hit = timed(n, c, move |i| load_profile(warm.clone(), i)).await;
    let l1_hit = timed(n * plan.l1_rounds, c, move |i| load_profile(warm2.clone(), i % n)).await;
    let raw_get = {
        let (redis, keys) = (redis.clone(), keys.clone());
        timed(n, c, move |i| {
            let (redis, key) = (redis.clone(), keys[i].clone());
            async move { redis.get::<Option<String>, _>(key).await.map_err(|e| e.to_string())?.map(drop).ok_or_else(|| "key missing".into()) }
        })
        .await
    };
    let raw_pk = timed(n, c, move |i| {
        let pool = pool.clone();
        async move {
            let id = uuid::Uuid::parse_str(bench_user(i).as_str()).expect("uuid");
            sqlx::query(RAW_PK_LOOKUP)
                .bind(id)
                .fetch_optional(&pool)
                .await
                .map_err(|e| e.to_string())?
                .map(drop)
                .ok_or_else(|| "row missing".into())
        }
    })
    .await;
    let mut report = report(started.elapsed(), plan, [miss, redis_hit, l1_hit, raw_get, raw_pk]);
    println!("{}", report.render());
    Ok(report.passed())
}

/// Samples and failures of one phase.
struct Phase {
    trend: Trend,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `op(0..count)` on `concurrency` workers and times each call.
async fn timed<F, Fut>(count: usize, concurrency: usize, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut phase = Phase { trend: Trend::default(), errors: 0, first_error: None };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return phase;
                    }
                    let started = Instant::now();
                    match op(i).await {
                        Ok(()) => phase.trend.record(started.elapsed()),
                        Err(error) => {
                            phase.errors += 1;
                            phase.first_error.get_or_insert(error);
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = Phase { trend: Trend::default(), errors: 0, first_error: None };
    for worker in workers {
        if let Ok(phase) = worker.await {
            total.trend.merge(phase.trend);
            total.errors += phase.errors;
            total.first_error = total.first_error.or(phase.first_error);
        }
    }
    total
}

async fn load_profile(loaders: ContextLoaders, i: usize) -> Result<(), String> {
    let reply =
        ractor::call_t!(loaders.profile, ContextLoaderMsg::Load, 5_000, bench_user(i), tracing::Span::none()).map_err(|e| e.to_string())?;
    let value = reply.map_err(|e| e.to_string())?;
    if value.is_null() { Err("no profile loaded".into()) } else { Ok(()) }
}

fn report(elapsed: Duration, plan: &ContextArgs, phases: [Phase; 5]) -> Report {
    let [mut miss, mut redis_hit, mut l1_hit, mut raw_get, mut raw_pk] = phases;
    let p = |t: &mut Trend, q| t.percentile(q).unwrap_or(f64::NAN);
    let rows = [
        ("hit (L1)", p(&mut l1_hit.trend, 50.0), p(&mut l1_hit.trend, 99.0), None),
        (
            "hit (Redis)",
            p(&mut redis_hit.trend, 50.0),
            p(&mut redis_hit.trend, 99.0),
            Some(("raw GET", p(&mut raw_get.trend, 50.0), p(&mut raw_get.trend, 99.0))),
        ),
        (
            "miss (Postgres)",
            p(&mut miss.trend, 50.0),
            p(&mut miss.trend, 99.0),
            Some(("raw PK", p(&mut raw_pk.trend, 50.0), p(&mut raw_pk.trend, 99.0))),
        ),
    ];
    println!("\n  context benchmark: profile loader, {} users, {} concurrent\n", plan.users, plan.concurrency);
    println!(
        "  {:<16} {:>9} {:>9}   {:<8} {:>9} {:>9}   {:>12} {:>12}",
        "load", "p50", "p99", "raw", "p50", "p99", "overhead p50", "ratio p50/p99"
    );
    for (name, p50, p99, raw) in rows {
        match raw {
            Some((raw_name, r50, r99)) => println!(
                "  {name:<16} {:>9} {:>9}   {raw_name:<8} {:>9} {:>9}   {:>12} {:>6.2}×/{:.2}×",
                fmt_ms(p50),
                fmt_ms(p99),
                fmt_ms(r50),
                fmt_ms(r99),
                fmt_ms(p50 - r50),
                p50 / r50,
                p99 / r99
            ),
            None => println!("  {name:<16} {:>9} {:>9}", fmt_ms(p50), fmt_ms(p99)),
        }
    }
    let errors = [&miss, &redis_hit, &l1_hit, &raw_get, &raw_pk].iter().map(|phase| phase.errors).sum::<u64>();
    let first_error = [&miss, &redis_hit, &l1_hit, &raw_get, &raw_pk].iter().find_map(|phase| phase.first_error.clone());
    let mut report = Report::new(format!("context ({} users, {} concurrent)", plan.users, plan.concurrency), elapsed);
    report
        .trend("context_load_miss", miss.trend)
        .trend("context_load_redis_hit", redis_hit.trend)
        .trend("context_load_l1_hit", l1_hit.trend)
        .trend("raw_redis_get", raw_get.trend)
        .trend("raw_postgres_pk_lookup", raw_pk.trend)
        .count("errors", errors);
    if let Some(error) = first_error {
        report.text("first_error", error);
    }
    report.threshold("errors", Rule::CountAtMost { max: 0 });
    report
}

/// Creates the benchmark database when it does not exist (connecting to `postgres` to do so).
async fn ensure_database(url: &str) -> Result<(), String> {
    if PgConnection::connect(url).await.is_ok() {
        return Ok(());
    }
    let (server, name) = url.rsplit_once('/').ok_or("--database-url has no database name")?;
    let name = name.split('?').next().unwrap_or(name);
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("database name {name:?}: use letters, digits and _"));
    }
    let mut admin =
        PgConnection::connect(&format!("{server}/postgres")).await.map_err(|e| format!("Postgres at {server}: {e} (is it running?)"))?;
    // The name was checked to be letters, digits and _ above.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    eprintln!("context: created database {name}");
    Ok(())
}

/// Seeds the benchmark users (each once; a second run finds them and writes nothing).
async fn seed(db: &Database, users: usize) -> Result<(), String> {
    let started = Instant::now();
    let mut created = 0;
    for n in 0..users {
        created += usize::from(seed_demo_traveller(db, &bench_user(n)).await.map_err(|e| format!("{e:#}"))?);
    }
    eprintln!("context: {created} of {users} users seeded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn raw_redis(url: &str) -> Result<fred::prelude::Client, String> {
    let config = Config::from_url(url).map_err(|e| format!("--redis-url: {e}"))?;
    let client = Builder::from_config(config).build().map_err(|e| e.to_string())?;
    client.init().await.map_err(|e| format!("Redis at {url}: {e} (is it running?)"))?;
    Ok(client)
}

async fn wait_for_cache(cache: &dyn ContextCache) -> Result<(), String> {
    let probe = bench_user(999_999_999_999);
    for _ in 0..50 {
        if let CacheLookup::Miss(Some(token)) = cache.get(ContextKind::Profile, &probe).await {
            cache.fill(ContextKind::Profile, &probe, &serde_json::json!({"probe": true}), &token).await;
        }
        if let CacheLookup::Hit(_) = cache.get(ContextKind::Profile, &probe).await {
            cache.evict(ContextKind::Profile, &probe).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the gateway's Redis cache did not answer within 5 s".into())
}
