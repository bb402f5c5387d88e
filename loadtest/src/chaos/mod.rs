//! `chaos`: the guarantees of docs/reliability.md under rude faults, on a cluster the scenario owns.
//! It starts its own `redis-server` (on a free port: the shared one is never touched), `--nodes`
//! release gateway processes with fixed `PAM_NODE_ID`s on one Postgres database, a TCP proxy in
//! front of each node (the sockets' way in) and a deterministic model (`model`); then `--clients`
//! users chat — legacy sockets, v2 sockets recovering like the SDK, REST with `Idempotency-Key` —
//! while `faults` kills and restarts nodes, stops them for 3 s, pauses and kills the Redis and cuts
//! single sockets. At the end every chat is judged (`report`): answered once, answered after a
//! re-send, errored, silent, partial (deltas that do not add up, another text, another stored
//! text), answered twice (v2), stored twice (v2 id), counted per fault it met.
//!
//! Layout: `procs` (the processes), `model`, `proxy`, `faults` (the schedule), `record` (what a
//! chat came to), `v2` and `legacy_rest` (the clients), `report` (the audit); this file runs it.

mod faults;
mod legacy_rest;
mod model;
mod procs;
mod proxy;
mod record;
mod report;
mod v2;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use pam_loadtest::auth::mint;
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::reconnect::SplitMix64;
use pam_loadtest::target::random_secret;

use crate::cluster::{run_salt, run_user};
use record::{Kind, Shared};

