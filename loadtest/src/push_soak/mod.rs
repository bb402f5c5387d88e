//! `push-soak`: proof of receipt under rude sockets. `--users` users split over node A and node B
//! (legacy sockets answering JSON pings like today's browser client, v2 sockets acking like the
//! SDK); alerts (`POST /api/v1/pam/push`) and timers (`POST /api/v1/pam/timers`) at steady rates
//! to random users through either node; budgets crossed by bulk INSERTs of expenses straight into
//! Postgres; meanwhile `--disrupt-share` of the sockets, at random moments, go black-holed (stop
//! reading and answering, connection left open, no FIN) or are reset (RST), and some of those
//! users come back later (a v2 one may resume its stream) while the others stay away. Every
//! client books each push id it actually read. At the end live sockets settle, stop reading,
//! and the ledger is compared with `pam_notifications` (`audit`, `budgets`): pushes marked
//! delivered that no client read, alerts missing, ids read twice on one socket and budget alerts
//! missing, extra or doubled must all be 0.
//!
//! Layout: `plan` (who does what), `acks` (the SDK's ack rule), `audit` and `budgets` (the pure
//! comparisons), `db` (the SQL), `sockets` (the clients) and `record` (what each socket did), `traffic` (pushes, timers, bulk
//! inserts), `report` (the summary), `dump` (`--dump`); this file runs the phases.

mod acks;
mod audit;
mod budgets;
mod db;
mod dump;
mod plan;
mod record;
mod report;
mod sockets;
mod traffic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use pam_loadtest::clock::now_micros;
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::reconnect::SplitMix64;

use crate::cluster::{TwoNodes, http_base, run_salt, run_user, tokens_for};

/// Options of `pam-loadtest push-soak`.
#[derive(clap::Args, Clone)]
pub(crate) struct PushSoakArgs {
    #[command(flatten)]
    nodes: TwoNodes,
    /// The nodes' `PAM_ADMIN_TOKEN` (bearer of the push route).
    #[arg(long, env = "PAM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// The cluster's Postgres: budgets and expenses are written into it, `pam_notifications` read.
    #[arg(long, env = "PAM_SOAK_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/pam_two_nodes")]
    database_url: String,
    /// Users, one socket each (alternating node A / node B).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Share of users on v2 sockets (the rest legacy).
    #[arg(long, default_value_t = 0.5)]
    v2_share: f64,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 180)]
    duration: u64,
    /// Alerts per second (`POST /api/v1/pam/push`), to random users.
    #[arg(long, default_value_t = 20.0)]
    alert_rate: f64,
    /// Timers per second (`POST /api/v1/pam/timers`, due 1–5 s later), to random users.
    #[arg(long, default_value_t = 5.0)]
    timer_rate: f64,
    /// Users (the first ones) given one or two budgets.
    #[arg(long, default_value_t = 300)]
    budget_users: usize,
    /// Expense rows per bulk INSERT (one statement).
    #[arg(long, default_value_t = 3000)]
    expense_rows: usize,
    /// Seconds between bulk INSERTs.
    #[arg(long, default_value_t = 10)]
    expense_every_secs: u64,
    /// Share of the sockets disrupted at a random moment.
    #[arg(long, default_value_t = 0.2)]
    disrupt_share: f64,
    /// Of the disrupted, the share black-holed (the rest are reset).
    #[arg(long, default_value_t = 0.5)]
    black_hole_share: f64,
    /// Of the disrupted, the share whose user connects again 2–20 s later.
    #[arg(long, default_value_t = 0.5)]
    comeback_share: f64,
    /// Of the v2 users who come back, the share that resume their stream.
    #[arg(long, default_value_t = 0.5)]
    resume_share: f64,
    /// Milliseconds a comeback's `resume` waits after the `welcome`: the round trip of a real
    /// network (on loopback the resume reaches the server before anything else happens).
    #[arg(long, default_value_t = 0)]
    resume_delay_ms: u64,
    /// Seconds between a legacy socket's chats (jittered; 0: no chats).
    #[arg(long, default_value_t = 30)]
    chat_every_secs: u64,
    /// Seconds the live sockets keep reading after the traffic and the budget queue are done.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Push and timer requests in flight at most.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Seed of the plan and the traffic (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Write every socket's reads and every accepted alert to this file (JSON lines).
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
}

