//! The `failover` scenario's baseline: a reconnect storm between two bare tokio-tungstenite
//! servers (`echo-server` child processes). `clients` sockets sit on the first; it is killed
//! (SIGKILL, so every socket ends without a close frame); each client reconnects to the second
//! with the same capped full-jitter backoff as the gateway clients and is timed from the end of
//! its socket to its first ping → pong there, the counterpart of the gateway's resume round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use pam_loadtest::auth::Tokens;
use pam_loadtest::client;
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::reconnect::{Backoff, SplitMix64, retry_connect, should_reconnect_on};
use pam_loadtest::summary::Trend;
use pam_loadtest::target::{Server, random_secret};

/// The baseline: `clients` sockets on a bare server that is then killed; each reconnects to a
/// second bare server with the same backoff and is timed up to its first ping → pong.
pub(crate) async fn run(clients: usize, concurrency: usize, reconnect_deadline: Duration) -> Result<Trend, String> {
    eprintln!("== bare: {clients} clients on echo server 1, which is then killed");
    let (first, second) = (Server::echo().await?, Server::echo().await?);
    let tokens = Tokens::Secret(random_secret());
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("bare reconnect", progress.clone());
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(clients);
    for n in 0..clients {
        let (a, b, tokens, gate, progress) = (first.url.clone(), second.url.clone(), tokens.clone(), gate.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let session = {
                let _permit = gate.acquire_owned().await;
                client::connect(&a, &tokens, n).await?
            };
            Progress::bump(&progress.connected);
            let mut socket = session.socket;
            loop {
                if let Err(error) = client::next_frame(&mut socket).await {
                    if !should_reconnect_on(&error) {
                        return Err(String::from(error));
                    }
                    break;
                }
            }
            let closed = Instant::now();
            let (mut backoff, mut rng) = (Backoff::standard(), SplitMix64::from_clock(n as u64));
            let deadline = Instant::now() + reconnect_deadline;
            let (session, _) = retry_connect(deadline, &mut backoff, &mut rng, || client::connect(&b, &tokens, n)).await?;
            let mut socket = session.socket;
            client::send_json(&mut socket, &json!({"type": "ping", "timestamp": n})).await?;
            let pong = client::next_json(&mut socket).await?;
            let took = closed.elapsed();
            Progress::bump(&progress.received);
            let _ = futures_util::SinkExt::close(&mut socket).await;
            (pong["type"] == "pong").then_some(took).ok_or_else(|| format!("expected pong, got {pong}"))
        }));
    }
    // Everyone connected (or failed) before the kill.
    while progress.connected.load(std::sync::atomic::Ordering::Relaxed) < clients as u64 && tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.stop().await;
    let mut trend = Trend::default();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(took)) => trend.record(took),
            Ok(Err(error)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("bare client failed: {error}");
                }
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    second.stop().await;
    if errors > 0 {
        return Err(format!("{errors} of {clients} bare clients failed; the baseline is void"));
    }
    Ok(trend)
}
