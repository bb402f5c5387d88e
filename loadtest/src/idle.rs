//! `idle`: opens N authenticated sockets, keeps them alive (answering JSON pings), and reports
//! the server's resident memory growth per connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::token::mint;

pub(crate) async fn run(options: &HashMap<String, String>) -> Result<(), String> {
    let url = options.get("url").ok_or("--url is required")?.trim_end_matches('/').to_string();
    let pid: u32 = options.get("pid").ok_or("--pid is required")?.parse().map_err(|_| "--pid must be a number")?;
    let secret = options.get("secret").ok_or("--secret is required")?.clone();
    let connections: usize = options.get("connections").map_or(Ok(1000), |v| v.parse()).map_err(|_| "--connections must be a number")?;
    let hold = Duration::from_secs(options.get("hold-secs").map_or(Ok(5), |v| v.parse()).map_err(|_| "--hold-secs must be a number")?);

    let before = rss_kib(pid)?;
    let started = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(connections.max(1));
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let user = format!("00000000-0000-4000-8000-{i:012}");
        let url = format!("{url}/api/v1/pam/ws/{user}?token={}", mint(&secret, &user));
        let ready = ready_tx.clone();
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = match connect_async(&url).await {
                Ok(pair) => pair,
                Err(error) => return drop(ready.send(Err(error.to_string())).await),
            };
            let mut welcomed = false;
            loop {
                tokio::select! {
                    _ = stop.recv() => return drop(ws.close(None).await),
                    message = ws.next() => match message {
                        Some(Ok(Message::Text(text))) if !welcomed && text.contains("\"connection\"") => {
                            welcomed = true;
                            let _ = ready.send(Ok(())).await;
                        }
                        Some(Ok(Message::Text(text))) if text.contains("\"ping\"") => {
                            let pong = text.replacen("\"ping\"", "\"pong\"", 1);
                            let _ = ws.send(Message::Text(pong.into())).await;
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            if !welcomed { let _ = ready.send(Err("closed before welcome".into())).await; }
                            return;
                        }
                    },
                }
            }
        }));
        if i % 100 == 99 {
            eprint!("\rconnecting {}/{connections}", i + 1);
        }
    }
    drop(ready_tx);
    let (mut ok, mut failed) = (0usize, 0usize);
    while ok + failed < connections {
        match ready_rx.recv().await {
            Some(Ok(())) => ok += 1,
            Some(Err(_)) => failed += 1,
            None => break,
        }
    }
    eprintln!("\r{ok} sockets ready, {failed} failed in {:.2} s; holding {} s", started.elapsed().as_secs_f64(), hold.as_secs());
    tokio::time::sleep(hold).await;
    let after = rss_kib(pid)?;
    let _ = stop_tx.send(());
    for task in tasks {
        let _ = task.await;
    }
    let per_conn = (after.saturating_sub(before)) as f64 / ok.max(1) as f64;
    println!("idle: connections={ok} failed={failed} rss_before_kib={before} rss_after_kib={after} rss_per_connection_kib={per_conn:.2}");
    if failed > 0 { Err(format!("{failed} connections failed")) } else { Ok(()) }
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}
