//! `push-soak`'s virtual users on their sockets. Each socket reads every frame and books each push
//! id it actually read (the ledger); a legacy socket answers the server's JSON pings with a pong
//! echoing the `timestamp` (today's browser client) and chats now and then (pushes then wait
//! behind the answer); a v2 socket answers JSON pings too and acks like the SDK (`acks`). Both
//! answer WebSocket pings (tungstenite does, as browsers do). At its planned moment a disrupted
//! socket either goes black-holed — it is simply no longer polled, so it reads and answers
//! nothing while the connection stays open (no FIN) — or is reset (SO_LINGER 0, then dropped: an
//! RST). A user who comes back connects to a random node (a v2 user may `resume` its stream from
//! the last seq it read). A socket the server closes unexpectedly is counted and reconnected.
//! At the freeze every socket stops reading and is handed back open, so the ledger is final
//! before the database is read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use pam_loadtest::client::{self, Socket};
use pam_loadtest::clock::now_micros;
use pam_loadtest::progress::Progress;
use pam_loadtest::reconnect::{Backoff, SplitMix64};

use super::acks::Acks;
use super::plan::{Dialect, Disruption, UserPlan};
use super::record::{Fate, FirstRead, Origin, SocketRecord};

/// What the users share.
pub(super) struct Shared {
    /// Node A and node B (`ws://host:port`).
    pub(super) urls: [String; 2],
    pub(super) progress: Arc<Progress>,
    /// Becomes true at the freeze.
    pub(super) freeze: watch::Receiver<bool>,
    /// When the traffic started: disruptions are timed from it.
    pub(super) traffic_start: tokio::time::Instant,
    /// Legacy sockets chat about this often (jittered); `None`: never.
    pub(super) chat_every: Option<std::time::Duration>,
    /// A comeback's `resume` waits this long after the `welcome` (a network round trip).
    pub(super) resume_delay: std::time::Duration,
}

/// A v2 socket's stream position.
#[derive(Default)]
struct V2 {
    stream_id: String,
    epoch: Option<String>,
    last_seq: u64,
    acks: Acks,
}

/// A connected socket and its books.
pub(super) struct Conn {
    socket: Socket,
    record: SocketRecord,
    v2: Option<V2>,
    chat_open: bool,
}

/// What a user leaves at the freeze: its sockets' records and the sockets still open.
pub(super) struct UserEnd {
    pub(super) records: Vec<SocketRecord>,
    pub(super) open: Vec<Socket>,
}

/// Connects `user` to node `node` in `dialect` (v2: and resumes `from`'s stream when given).
pub(super) async fn connect(
    urls: &[String; 2],
    user: &str,
    token: &str,
    dialect: Dialect,
    node: usize,
    from: Option<&V2Position>,
) -> Result<Conn, String> {
    let base = &urls[node];
    let (url, ready) = match dialect {
        Dialect::Legacy => (format!("{base}/api/v1/pam/ws/{user}?token={token}"), "connection"),
        Dialect::V2 => (format!("{base}/api/v2/pam/ws?token={token}"), "welcome"),
    };
    let (session, welcome) = client::connect_url(&url, ready).await?;
    let record = SocketRecord {
        user: user.to_string(),
        dialect,
        node,
        connected_micros: now_micros(),
        connected_wall_ms: chrono::Utc::now().timestamp_millis(),
        ended_wall_ms: 0,
        fate: Fate::Live,
        origin: if from.is_some() { Origin::Comeback } else { Origin::First },
        reads: HashMap::new(),
        first_reads: Vec::new(),
        order: Vec::new(),
        resume: None,
        chats_sent: 0,
        chats_answered: 0,
        acks_sent: 0,
        error_codes: Vec::new(),
    };
    let mut conn = Conn { socket: session.socket, record, v2: None, chat_open: false };
    if dialect == Dialect::V2 {
        let mut v2 = V2 {
            stream_id: welcome["stream_id"].as_str().unwrap_or_default().to_string(),
            epoch: welcome["epoch"].as_str().map(str::to_string),
            ..V2::default()
        };
        let seq = welcome["seq"].as_u64().unwrap_or(0);
        v2.acks.settled(seq);
        v2.last_seq = seq;
        if let Some(from) = from {
            // The resume leaves the client one network round trip after the welcome came.
            tokio::time::sleep(from.delay).await;
            let resume = json!({"type": "resume", "stream_id": from.stream_id, "epoch": from.epoch, "last_seq": from.last_seq});
            client::send_json(&mut conn.socket, &resume).await?;
            v2.acks.resuming();
            v2.last_seq = from.last_seq;
            conn.record.resume = Some(Err("no answer".into()));
        }
        conn.v2 = Some(v2);
    }
    Ok(conn)
}