/// Options of `pam-loadtest chaos`.
#[derive(clap::Args, Clone)]
pub(crate) struct ChaosArgs {
    /// The pam-gateway binary (release) the nodes run.
    #[arg(long, default_value = "target/release/pam-gateway")]
    gateway_bin: PathBuf,
    /// The redis-server binary (the scenario starts its own on a free port).
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// A Postgres server's maintenance URL; the run's database is created on it when missing.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// The nodes' database (its schema comes from their migrations).
    #[arg(long, default_value = "pam_chaos")]
    database: String,
    /// Gateway nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Users, one client each.
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Share of the clients on v2 sockets.
    #[arg(long, default_value_t = 0.4)]
    v2_share: f64,
    /// Share of the clients chatting over REST (the rest: legacy sockets).
    #[arg(long, default_value_t = 0.3)]
    rest_share: f64,
    /// Seconds of chatting; then no new chats, and the open ones are waited for.
    #[arg(long, default_value_t = 150)]
    duration: u64,
    /// A client's pause between chats: uniform between these many ms.
    #[arg(long, default_value_t = 2000)]
    think_min_ms: u64,
    #[arg(long, default_value_t = 5000)]
    think_max_ms: u64,
    /// Seconds before the first fault.
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// Seconds between faults (each kind in turn).
    #[arg(long, default_value_t = 20)]
    fault_every_secs: u64,
    /// No fault starts in the last this many seconds of chatting.
    #[arg(long, default_value_t = 20)]
    calm_secs: u64,
    /// Sockets cut per socket-cut fault.
    #[arg(long, default_value_t = 20)]
    cuts: usize,
    /// Milliseconds a killed node stays down before it is restarted under the same id.
    #[arg(long, default_value_t = 2000)]
    restart_after_ms: u64,
    /// Milliseconds between the model's deltas (9 per answer).
    #[arg(long, default_value_t = 100)]
    model_delta_ms: u64,
    /// Seconds the open chats are waited for after the chatting stops.
    #[arg(long, default_value_t = 150)]
    drain_secs: u64,
    /// Seconds a fault's window lasts past its recovery when chats are put beside it.
    #[arg(long, default_value_t = 5)]
    tail_secs: u64,
    /// Seed of the schedule and the clients (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs the scenario; `Ok(false)` when a must-hold failed.
pub(crate) async fn run(args: &ChaosArgs) -> Result<bool, String> {
    let wall = Instant::now();
    let seed = args.seed.unwrap_or_else(|| SplitMix64::from_clock(u64::from(run_salt())).next_u64());
    let mut rng = SplitMix64::new(seed);
    let salt = format!("{:08x}", run_salt());
    let dir = std::env::temp_dir().join(format!("pam-chaos-{salt}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (secret, admin_token) = (random_secret(), random_secret());
    procs::ensure_database(&args.postgres_url, &args.database).await?;
    let database_url =
        format!("{}/{}", args.postgres_url.rsplit_once('/').map_or(args.postgres_url.as_str(), |(server, _)| server), args.database);
    let (model_url, _model) = model::start(Duration::from_millis(args.model_delta_ms)).await?;
    let redis = procs::Redis::start(&args.redis_server).await?;
    let env = procs::NodeEnv {
        bin: args.gateway_bin.clone(),
        database_url: database_url.clone(),
        redis_url: redis.url(),
        prefix: format!("chaos-{salt}"),
        secret: secret.clone(),
        admin_token,
        model_url,
        dir: dir.clone(),
    };
    let mut nodes = Vec::new();
    for i in 0..args.nodes.max(1) {
        let mut node = procs::Node::new(format!("chaos-node-{i}"))?;
        // One at a time: the first runs the migrations.
        node.start(&env).await?;
        nodes.push(node);
    }
    let mut proxies = Vec::new();
    for node in &nodes {
        proxies.push(proxy::Proxy::start(node.port).await?);
    }
    eprintln!(
        "== chaos seed {seed}, run {salt}: {} nodes ({}), Redis {}, database {database_url}, logs in {}",
        nodes.len(),
        nodes.iter().map(|n| format!("{} {}", n.id, n.http())).collect::<Vec<_>>().join(", "),
        redis.url(),
        dir.display()
    );

    let progress = Arc::new(Progress::default());
    let (stop_tx, stop) = watch::channel(false);
    let (halt_tx, halt) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let shared = Arc::new(Shared {
        ws: proxies.iter().map(|p| p.url.clone()).collect(),
        http: nodes.iter().map(|n| n.http()).collect(),
        salt: salt.clone(),
        progress: progress.clone(),
        stop,
        halt,
        think: (Duration::from_millis(args.think_min_ms), Duration::from_millis(args.think_max_ms.max(args.think_min_ms))),
        started,
    });
    let v2 = (args.clients as f64 * args.v2_share).round() as usize;
    let rest = (args.clients as f64 * args.rest_share).round() as usize;
    let _ticker = Ticker::start("chaos", progress.clone());
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        let user = run_user(u32::from_str_radix(&salt, 16).unwrap_or(0), n);
        let token = mint(&secret, &user);
        let (sh, seed) = (shared.clone(), rng.next_u64());
        let kind = if n < v2 {
            Kind::V2
        } else if n < v2 + rest {
            Kind::Rest
        } else {
            Kind::Legacy
        };
        tasks.push(tokio::spawn(async move {
            let (records, stats) = match kind {
                Kind::V2 => v2::V2Client::new(n, token, sh, seed).run().await,
                Kind::Rest => legacy_rest::rest(n, token, sh, seed).await,
                Kind::Legacy => legacy_rest::legacy(n, user, token, sh, seed).await,
            };
            (kind, records, stats)
        }));
    }
    let mut world = faults::World { nodes, proxies, redis, env };
    let length = Duration::from_secs(args.duration.max(10));
    let schedule = faults::Schedule {
        warmup: Duration::from_secs(args.warmup_secs),
        every: Duration::from_secs(args.fault_every_secs.max(1)),
        until: length.saturating_sub(Duration::from_secs(args.calm_secs)),
        cuts: args.cuts,
        restart_after: Duration::from_millis(args.restart_after_ms),
    };
    let ((windows, fault_error), ()) =
        tokio::join!(faults::run(&mut world, &schedule, started, rng.next_u64()), tokio::time::sleep_until(started + length));
    tokio::time::sleep_until(started + length).await;
    eprintln!("== {:.1}s: no new chats; waiting up to {} s for the open ones", started.elapsed().as_secs_f64(), args.drain_secs);
    let _ = stop_tx.send(true);
    let drain = Duration::from_secs(args.drain_secs);
    let halter = tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        let _ = halt_tx.send(true);
        halt_tx
    });
    let mut records = Vec::new();
    let mut stats: BTreeMap<Kind, record::ClientStats> = BTreeMap::new();
    for task in tasks {
        if let Ok((kind, r, s)) = task.await {
            records.extend(r);
            stats.entry(kind).or_default().merge(s);
        }
    }
    halter.abort();
    // Turns a node could not store yet wait in its outbox: give them a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = report::stored(&database_url, &salt).await?;
    drop(_ticker);
    let figures = report::Figures {
        title: format!(
            "chaos: {} nodes, {} clients ({v2} v2, {rest} REST, {} legacy), {} s, a fault every {} s, seed {seed}, run {salt}",
            world.nodes.len(),
            args.clients,
            args.clients - v2 - rest,
            length.as_secs(),
            args.fault_every_secs
        ),
        records,
        stats,
        windows,
        stored,
        tail: Duration::from_secs(args.tail_secs),
        fault_error,
    };
    let mut report = report::build(figures, wall.elapsed());
    println!("{}", report.render());
    eprintln!("== node logs: {}", dir.display());
    drop(world);
    Ok(report.passed())
}
