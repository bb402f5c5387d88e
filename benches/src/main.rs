//! pam-bench: in-process benchmarks of pam-gateway's internals. Unlike pam-loadtest (socket-only),
//! these link the gateway crate and build its parts in this process: `context` times the real
//! context loaders, `stream` runs a whole gateway with a paced fake model, `statements` what an unnamed statement
//! costs on a direct Postgres connection. Each prints a comparison
//! table and a k6-shaped summary, and exits 1 when a threshold fails (2 on a setup error).
//! Figures and commands: docs/performance.md.

mod context_bench;
mod statements_bench;
mod stream_bench;
mod stream_feed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pam-bench", about = "In-process benchmarks of pam-gateway's internals")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Context-load latency of the real loaders (miss, Redis hit, L1 hit) beside raw Redis GET and Postgres PK lookups.
    Context(context_bench::ContextArgs),
    /// v2 token streaming (emit→receive per token, first token) through the in-process gateway beside a bare push server.
    Stream(stream_bench::StreamArgs),
    /// One gateway statement on a direct Postgres connection: named and cached, unnamed, unnamed in a transaction of its own.
    Statements(statements_bench::StatementsArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().bench {
        Bench::Context(args) => context_bench::run(&args).await,
        Bench::Stream(args) => stream_bench::run(&args).await,
        Bench::Statements(args) => statements_bench::run(&args).await,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("pam-bench: some thresholds failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("pam-bench: {error}");
            ExitCode::from(2)
        }
    }
}