/// Runs the soak and prints the summary; `Ok(false)` when a must-hold failed.
pub(crate) async fn run(args: &PushSoakArgs) -> Result<bool, String> {
    let (a, b, tokens) = args.nodes.resolve()?;
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| SplitMix64::from_clock(u64::from(run_salt())).next_u64());
    let mut rng = SplitMix64::new(seed);
    let salt = run_salt();
    let users: Vec<String> = (0..args.users.max(1)).map(|n| run_user(salt, n)).collect();
    let tokens = tokens_for(&tokens, &users).await?;
    let pool = db::connect(&args.database_url).await?;
    let length = Duration::from_secs(args.duration.max(30));
    let shares = plan::Shares {
        users: users.len(),
        v2: args.v2_share,
        disrupted: args.disrupt_share,
        black_holed: args.black_hole_share,
        comeback: args.comeback_share,
        resume: args.resume_share,
        duration: length,
    };
    let plans = plan::draw(&shares, &mut rng);
    let budget_users = args.budget_users.min(users.len());
    eprintln!("== push-soak seed {seed}: {} users on {a} and {b}, {budget_users} with budgets", users.len());
    let mut book = budgets::BudgetBook::new(db::create_budgets(&pool, &users[..budget_users]).await?);
    let bases = [http_base(&a), http_base(&b)];
    let metrics_before = report::scrape(&bases).await;

    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("push-soak", progress.clone());
    let urls = [a.clone(), b.clone()];
    let conns = sockets::connect_all(&urls, &users, &tokens, &plans, &progress).await;
    let (freeze_tx, freeze) = watch::channel(false);
    let chat_every = (args.chat_every_secs > 0).then(|| Duration::from_secs(args.chat_every_secs));
    let shared = Arc::new(sockets::Shared {
        urls,
        progress: progress.clone(),
        freeze,
        traffic_start: tokio::time::Instant::now(),
        chat_every,
        resume_delay: Duration::from_millis(args.resume_delay_ms),
    });
    let mut connect_failures = Vec::new();
    let mut tasks = Vec::new();
    for (n, conn) in conns.into_iter().enumerate() {
        match conn {
            Ok(conn) => {
                let (token, plan, shared) = (tokens[n].clone(), plans[n].clone(), shared.clone());
                tasks.push(tokio::spawn(sockets::run_user(conn, token, plan, shared, rng.next_u64())));
            }
            Err(error) => connect_failures.push(error),
        }
    }
    eprintln!(
        "== traffic for {} s: {}/s alerts, {}/s timers, {} expense rows every {} s; {} sockets disrupted",
        length.as_secs(),
        args.alert_rate,
        args.timer_rate,
        args.expense_rows,
        args.expense_every_secs,
        plans.iter().filter(|p| p.disrupt.is_some()).count()
    );
    let offer = traffic::Offer {
        alert_rate: args.alert_rate,
        timer_rate: args.timer_rate,
        length,
        timers_for: length.saturating_sub(Duration::from_secs(8)),
        in_flight: args.in_flight,
    };
    let others = users[budget_users..].to_vec();
    let every = Duration::from_secs(args.expense_every_secs.max(1));
    let (sent, inserted) = tokio::join!(
        traffic::offer(&bases, &args.admin_token, &users, &tokens, &offer, rng.next_u64(), &progress),
        traffic::expenses(&pool, &mut book, &others, args.expense_rows, every, length, rng.next_u64()),
    );
    let queue_left = drain_budget_queue(&pool, &users).await;
    eprintln!("== settling {} s", args.settle_secs);
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let freeze_micros = now_micros();
    let _ = freeze_tx.send(true);
    let mut records = Vec::new();
    let mut open = Vec::new();
    for task in tasks {
        if let Ok(end) = task.await {
            records.extend(end.records);
            open.extend(end.open);
        }
    }
    // The last proofs' marks are written in batches: give them a moment before reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = db::stored_pushes(&pool, &users).await?;
    let metrics_after = report::scrape(&bases).await;
    drop(open);
    if let Some(path) = &args.dump {
        let offset = chrono::Utc::now().timestamp_millis() - (now_micros() / 1000) as i64;
        dump::write(path, &records, &sent, |stamp| offset + (stamp / 1000) as i64)?;
        eprintln!("== wrote {}", path.display());
    }
    let figures = report::Figures {
        args_line: describe(args, seed),
        users: users.len(),
        records,
        rows,
        sent,
        inserted,
        book,
        connect_failures,
        stayed_away: plans.iter().filter(|p| p.disrupt.as_ref().is_some_and(|d| d.comeback.is_none())).count() as u64,
        queue_left,
        freeze_micros,
        settle: Duration::from_secs(args.settle_secs),
        metrics: report::delta(&metrics_before, &metrics_after),
    };
    let mut report = report::build(figures, started.elapsed());
    println!("{}", report.render());
    Ok(report.passed())
}

/// Waits (at most 60 s) until the gateway drained the budget-check queue of `users`; how many
/// are left.
async fn drain_budget_queue(pool: &sqlx::PgPool, users: &[String]) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = db::queued_checks(pool, users).await.unwrap_or(-1);
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn describe(args: &PushSoakArgs, seed: u64) -> String {
    format!(
        "{} users ({:.0} % v2), {} s, {}/s alerts, {}/s timers, {} budget users, {} rows / {} s, {:.0} % disrupted \
         ({:.0} % black-holed), {:.0} % come back, seed {seed}",
        args.users,
        args.v2_share * 100.0,
        args.duration,
        args.alert_rate,
        args.timer_rate,
        args.budget_users,
        args.expense_rows,
        args.expense_every_secs,
        args.disrupt_share * 100.0,
        args.black_hole_share * 100.0,
        args.comeback_share * 100.0,
    )
}
