mod common;
use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scratch_every_upgraded_socket_gets_1012_during_a_drain() {
    for round in 0..20 {
        let app = spawn_app_with(|s| s.shutdown_grace_ms = 3000, Default::default()).await;
        let addr = app.addr;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            tasks.push(tokio::spawn(async move {
                let mut readers = Vec::new();
                let start = tokio::time::Instant::now();
                while start.elapsed() < Duration::from_millis(400) {
                    let user = uuid::Uuid::new_v4().to_string();
                    let url = format!("ws://{addr}/api/v1/pam/ws/{user}?token={}", token_for(&user));
                    match tokio_tungstenite::connect_async(&url).await {
                        Ok((mut ws, _)) => readers.push(tokio::spawn(async move {
                            let t = tokio::time::Instant::now();
                            let mut last = None;
                            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(8), ws.next()).await {
                                match m {
                                    Ok(Message::Close(f)) => {
                                        last = Some(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                                        break;
                                    }
                                    Ok(_) => {}
                                    Err(_) => {
                                        last = Some(1006);
                                        break;
                                    }
                                }
                            }
                            (last, t.elapsed())
                        })),
                        Err(_) => {}
                    }
                }
                let mut outcomes = Vec::new();
                for r in readers {
                    outcomes.push(r.await.unwrap());
                }
                outcomes
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + round * 7)).await;
        let t = tokio::time::Instant::now();
        app.shutdown().await;
        let took = t.elapsed();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let bad: Vec<_> = all.iter().filter(|(c, _)| *c != Some(1012) && *c != Some(1000)).collect();
        eprintln!("round {round}: {} sockets, shutdown took {took:?}, bad {bad:?}", all.len());
    }
}