/// Where a v2 socket stood in its stream (what a comeback resumes from).
#[derive(Debug, Clone)]
pub(super) struct V2Position {
    stream_id: String,
    epoch: Option<String>,
    last_seq: u64,
    /// How long after the welcome the `resume` is sent.
    delay: std::time::Duration,
}

/// How [`drive`] stopped.
enum Step {
    Freeze,
    Disrupt,
    Ended(Option<u16>),
}

/// Runs one user from its first connected socket to the freeze.
pub(super) async fn run_user(first: Conn, token: String, plan: UserPlan, shared: Arc<Shared>, seed: u64) -> UserEnd {
    let mut rng = SplitMix64::new(seed);
    let mut freeze = shared.freeze.clone();
    let mut end = UserEnd { records: Vec::new(), open: Vec::new() };
    let user = first.record.user.clone();
    let mut disrupt = plan.disrupt.clone().map(|d| (shared.traffic_start + d.after, d));
    let mut conn = first;
    loop {
        let step = drive(&mut conn, disrupt.as_ref().map(|(at, _)| *at), &shared, &mut freeze, &mut rng).await;
        let position = conn.v2.as_ref().map(|v2| V2Position {
            stream_id: v2.stream_id.clone(),
            epoch: v2.epoch.clone(),
            last_seq: v2.last_seq,
            delay: shared.resume_delay,
        });
        let (mut record, socket) = (conn.record, conn.socket);
        record.ended_wall_ms = chrono::Utc::now().timestamp_millis();
        let comeback = match step {
            Step::Freeze => {
                end.records.push(record);
                end.open.push(socket);
                return end;
            }
            Step::Ended(code) => {
                Progress::bump(&shared.progress.failed);
                record.fate = Fate::Closed(code);
                end.records.push(record);
                Some((std::time::Duration::from_secs(1), None, Origin::AfterClose))
            }
            Step::Disrupt => {
                // `drive` disrupts only at the planned moment, so the plan is there.
                let Some((_, d)) = disrupt.take() else {
                    continue_open(&mut end, record, socket, &mut freeze).await;
                    return end;
                };
                match d.how {
                    Disruption::BlackHole => {
                        record.fate = Fate::BlackHoled;
                        end.open.push(socket);
                    }
                    Disruption::Reset => {
                        record.fate = Fate::Reset;
                        reset(socket);
                    }
                }
                end.records.push(record);
                d.comeback.map(|delay| (delay, position.filter(|_| d.resume), Origin::Comeback))
            }
        };
        let Some((delay, from, origin)) = comeback else {
            let _ = freeze.wait_for(|frozen| *frozen).await;
            return end;
        };
        match reconnect(&shared, &user, &token, plan.dialect, delay, from.as_ref(), &mut freeze, &mut rng).await {
            Some(next) => {
                conn = next;
                conn.record.origin = origin;
            }
            None => return end,
        }
    }
}

/// Keeps a socket open, unread, until the freeze.
async fn continue_open(end: &mut UserEnd, record: SocketRecord, socket: Socket, freeze: &mut watch::Receiver<bool>) {
    end.records.push(record);
    end.open.push(socket);
    let _ = freeze.wait_for(|frozen| *frozen).await;
}

/// Waits `delay`, then connects to a random node until it works or the freeze comes.
#[allow(clippy::too_many_arguments)]
async fn reconnect(
    shared: &Shared,
    user: &str,
    token: &str,
    dialect: Dialect,
    delay: std::time::Duration,
    from: Option<&V2Position>,
    freeze: &mut watch::Receiver<bool>,
    rng: &mut SplitMix64,
) -> Option<Conn> {
    let mut backoff = Backoff::standard();
    let mut wait = delay;
    loop {
        tokio::select! {
            _ = freeze.wait_for(|frozen| *frozen) => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        let node = (rng.next_u64() % 2) as usize;
        match connect(&shared.urls, user, token, dialect, node, from).await {
            Ok(conn) => {
                Progress::bump(&shared.progress.connected);
                return Some(conn);
            }
            Err(_) => {
                Progress::bump(&shared.progress.failed);
                wait = backoff.next_delay(rng);
            }
        }
    }
}

/// An RST instead of a FIN: linger 0, then close.
fn reset(socket: Socket) {
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        let _ = tcp.set_zero_linger();
    }
    drop(socket);
}

