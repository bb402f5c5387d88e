//! A v2 client that recovers the way the SDK (web/client) does: one chat at a time with a unique
//! id; after a lost socket it reconnects (to another node) and sends `resume`; chats the server had
//! not acknowledged go out again (same id) once the resume has its outcome, all open chats after
//! `resume_failed`; a retryable `error` about a chat sends it again after the SDK's backoff (5
//! times at most); each chat on a live socket has an answer deadline (60 s, re-armed on progress):
//! the first time it passes the chat is sent again, the second time it is silent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use pam_loadtest::client::{self, Socket, next_v2};
use pam_loadtest::progress::Progress;
use pam_loadtest::reconnect::{Backoff, SplitMix64};

use super::model;
use super::record::{CHAT_RETRIES, ChatRecord, ClientStats, Kind, Outcome, Shared, retry_delay};
use crate::cluster::connect_v2;

/// The SDK's default answer deadline.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);
/// How long a `resume` may go unanswered before the stream is given up (the SDK's connect timeout).
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);

/// The chat in flight.
struct Pending {
    record: ChatRecord,
    /// The socket generation it last went out on (0: not on the current one).
    sent_on: u32,
    acked: bool,
    deltas: String,
    sends: u32,
    retries: u32,
    retry_at: Option<Instant>,
    deadline: Option<Instant>,
    deadline_resent: bool,
}

struct Stream {
    id: String,
    epoch: String,
    last_seq: u64,
}

pub(super) struct V2Client {
    n: usize,
    token: String,
    sh: Arc<Shared>,
    rng: SplitMix64,
    socket: Option<Socket>,
    node: usize,
    generation: u32,
    stream: Option<Stream>,
    /// Waiting for `resumed`/`resume_failed` until then.
    resuming: Option<Instant>,
    welcome_epoch: String,
    pending: Option<Pending>,
    records: Vec<ChatRecord>,
    /// Ended chats by id, for answers that come again.
    ended: HashMap<String, usize>,
    chats: u32,
    stats: ClientStats,
}

impl V2Client {
    pub(super) fn new(n: usize, token: String, sh: Arc<Shared>, seed: u64) -> Self {
        V2Client {
            n,
            token,
            node: n % sh.ws.len(),
            sh,
            rng: SplitMix64::new(seed),
            socket: None,
            generation: 0,
            stream: None,
            resuming: None,
            welcome_epoch: String::new(),
            pending: None,
            records: Vec::new(),
            ended: HashMap::new(),
            chats: 0,
            stats: ClientStats::default(),
        }
    }

