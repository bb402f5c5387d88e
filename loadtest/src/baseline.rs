//! `echo-baseline`: the same `idle`, `storm` and `ping` runs against this crate's bare
//! tokio-tungstenite server and against the gateway, each on a fresh server process when the
//! runner starts them, printed side by side with the ratio and the target.

use std::path::PathBuf;
use std::time::Duration;

use pam_loadtest::auth::Tokens;
use pam_loadtest::target::{Server, random_secret};

use crate::idle::{self, IdlePlan};
use crate::{ping, storm};

/// Sizes of the three runs.
pub(crate) struct BaselinePlan {
    pub(crate) gateway_bin: PathBuf,
    pub(crate) idle_connections: usize,
    pub(crate) storm_connections: usize,
    pub(crate) concurrency: usize,
    pub(crate) ping_sockets: usize,
    pub(crate) ping_duration: Duration,
    pub(crate) ping_interval: Duration,
}

/// One server's figures.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    kib_per_connection: f64,
    storm_seconds: f64,
    connects_per_second: f64,
    stalls: usize,
    ping_p99_ms: f64,
    failures: usize,
}

/// Runs everything; `Ok(true)` when every target is met. Each scenario runs on the baseline and
/// then on the gateway back to back, so drifting machine load hits both sides alike.
pub(crate) async fn run(plan: &BaselinePlan) -> Result<bool, String> {
    let (mut gateway, mut baseline) = (Figures::default(), Figures::default());
    for step in [Step::Idle, Step::Storm, Step::Ping] {
        for (figures, bin) in [(&mut baseline, None), (&mut gateway, Some(&plan.gateway_bin))] {
            eprintln!("== {step:?} on {}", bin.map_or("the bare tokio-tungstenite server".into(), |b| b.display().to_string()));
            measure(plan, step, bin, figures).await?;
        }
    }
    Ok(print_table(plan, &gateway, &baseline))
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Idle,
    Storm,
    Ping,
}

async fn start(bin: Option<&PathBuf>, secret: &str) -> Result<Server, String> {
    match bin {
        Some(bin) => Server::gateway(bin, secret).await,
        None => Server::echo().await,
    }
}

/// One scenario on a fresh server process.
async fn measure(plan: &BaselinePlan, step: Step, bin: Option<&PathBuf>, figures: &mut Figures) -> Result<(), String> {
    let secret = random_secret();
    let tokens = Tokens::Secret(secret.clone());
    let server = start(bin, &secret).await?;
    let mut report = match step {
        Step::Idle => {
            let idle_plan = IdlePlan {
                connections: plan.idle_connections,
                concurrency: plan.concurrency,
                hold: Duration::from_secs(3),
                max_kib_per_connection: None,
                context_bytes: 0,
                v2: false,
            };
            let outcome = idle::run(&server.url, Some(server.pid), &tokens, &idle_plan).await?;
            figures.kib_per_connection = outcome.kib_per_connection.unwrap_or(f64::NAN);
            figures.failures += outcome.failures;
            outcome.report
        }
        Step::Storm => {
            let outcome = storm::run(&server.url, &tokens, plan.storm_connections, plan.concurrency).await;
            (figures.storm_seconds, figures.connects_per_second, figures.stalls) =
                (outcome.elapsed.as_secs_f64(), outcome.connects_per_second, outcome.stalls);
            figures.failures += outcome.failures;
            outcome.report
        }
        Step::Ping => {
            let outcome = ping::run(&server.url, &tokens, plan.ping_sockets, plan.ping_duration, plan.ping_interval).await;
            figures.ping_p99_ms = outcome.p99_ms.unwrap_or(f64::NAN);
            figures.failures += outcome.failures;
            outcome.report
        }
    };
    println!("{}", report.render());
    server.stop().await;
    Ok(())
}

/// Prints the comparison; true when every target holds.
fn print_table(plan: &BaselinePlan, gateway: &Figures, baseline: &Figures) -> bool {
    let rows = [
        (
            format!("idle RSS per socket ({} sockets), KiB", plan.idle_connections),
            gateway.kib_per_connection,
            baseline.kib_per_connection,
            "≤ 16 KiB",
            gateway.kib_per_connection <= 16.0,
        ),
        (
            format!("{} connect + auth, s", plan.storm_connections),
            gateway.storm_seconds,
            baseline.storm_seconds,
            "≤ 1.3×",
            gateway.storm_seconds <= 1.3 * baseline.storm_seconds,
        ),
        (
            format!("{} connect + auth, connects/s", plan.storm_connections),
            gateway.connects_per_second,
            baseline.connects_per_second,
            "",
            true,
        ),
        ("SYN-retry stalls (TCP connect ≥ 1 s)".to_string(), gateway.stalls as f64, baseline.stalls as f64, "0", gateway.stalls == 0),
        (
            format!("ping→pong p99 at {} sockets, ms", plan.ping_sockets),
            gateway.ping_p99_ms,
            baseline.ping_p99_ms,
            "≤ 1.25×",
            gateway.ping_p99_ms <= 1.25 * baseline.ping_p99_ms,
        ),
        ("failures (all runs)".to_string(), gateway.failures as f64, baseline.failures as f64, "0", gateway.failures == 0),
    ];
    println!("\n  echo-baseline: gateway vs bare tokio-tungstenite\n");
    println!("  {:<44} {:>10} {:>10} {:>7}  {:<9} ", "figure", "gateway", "baseline", "ratio", "target");
    let mut all = true;
    for (name, g, b, target, met) in rows {
        let ratio = if b > 0.0 { format!("{:.2}×", g / b) } else { "-".into() };
        let mark = if target.is_empty() {
            " "
        } else if met {
            "✓"
        } else {
            "✗"
        };
        println!("  {name:<44} {g:>10.2} {b:>10.2} {ratio:>7}  {target:<9} {mark}");
        all &= met;
    }
    all
}
