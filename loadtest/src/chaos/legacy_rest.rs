//! The two clients without a chat id on a socket. Legacy (`/api/v1/pam/ws`) behaves like today's
//! browser client: one chat at a time, answered by the next `chat_response`; after any lost socket
//! it reconnects (another node, capped backoff) and sends the unanswered chat again (no id: after a
//! crash it may be stored twice, which is expected); no answer within 30 s on a live socket is
//! silent (the real client falls back to REST then). REST (`POST /api/v1/pam/chat`) behaves like
//! the SDK's REST path: `Idempotency-Key` = the chat's marker, retried with the SDK's backoff on
//! network errors, 408, 409, 429 and 5xx, 5 re-sends at most, each try on the next node.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use pam_loadtest::client::{self, Socket, next_frame};
use pam_loadtest::progress::Progress;
use pam_loadtest::reconnect::{Backoff, SplitMix64};

use super::model;
use super::record::{CHAT_RETRIES, ChatRecord, ClientStats, Kind, Outcome, Shared, retry_delay};

/// How long the browser client waits for an answer before it gives the socket up.
const LEGACY_ANSWER_WAIT: Duration = Duration::from_secs(30);
/// One REST try's deadline.
const REST_TIMEOUT: Duration = Duration::from_secs(40);

/// A legacy user: its chats and what its sockets saw.
pub(super) async fn legacy(n: usize, user: String, token: String, sh: Arc<Shared>, seed: u64) -> (Vec<ChatRecord>, ClientStats) {
    let mut rng = SplitMix64::new(seed);
    let (mut stats, mut records) = (ClientStats::default(), Vec::new());
    let (mut stop, mut halt) = (sh.stop.clone(), sh.halt.clone());
    let mut node = n % sh.ws.len();
    let mut socket: Option<Socket> = None;
    let mut pending: Option<(ChatRecord, Instant)> = None;
    let mut next_chat = Instant::now() + sh.think(&mut rng);
    let (mut backoff, mut first, mut chats) = (Backoff::standard(), true, 0u32);
    loop {
        if *halt.borrow() {
            if let Some((mut record, _)) = pending.take() {
                record.outcome = Outcome::Silent("still open when the run ended".into());
                record.ended = sh.since_start();
                records.push(record);
            }
            break;
        }
        let stopping = *stop.borrow();
        if stopping && pending.is_none() {
            break;
        }
        let Some(live) = socket.as_mut() else {
            if !first {
                tokio::time::sleep(backoff.next_delay(&mut rng)).await;
            }
            first = false;
            let url = format!("{}/api/v1/pam/ws/{user}?token={token}", sh.ws[node]);
            match client::connect_url(&url, "connection").await {
                Ok((session, _)) => {
                    stats.connects += 1;
                    Progress::bump(&sh.progress.connected);
                    backoff.reset();
                    let mut fresh = session.socket;
                    if let Some((record, deadline)) = pending.as_mut() {
                        record.resends += 1;
                        *deadline = Instant::now() + LEGACY_ANSWER_WAIT;
                        if client::send_json(&mut fresh, &chat_frame(&record.marker)).await.is_err() {
                            *stats.closes.entry(1006).or_default() += 1;
                            continue;
                        }
                    }
                    socket = Some(fresh);
                }
                Err(error) => {
                    stats.connect_failures += 1;
                    stats.first_problem.get_or_insert(format!("legacy connect: {error}"));
                    node = (node + 1) % sh.ws.len();
                }
            }
            continue;
        };
        let wake = match &pending {
            Some((_, deadline)) => *deadline,
            None if stopping => Instant::now() + Duration::from_secs(3600),
            None => next_chat,
        };
        tokio::select! {
            read = next_frame(live) => match read {
                Ok(frame) if frame["type"] == "chat_response" => {
                    let Some((mut record, _)) = pending.take() else {
                        stats.stray_answers += 1;
                        continue;
                    };
                    let text = frame["message"].as_str().unwrap_or_default().to_string();
                    if !text.contains(&record.marker) {
                        stats.stray_answers += 1;
                    }
                    record.answers += 1;
                    record.outcome = if frame["error"] == true {
                        let code = frame["error_code"].as_str().unwrap_or("?").to_string();
                        stats.error(&code, sh.since_start());
                        Progress::bump(&sh.progress.failed);
                        Outcome::Errored(code)
                    } else {
                        Progress::bump(&sh.progress.received);
                        Outcome::Answered
                    };
                    record.text = Some(text);
                    record.ended = sh.since_start();
                    records.push(record);
                    next_chat = Instant::now() + sh.think(&mut rng);
                }
                Ok(frame) if frame["type"] == "error" => stats.error(frame["error_code"].as_str().unwrap_or("?"), sh.since_start()),
                Ok(_) => {}
                Err(error) => {
                    *stats.closes.entry(error.close_code().unwrap_or(1006)).or_default() += 1;
                    socket = None;
                    node = (node + 1) % sh.ws.len();
                }
            },
            _ = tokio::time::sleep_until(wake) => match pending.take() {
                Some((mut record, _)) => {
                    // Silent for 30 s: the browser client gives this socket up.
                    record.outcome = Outcome::Silent(format!("no answer within {} s", LEGACY_ANSWER_WAIT.as_secs()));
                    record.ended = sh.since_start();
                    Progress::bump(&sh.progress.failed);
                    records.push(record);
                    socket = None;
                    next_chat = Instant::now() + sh.think(&mut rng);
                }
                None if !stopping => {
                    chats += 1;
                    let record = ChatRecord::new(Kind::Legacy, sh.marker(Kind::Legacy, n, chats), sh.since_start());
                    Progress::bump(&sh.progress.sent);
                    let sent = client::send_json(live, &chat_frame(&record.marker)).await;
                    pending = Some((record, Instant::now() + LEGACY_ANSWER_WAIT));
                    if sent.is_err() {
                        *stats.closes.entry(1006).or_default() += 1;
                        socket = None;
                    }
                }
                None => {}
            },
            _ = halt.changed() => {}
            _ = stop.changed(), if !stopping => {}
        }
    }
    if let Some(mut socket) = socket {
        let _ = futures_util::SinkExt::close(&mut socket).await;
    }
    (records, stats)
}

