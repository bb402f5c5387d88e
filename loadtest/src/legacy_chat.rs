//! `legacy-chat`: U users on the legacy protocol, each sending one chat every interval (at most
//! one outstanding) and answering the server's JSON pings, for a fixed duration. Thresholds:
//! `chat_latency` p95 under the limit, connect success at or above the minimum, and at least as
//! many chat answers without `error:true`. A user whose socket the server ends the way a rollout
//! does (1012/1001/1013/1006) reconnects with backoff (see `reconnect`) and resends the chat that
//! got no answer; `ws_reconnects` and `chat_resent` count that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use pam_loadtest::auth::Tokens;
use pam_loadtest::client::{self, Session, WsError};
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::reconnect::{self, Backoff, SplitMix64};
use pam_loadtest::summary::{Rate, Report, Rule, Trend};

/// What the browser's users ask (answered by the builtin assistant from their context).
const QUESTIONS: [&str; 4] = [
    "How much have I spent on fuel this month?",
    "How much budget is left?",
    "Which friends are travelling nearby?",
    "Any events coming up?",
];

/// A chat not answered by then counts as failed and ends that user.
const CHAT_DEADLINE: Duration = Duration::from_secs(30);

/// Options of one run.
pub(crate) struct ChatPlan {
    pub(crate) users: usize,
    pub(crate) duration: Duration,
    pub(crate) interval: Duration,
    pub(crate) p95_limit_ms: f64,
    pub(crate) min_success: f64,
}

/// One user's tallies.
#[derive(Default)]
struct UserTally {
    connecting: Trend,
    latency: Trend,
    connected: bool,
    answers: Rate,
    sent: u64,
    received: u64,
    /// Sockets the server ended with 1012/1001/1013/1006 that this user connected again.
    reconnects: u64,
    /// Chats sent again on the new socket because the old one ended before their answer.
    resent: u64,
    error: Option<String>,
}

pub(crate) async fn run(url: &str, tokens: &Tokens, plan: &ChatPlan) -> Report {
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("legacy-chat", progress.clone());
    let started = Instant::now();
    let deadline = started + plan.duration;
    let tasks: Vec<_> = (0..plan.users)
        .map(|n| {
            // Ramp the users up over the first interval, as k6's ramping does.
            let offset = plan.interval.mul_f64(n as f64 / plan.users.max(1) as f64);
            let (url, tokens, progress, interval) = (url.to_string(), tokens.clone(), progress.clone(), plan.interval);
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                user(&url, &tokens, n, interval, deadline, &progress).await
            })
        })
        .collect();
    let (mut connecting, mut latency) = (Trend::default(), Trend::default());
    let (mut connects, mut answers, mut sent, mut received, mut first_error) = (Rate::default(), Rate::default(), 0, 0, None);
    let (mut reconnects, mut resent) = (0, 0);
    for task in tasks {
        let tally = task.await.unwrap_or_default();
        connecting.merge(tally.connecting);
        latency.merge(tally.latency);
        connects.add(tally.connected);
        answers.passes += tally.answers.passes;
        answers.fails += tally.answers.fails;
        sent += tally.sent;
        received += tally.received;
        reconnects += tally.reconnects;
        resent += tally.resent;
        first_error = first_error.or(tally.error);
    }
    let mut report =
        Report::new(format!("legacy-chat {} users, one chat per {} ms each", plan.users, plan.interval.as_millis()), started.elapsed());
    report
        .trend("ws_connecting", connecting)
        .count("ws_sessions", connects.passes)
        .count("ws_msgs_sent", sent)
        .count("ws_msgs_received", received)
        .count("ws_reconnects", reconnects)
        .count("chat_resent", resent)
        .trend("chat_latency", latency)
        .rate("connect_success", connects)
        .rate("chat_success", answers);
    if let Some(error) = first_error {
        report.text("first_error", error);
    }
    report
        .threshold("chat_latency", Rule::PercentileBelow { p: 95.0, limit_ms: plan.p95_limit_ms })
        .threshold("connect_success", Rule::RateAtLeast { min: plan.min_success })
        .threshold("chat_success", Rule::RateAtLeast { min: plan.min_success });
    report
}