    /// Chats until the run stops, then waits for the open chat (until the halt).
    pub(super) async fn run(mut self) -> (Vec<ChatRecord>, ClientStats) {
        let (mut stop, mut halt) = (self.sh.stop.clone(), self.sh.halt.clone());
        let mut next_chat = Instant::now() + self.sh.think(&mut self.rng);
        let mut backoff = Backoff::standard();
        let mut first = true;
        loop {
            if *halt.borrow() {
                self.end_pending(Outcome::Silent("still open when the run ended".into()));
                break;
            }
            let stopping = *stop.borrow();
            if stopping && self.pending.is_none() {
                break;
            }
            if self.socket.is_none() {
                if !first {
                    tokio::time::sleep(backoff.next_delay(&mut self.rng)).await;
                }
                first = false;
                if self.connect().await {
                    backoff.reset();
                }
                continue;
            }
            if let Err(error) = self.flush().await {
                self.lost(None, error);
                continue;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let wake = [
                self.pending.is_none().then_some(next_chat).filter(|_| !stopping),
                self.pending.as_ref().and_then(|p| p.retry_at),
                self.pending.as_ref().and_then(|p| p.deadline),
                self.resuming,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far);
            let Some(socket) = self.socket.as_mut() else { continue };
            tokio::select! {
                read = next_v2(socket) => match read {
                    Ok(frame) => {
                        if self.on_frame(&frame) {
                            next_chat = Instant::now() + self.sh.think(&mut self.rng);
                        }
                    }
                    Err(error) => {
                        let code = error.close_code();
                        self.lost(code, String::from(error));
                    }
                },
                _ = tokio::time::sleep_until(wake) => self.on_timer(&mut next_chat, stopping),
                _ = halt.changed() => {}
                _ = stop.changed(), if !stopping => {}
            }
        }
        if let Some(mut socket) = self.socket.take() {
            let _ = futures_util::SinkExt::close(&mut socket).await;
        }
        (self.records, self.stats)
    }

    /// One connect to the current node (the next one after a failure); sends `resume` when there
    /// is a stream to continue. Whether it connected.
    async fn connect(&mut self) -> bool {
        match connect_v2(&self.sh.ws[self.node], &self.token).await {
            Ok((socket, welcome)) => {
                self.stats.connects += 1;
                Progress::bump(&self.sh.progress.connected);
                self.generation += 1;
                self.socket = Some(socket);
                self.welcome_epoch = welcome["epoch"].as_str().unwrap_or_default().to_string();
                match &self.stream {
                    Some(stream) => {
                        let resume = json!({"type": "resume", "stream_id": stream.id, "epoch": stream.epoch, "last_seq": stream.last_seq});
                        self.resuming = Some(Instant::now() + RESUME_TIMEOUT);
                        if let Err(error) = self.send(&resume).await {
                            self.lost(None, error);
                        }
                    }
                    None => {
                        self.stream = Some(Stream {
                            id: welcome["stream_id"].as_str().unwrap_or_default().to_string(),
                            epoch: self.welcome_epoch.clone(),
                            last_seq: welcome["seq"].as_u64().unwrap_or(0),
                        });
                    }
                }
                true
            }
            Err(error) => {
                self.stats.connect_failures += 1;
                self.stats.first_problem.get_or_insert(format!("v2 connect: {error}"));
                self.node = (self.node + 1) % self.sh.ws.len();
                false
            }
        }
    }

    async fn send(&mut self, frame: &Value) -> Result<(), String> {
        match self.socket.as_mut() {
            Some(socket) => client::send_json(socket, frame).await,
            None => Err("no socket".into()),
        }
    }

    /// The socket is gone: unacknowledged chats go out again on the next one, deadlines pause;
    /// the next connect goes to another node.
    fn lost(&mut self, code: Option<u16>, _detail: String) {
        *self.stats.closes.entry(code.unwrap_or(1006)).or_default() += 1;
        self.socket = None;
        self.resuming = None;
        if let Some(p) = self.pending.as_mut() {
            p.deadline = None;
            if !p.acked {
                p.sent_on = 0;
            }
        }
        let nodes = self.sh.ws.len();
        if nodes > 1 {
            self.node = (self.node + 1 + (self.rng.next_u64() % (nodes as u64 - 1)) as usize) % nodes;
        }
    }

    /// Sends the open chat when it is due on this socket; arms its deadline.
    async fn flush(&mut self) -> Result<(), String> {
        if self.resuming.is_some() {
            return Ok(());
        }
        let generation = self.generation;
        let Some(p) = self.pending.as_mut() else { return Ok(()) };
        if p.sent_on != generation && !p.acked && p.retry_at.is_none() {
            let frame = json!({"type": "chat", "id": p.record.marker, "message": model::message(&p.record.marker), "session_id": "chaos"});
            if p.sends > 0 {
                p.record.resends += 1;
            }
            p.sends += 1;
            p.sent_on = generation;
            p.deltas.clear();
            p.deadline = Some(Instant::now() + ANSWER_DEADLINE);
            return self.send(&frame).await;
        }
        if p.deadline.is_none() && p.retry_at.is_none() {
            p.deadline = Some(Instant::now() + ANSWER_DEADLINE);
        }
        Ok(())
    }

    fn on_timer(&mut self, next_chat: &mut Instant, stopping: bool) {
        let now = Instant::now();
        if self.resuming.is_some_and(|at| at <= now) {
            // No outcome for the resume: give the stream up and start afresh on another socket.
            self.stream = None;
            self.stats.first_problem.get_or_insert("a resume got no answer within 10 s".into());
            if let Some(p) = self.pending.as_mut() {
                p.acked = false;
            }
            self.lost(Some(4999), String::new());
            return;
        }
        let Some(p) = self.pending.as_mut() else {
            if !stopping && *next_chat <= now {
                self.chats += 1;
                let marker = self.sh.marker(Kind::V2, self.n, self.chats);
                let record = ChatRecord::new(Kind::V2, marker, self.sh.since_start());
                Progress::bump(&self.sh.progress.sent);
                self.pending = Some(Pending {
                    record,
                    sent_on: 0,
                    acked: false,
                    deltas: String::new(),
                    sends: 0,
                    retries: 0,
                    retry_at: None,
                    deadline: None,
                    deadline_resent: false,
                });
            }
            return;
        };
        if p.retry_at.is_some_and(|at| at <= now) {
            p.retry_at = None;
        }
        if p.deadline.is_some_and(|at| at <= now) {
            p.deadline = None;
            p.record.deadline_passed = true;
            if p.deadline_resent {
                self.end_pending(Outcome::Silent(format!("no answer within {} s, twice", ANSWER_DEADLINE.as_secs())));
            } else {
                p.deadline_resent = true;
                p.acked = false;
                p.sent_on = 0;
            }
        }
    }

    /// Books one frame; true when it ended the open chat.
    fn on_frame(&mut self, frame: &Value) -> bool {
        let kind = frame["type"].as_str().unwrap_or_default();
        if let (Some(seq), Some(stream)) = (frame["seq"].as_u64(), self.stream.as_mut()) {
            if kind != "welcome" && kind != "resume_failed" {
                stream.last_seq = stream.last_seq.max(seq);
            }
        }
        let id = frame["id"].as_str().unwrap_or_default();
        let mine = self.pending.as_ref().is_some_and(|p| p.record.marker == id);
        match kind {
            "resumed" => {
                self.resuming = None;
                self.stats.resumed += 1;
                self.stats.events.push((self.sh.since_start(), "resumed".into()));
                if let Some(stream) = self.stream.as_mut() {
                    stream.last_seq = frame["seq"].as_u64().unwrap_or(stream.last_seq);
                }
            }
            "resume_failed" => {
                self.resuming = None;
                let reason = frame["reason"].as_str().unwrap_or("?").to_string();
                self.stats.events.push((self.sh.since_start(), format!("resume_failed:{reason}")));
                *self.stats.resume_failed.entry(reason).or_default() += 1;
                self.stream = Some(Stream {
                    id: frame["stream_id"].as_str().unwrap_or_default().to_string(),
                    epoch: self.welcome_epoch.clone(),
                    last_seq: frame["seq"].as_u64().unwrap_or(0),
                });
                if let Some(p) = self.pending.as_mut() {
                    (p.acked, p.sent_on) = (false, 0);
                }
            }
            "ack" if mine => {
                if let Some(p) = self.pending.as_mut().filter(|p| p.retry_at.is_none()) {
                    p.acked = true;
                    p.deadline = Some(Instant::now() + ANSWER_DEADLINE);
                }
            }
            "chat_delta" if mine => {
                if let Some(p) = self.pending.as_mut() {
                    p.deltas.push_str(frame["delta"].as_str().unwrap_or_default());
                    p.deadline = p.deadline.map(|_| Instant::now() + ANSWER_DEADLINE);
                }
            }
            "chat_end" if mine => {
                let text = frame["message"].as_str().unwrap_or_default().to_string();
                if let Some(p) = self.pending.as_mut() {
                    p.record.deltas_ok = p.deltas.is_empty() || p.deltas == text;
                    p.record.text = Some(text);
                    p.record.answers += 1;
                }
                self.end_pending(Outcome::Answered);
                Progress::bump(&self.sh.progress.received);
                return true;
            }
            "chat_end" => match self.ended.get(id) {
                Some(&at) => self.records[at].answers += 1,
                None => self.stats.stray_answers += 1,
            },
            "error" => {
                let code = frame["error_code"].as_str().unwrap_or("?").to_string();
                self.stats.error(&code, self.sh.since_start());
                if !mine {
                    return false;
                }
                let rng = &mut self.rng;
                let Some(p) = self.pending.as_mut() else { return false };
                if frame["retryable"] != true {
                    self.end_pending(Outcome::Errored(format!("{code} (not retryable)")));
                    return true;
                }
                p.record.retryable_errors += 1;
                if p.retries >= CHAT_RETRIES {
                    self.end_pending(Outcome::Errored(format!("{code} after {CHAT_RETRIES} re-sends")));
                    return true;
                }
                p.retry_at = Some(Instant::now() + retry_delay(p.retries, rng));
                p.retries += 1;
                (p.acked, p.sent_on, p.deadline) = (false, 0, None);
            }
            _ => {}
        }
        false
    }

    fn end_pending(&mut self, outcome: Outcome) {
        if let Some(mut p) = self.pending.take() {
            if !matches!(outcome, Outcome::Answered) {
                Progress::bump(&self.sh.progress.failed);
            }
            p.record.outcome = outcome;
            p.record.ended = self.sh.since_start();
            self.ended.insert(p.record.marker.clone(), self.records.len());
            self.records.push(p.record);
        }
    }
}