fn chat_frame(marker: &str) -> serde_json::Value {
    json!({"type": "chat", "message": model::message(marker), "session_id": "chaos"})
}

/// A REST user: one chat at a time until the stop.
pub(super) async fn rest(n: usize, token: String, sh: Arc<Shared>, seed: u64) -> (Vec<ChatRecord>, ClientStats) {
    let mut rng = SplitMix64::new(seed);
    let (mut stats, mut records) = (ClientStats::default(), Vec::new());
    let http = pam_loadtest::target::http_client();
    let mut node = n % sh.http.len();
    let mut chats = 0u32;
    let mut stop = sh.stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(sh.think(&mut rng)) => {}
            _ = stop.changed() => {}
        }
        if *sh.stop.borrow() {
            break;
        }
        chats += 1;
        let mut record = ChatRecord::new(Kind::Rest, sh.marker(Kind::Rest, n, chats), sh.since_start());
        Progress::bump(&sh.progress.sent);
        let body = json!({"message": model::message(&record.marker), "session_id": "chaos"});
        let mut attempt = 0;
        record.outcome = loop {
            if *sh.halt.borrow() {
                break Outcome::Silent("still retrying when the run ended".into());
            }
            let sent = http
                .post(format!("{}/api/v1/pam/chat", sh.http[node]))
                .bearer_auth(&token)
                .header("idempotency-key", &record.marker)
                .timeout(REST_TIMEOUT)
                .json(&body)
                .send()
                .await;
            let (code, retryable) = match sent {
                Ok(response) if response.status().is_success() => match response.json::<serde_json::Value>().await {
                    Ok(answer) => {
                        record.text = answer["response"].as_str().map(str::to_string);
                        record.answers += 1;
                        break Outcome::Answered;
                    }
                    Err(e) => (format!("body: {e}"), true),
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = response.json::<serde_json::Value>().await.ok().and_then(|b| b["error"].as_str().map(str::to_string));
                    (format!("{status} {}", error.unwrap_or_default()), matches!(status, 408 | 409 | 429) || status >= 500)
                }
                Err(e) if e.is_timeout() => ("timeout".to_string(), true),
                Err(_) => ("network".to_string(), true),
            };
            stats.error(&code, sh.since_start());
            node = (node + 1) % sh.http.len();
            if !retryable || attempt >= CHAT_RETRIES {
                break Outcome::Errored(format!("{code} after {attempt} re-sends"));
            }
            record.retryable_errors += 1;
            record.resends += 1;
            tokio::time::sleep(retry_delay(attempt, &mut rng)).await;
            attempt += 1;
        };
        record.ended = sh.since_start();
        match record.outcome {
            Outcome::Answered => Progress::bump(&sh.progress.received),
            _ => Progress::bump(&sh.progress.failed),
        }
        records.push(record);
    }
    (records, stats)
}
