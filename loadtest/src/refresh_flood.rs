//! `refresh-flood`: one authenticated v2 socket sends N `auth_refresh` frames as fast as it can
//! (a hostile or broken client). Reports how many the server took before it closed the socket
//! and the server's RSS before, at the end and after the close — what the flood pins.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use pam_loadtest::auth::{Tokens, user_id};
use pam_loadtest::summary::Report;
use pam_loadtest::target::rss_kib;

/// Sends `frames` refreshes on one socket; `pid` (the server) is needed for memory figures.
pub(crate) async fn run(url: &str, pid: Option<u32>, tokens: &Tokens, frames: usize) -> Result<Report, String> {
    let user = user_id(0);
    let token = tokens.token_for(&user).await?;
    let (socket, _) = connect_async(format!("{}/api/v2/pam/ws?token={token}", url.trim_end_matches('/')))
        .await
        .map_err(|e| format!("v2 handshake: {e}"))?;
    let (mut sink, mut stream) = socket.split();
    let before = pid.map(rss_kib).transpose()?;
    let started = Instant::now();
    // Read concurrently so the server's replies never block it; remember the close code.
    let reader = tokio::spawn(async move {
        let mut close = None;
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Close(frame) = message {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
        }
        close
    });
    let refresh = serde_json::json!({"type": "auth_refresh", "token": token}).to_string();
    let mut sent = 0usize;
    for _ in 0..frames {
        if sink.send(Message::Text(refresh.clone().into())).await.is_err() {
            break;
        }
        sent += 1;
    }
    let at_end = pid.map(rss_kib).transpose()?;
    let _ = sink.close().await;
    let close = tokio::time::timeout(Duration::from_secs(5), reader).await.ok().and_then(Result::ok).flatten();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pid.map(rss_kib).transpose()?;
    let mut report = Report::new(format!("refresh-flood {frames} auth_refresh frames on one v2 socket"), started.elapsed());
    report.count("frames_sent_before_the_close", sent as u64);
    report.text("server_close", close.map_or("none seen".to_string(), |code| code.to_string()));
    match (before, at_end, after) {
        (Some(b), Some(e), Some(a)) => report.text(
            "server_rss",
            format!(
                "{b} KiB before → {e} KiB at the end of the flood ({:+} KiB) → {a} KiB after the close ({:+} KiB)",
                e as i64 - b as i64,
                a as i64 - b as i64
            ),
        ),
        _ => report.text("server_rss", "not measured (no --pid)"),
    };
    Ok(report)
}