async fn user(url: &str, tokens: &Tokens, n: usize, interval: Duration, deadline: Instant, progress: &Progress) -> UserTally {
    let mut tally = UserTally::default();
    let Session { mut socket, connecting, .. } = match client::connect(url, tokens, n).await {
        Ok(session) => session,
        Err(error) => {
            Progress::bump(&progress.failed);
            tally.error = Some(error);
            return tally;
        }
    };
    Progress::bump(&progress.connected);
    tally.connected = true;
    tally.connecting.record(connecting);
    let (mut backoff, mut rng) = (Backoff::standard(), SplitMix64::from_clock(n as u64));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let session_id = format!("loadtest-{n}");
    let mut turn = 0usize;
    // A chat the socket ended under: resent right after the reconnect, before the next tick.
    let mut unanswered: Option<serde_json::Value> = None;
    while Instant::now() < deadline {
        let chat = match unanswered.take() {
            Some(chat) => {
                tally.resent += 1;
                chat
            }
            None => {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                turn += 1;
                json!({"type": "chat", "message": QUESTIONS[(n + turn - 1) % QUESTIONS.len()], "session_id": session_id})
            }
        };
        let sent = Instant::now();
        let outcome = match client::send_json(&mut socket, &chat).await {
            // A failed send is a socket the server already dropped.
            Err(error) => Err(WsError::Ended { code: None, detail: error }),
            Ok(()) => {
                tally.sent += 1;
                Progress::bump(&progress.sent);
                match tokio::time::timeout(CHAT_DEADLINE, chat_response(&mut socket, &mut tally)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(WsError::Other(format!("no chat_response within {} s", CHAT_DEADLINE.as_secs()))),
                }
            }
        };
        match outcome {
            Ok(ok) => {
                tally.latency.record(sent.elapsed());
                tally.answers.add(ok);
                Progress::bump(&progress.received);
            }
            Err(error) if reconnect::should_reconnect_on(&error) => {
                match reconnect::reconnect(url, tokens, n, deadline, &mut backoff, &mut rng).await {
                    Ok((session, _tries)) => {
                        socket = session.socket;
                        tally.reconnects += 1;
                        tally.connecting.record(session.connecting);
                        unanswered = Some(chat);
                    }
                    Err(gave_up) => {
                        // The run ended while the server was away: the chat never got its answer.
                        tally.answers.add(false);
                        tally.error = Some(format!("{} ({gave_up})", String::from(error)));
                        return tally;
                    }
                }
            }
            Err(error) => {
                tally.answers.add(false);
                tally.error = Some(String::from(error));
                return tally;
            }
        }
    }
    let _ = socket.close(None).await;
    tally
}

/// Waits for the turn's `chat_response`; `Ok(false)` when it carried `error: true`.
async fn chat_response(socket: &mut client::Socket, tally: &mut UserTally) -> Result<bool, WsError> {
    loop {
        let frame = client::next_frame(socket).await?;
        tally.received += 1;
        match frame["type"].as_str() {
            Some("chat_response") => return Ok(frame["error"] != true),
            Some("error") => return Err(reconnect::after_error_frame(socket, format!("error frame: {}", frame["error_code"])).await),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::accept_async;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    /// A legacy-protocol stand-in: the first socket answers two chats, then ends on the third
    /// the way a draining gateway does (an `error` frame, then a close with `close_code`, the chat
    /// unanswered); every later socket answers everything. Returns its URL and the socket count.
    async fn flaky_server(error_code: &'static str, close_code: u16) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let sockets = Arc::new(AtomicUsize::new(0));
        let count = sockets.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(async move {
                    let Ok(mut socket) = accept_async(stream).await else { return };
                    let welcome = json!({"type": "connection", "status": "connected"}).to_string();
                    socket.send(Message::Text(welcome.into())).await.unwrap();
                    let mut chats = 0;
                    while let Some(Ok(Message::Text(text))) = socket.next().await {
                        let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                        if frame["type"] != "chat" {
                            continue;
                        }
                        chats += 1;
                        if first && chats == 3 {
                            let error = json!({"type": "error", "error_code": error_code, "message": "bye"}).to_string();
                            let _ = socket.send(Message::Text(error.into())).await;
                            let close = CloseFrame { code: CloseCode::from(close_code), reason: "".into() };
                            let _ = socket.close(Some(close)).await;
                            return;
                        }
                        let answer = json!({"type": "chat_response", "message": "ok", "error": false}).to_string();
                        if socket.send(Message::Text(answer.into())).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, sockets)
    }

    async fn run_user(url: &str) -> UserTally {
        let tokens = Tokens::new(Some("test-secret".into()), url);
        // Long enough for the backoff's first 0.2 s wait and a few chats after the reconnect; the
        // assertions are on counts only.
        let deadline = Instant::now() + Duration::from_millis(2500);
        user(url, &tokens, 0, Duration::from_millis(50), deadline, &Progress::default()).await
    }

    #[tokio::test]
    async fn a_user_reconnects_after_a_restart_close_and_resends_the_unanswered_chat() {
        let (url, sockets) = flaky_server("SERVICE_RESTART", 1012).await;
        let tally = run_user(&url).await;
        assert_eq!(tally.error, None);
        assert_eq!(tally.reconnects, 1);
        assert_eq!(tally.resent, 1);
        assert_eq!(sockets.load(Ordering::SeqCst), 2);
        assert_eq!(tally.answers.fails, 0, "the chat cut off by the restart was answered after the resend");
        assert!(tally.answers.passes >= 3, "{} answers", tally.answers.passes);
        assert_eq!(tally.sent, tally.answers.passes + 1, "every chat answered once; one of them sent twice");
    }

    #[tokio::test]
    async fn a_policy_close_still_ends_the_user() {
        let (url, sockets) = flaky_server("RATE_LIMIT_EXCEEDED", 4429).await;
        let tally = run_user(&url).await;
        assert_eq!(tally.reconnects, 0);
        assert_eq!(sockets.load(Ordering::SeqCst), 1);
        assert_eq!((tally.answers.passes, tally.answers.fails), (2, 1));
        assert!(tally.error.as_deref().unwrap_or_default().contains("RATE_LIMIT_EXCEEDED"), "{:?}", tally.error);
    }
}
