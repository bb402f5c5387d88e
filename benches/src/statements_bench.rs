//! `statements` (benchmark): what one of the gateway's statements costs on a direct Postgres
//! connection as sqlx runs it named and cached (before pooler support), unnamed (parsed and
//! planned at every execution, as the gateway now always runs them), and unnamed in a transaction
//! of its own (BEGIN and COMMIT around it, as behind a transaction pooler). Sequential on one
//! connection, so the figures are per-statement latency, not throughput.

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// Options of `pam-bench statements`.
#[derive(clap::Args, Clone)]
pub(crate) struct StatementsArgs {
    /// A migrated gateway database, connected to directly (the test suite's is migrated).
    #[arg(long, env = "PAM_BENCH_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// Executions per mode and statement.
    #[arg(long, default_value_t = 5000)]
    runs: usize,
}

/// The context store's profile read and month-to-date spend, as the gateway sends them.
const STATEMENTS: [(&str, &str); 2] = [
    (
        "profile",
        "SELECT p.full_name, p.nickname, p.email, p.region, p.vehicle_type, p.vehicle_make_model, p.fuel_type,
                to_jsonb(p.travel_style)::text AS travel_style, to_jsonb(p.interests)::text AS interests,
                s.regional_preferences::text AS regional_preferences
         FROM profiles p LEFT JOIN user_settings s ON s.user_id = p.id WHERE p.id = $1",
    ),
    (
        "spend",
        "SELECT COALESCE(category, 'other'), SUM(amount)::float8 FROM expenses
         WHERE user_id = $1 AND date >= date_trunc('month', CURRENT_DATE) GROUP BY 1",
    ),
];

#[derive(Clone, Copy)]
enum Mode {
    Named,
    Unnamed,
    UnnamedInTransaction,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Named => "named, cached",
            Mode::Unnamed => "unnamed",
            Mode::UnnamedInTransaction => "unnamed + BEGIN/COMMIT",
        }
    }
}

async fn once(connection: &mut PgConnection, sql: &'static str, mode: Mode) -> Result<(), sqlx::Error> {
    let user = uuid::Uuid::new_v4();
    match mode {
        Mode::Named => connection.fetch_all(sqlx::query(sql).bind(user)).await.map(drop),
        Mode::Unnamed => connection.fetch_all(sqlx::query(sql).persistent(false).bind(user)).await.map(drop),
        Mode::UnnamedInTransaction => {
            let mut tx = connection.begin().await?;
            tx.fetch_all(sqlx::query(sql).persistent(false).bind(user)).await?;
            tx.commit().await
        }
    }
}

/// Prints mean, p50 and p99 per statement and mode; `Ok(true)` (no thresholds).
pub(crate) async fn run(plan: &StatementsArgs) -> Result<bool, String> {
    let mut connection = PgConnection::connect(&plan.database_url).await.map_err(|e| format!("{}: {e}", plan.database_url))?;
    println!("{:<10} {:<24} {:>10} {:>10} {:>10}", "statement", "mode", "mean µs", "p50 µs", "p99 µs");
    for (name, sql) in STATEMENTS {
        for mode in [Mode::Named, Mode::Unnamed, Mode::UnnamedInTransaction] {
            // Warm: the named statement is prepared and cached, the plan cache and buffers filled.
            for _ in 0..100 {
                once(&mut connection, sql, mode).await.map_err(|e| format!("{name}: {e}"))?;
            }
            let mut took: Vec<Duration> = Vec::with_capacity(plan.runs);
            for _ in 0..plan.runs {
                let started = Instant::now();
                once(&mut connection, sql, mode).await.map_err(|e| format!("{name}: {e}"))?;
                took.push(started.elapsed());
            }
            took.sort();
            let micros = |d: Duration| d.as_secs_f64() * 1e6;
            let mean = took.iter().map(|d| micros(*d)).sum::<f64>() / took.len() as f64;
            let (p50, p99) = (micros(took[took.len() / 2]), micros(took[took.len() * 99 / 100]));
            println!("{name:<10} {:<24} {mean:>10.1} {p50:>10.1} {p99:>10.1}", mode.name());
        }
    }
    Ok(true)
}