async fn at(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reads, answers, acks and chats until the freeze, the planned disruption or the server's close.
async fn drive(
    conn: &mut Conn,
    disrupt_at: Option<tokio::time::Instant>,
    shared: &Shared,
    freeze: &mut watch::Receiver<bool>,
    rng: &mut SplitMix64,
) -> Step {
    let jitter = |every: std::time::Duration, rng: &mut SplitMix64| every.mul_f64(0.5 + rng.next_f64());
    let mut next_chat = match (conn.record.dialect, shared.chat_every) {
        (Dialect::Legacy, Some(every)) => Some(tokio::time::Instant::now() + jitter(every, rng)),
        _ => None,
    };
    loop {
        if *freeze.borrow() {
            return Step::Freeze;
        }
        let now = Instant::now();
        let ack_at = conn.v2.as_ref().and_then(|v2| v2.acks.next_at(now)).map(tokio::time::Instant::from_std);
        let chat_at = next_chat.filter(|_| !conn.chat_open);
        tokio::select! {
            biased;
            _ = freeze.changed() => return Step::Freeze,
            _ = at(disrupt_at) => return Step::Disrupt,
            _ = at(ack_at) => {
                if let Some(seq) = conn.v2.as_mut().and_then(|v2| v2.acks.take(Instant::now())) {
                    if client::send_json(&mut conn.socket, &json!({"type": "ack", "seq": seq})).await.is_err() {
                        return Step::Ended(None);
                    }
                    conn.record.acks_sent += 1;
                }
            }
            _ = at(chat_at) => {
                let chat = json!({"type": "chat", "message": "How much budget is left?", "session_id": "push-soak"});
                if client::send_json(&mut conn.socket, &chat).await.is_err() {
                    return Step::Ended(None);
                }
                conn.chat_open = true;
                conn.record.chats_sent += 1;
                next_chat = shared.chat_every.map(|every| tokio::time::Instant::now() + jitter(every, rng));
            }
            message = conn.socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    if let Err(()) = on_frame(conn, &frame, &shared.progress).await {
                        return Step::Ended(None);
                    }
                }
                Some(Ok(Message::Close(close))) => return Step::Ended(close.map(|c| u16::from(c.code)).or(Some(1005))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Step::Ended(None),
            },
        }
    }
}

/// One text frame: pushes booked, pings answered, v2 positions moved.
async fn on_frame(conn: &mut Conn, frame: &Value, progress: &Progress) -> Result<(), ()> {
    let kind = frame["type"].as_str().unwrap_or_default();
    if let (Some(v2), Some(seq)) = (conn.v2.as_mut(), frame["seq"].as_u64()) {
        if !matches!(kind, "welcome" | "resume_failed") {
            v2.last_seq = v2.last_seq.max(seq);
        }
        if !matches!(kind, "welcome" | "resumed" | "resume_failed") {
            v2.acks.frame(kind, seq);
        }
    }
    match kind {
        "ping" => {
            let pong = json!({"type": "pong", "timestamp": frame["timestamp"]});
            conn.socket.send(Message::Text(pong.to_string().into())).await.map_err(drop)?;
        }
        "timer_expired" | "proactive_alert" => {
            let id = frame["id"].as_str().unwrap_or_default().to_string();
            Progress::bump(&progress.received);
            conn.record.order.push((id.clone(), frame["seq"].as_u64()));
            let count = conn.record.reads.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                let fire_at_ms =
                    frame["fire_at"].as_str().and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok()).map(|at| at.timestamp_millis());
                let (micros, wall_ms) = (now_micros(), chrono::Utc::now().timestamp_millis());
                conn.record.first_reads.push(FirstRead { id, micros, wall_ms, fire_at_ms });
            }
        }
        "chat_response" => {
            conn.chat_open = false;
            conn.record.chats_answered += 1;
        }
        "resumed" => {
            if let Some(v2) = conn.v2.as_mut() {
                v2.acks.settled(frame["seq"].as_u64().unwrap_or(v2.last_seq));
            }
            conn.record.resume = Some(Ok(()));
        }
        "resume_failed" => {
            if let Some(v2) = conn.v2.as_mut() {
                v2.stream_id = frame["stream_id"].as_str().unwrap_or_default().to_string();
                let seq = frame["seq"].as_u64().unwrap_or(0);
                v2.last_seq = seq;
                v2.acks.settled(seq);
            }
            conn.record.resume = Some(Err(frame["reason"].as_str().unwrap_or("?").to_string()));
        }
        "error" => {
            conn.chat_open = false;
            conn.record.error_codes.push(frame["error_code"].as_str().unwrap_or("?").to_string());
        }
        _ => {}
    }
    Ok(())
}

/// Connects every user's first socket, 64 at a time; `None` for a user that could not connect.
pub(super) async fn connect_all(
    urls: &[String; 2],
    users: &[String],
    tokens: &[String],
    plans: &[UserPlan],
    progress: &Progress,
) -> Vec<Result<Conn, String>> {
    let mut out = Vec::with_capacity(users.len());
    for start in (0..users.len()).step_by(64) {
        let end = (start + 64).min(users.len());
        let batch = (start..end).map(|n| connect(urls, &users[n], &tokens[n], plans[n].dialect, plans[n].node, None));
        for conn in futures_util::future::join_all(batch).await {
            Progress::bump(if conn.is_ok() { &progress.connected } else { &progress.failed });
            out.push(conn);
        }
    }
    out
}
