//! `failover`: N v2 clients chatting on node A of a two-node cluster; after a warm-up node A is
//! drained (SIGTERM to `--drain-pid`: its v2 sockets get `error SERVICE_RESTART` then 1012), and
//! each client reconnects to node B with capped full-jitter backoff and sends
//! `resume {stream_id, epoch, last_seq}`. Measured: close → `resumed`/`resume_failed` time, and
//! against the protocol's promises (see `ledger`) frames lost and repeated — both must be 0. A
//! `resume_failed` is counted by reason; the client then goes on with the fresh stream and sends
//! its unanswered chat again with the same id (and again, 0.5–1 s later, after each retryable
//! `error` for it, until its chat timeout); after `resumed`, an open chat whose `ack` has not come
//! within 3 s (the drained node never read it) is sent again the same way. Baseline in the same run: the same N clients on a
//! bare tokio-tungstenite server that is killed, reconnecting to a second one with the same
//! backoff and timing up to one ping → pong round trip (the resume's counterpart).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use pam_loadtest::auth::Tokens;
use pam_loadtest::client::{self, Socket, WsError, next_v2};
use pam_loadtest::progress::{Progress, Ticker};
use pam_loadtest::reconnect::{Backoff, SplitMix64, retry_connect, should_reconnect_on};
use pam_loadtest::summary::{Report, Rule, Trend, fmt_ms};

use crate::cluster::{TwoNodes, connect_v2, run_salt, run_user, tokens_for};
use crate::ledger::{ChatBook, SeqLedger};

/// How long one chat, or one resume's answer, may take.
const CHAT_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause (plus up to 0.5 s of jitter) before a chat refused with a retryable error is sent again.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// After a resume, how long an unacknowledged open chat waits for its `ack` (or any frame of it) to
/// arrive — forwarded from the drained node — before it is sent again with the same id, as the
/// SDK does with chats the server never took.
const ACK_WAIT: Duration = Duration::from_secs(3);
/// How long a client keeps trying to reach the other node.
pub(crate) const RECONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// Options of `pam-loadtest failover`.
#[derive(clap::Args, Clone)]
pub(crate) struct FailoverArgs {
    #[command(flatten)]
    nodes: TwoNodes,
    /// Process id of node A (the first --url), sent SIGTERM after the warm-up.
    #[arg(long)]
    drain_pid: u32,
    /// Concurrent v2 clients (one user each), all on node A at the start.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Seconds of chatting before the drain.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Seconds of chatting on node B after the drain.
    #[arg(long, default_value_t = 10)]
    after_secs: u64,
    /// Pause between one client's chats, in ms.
    #[arg(long, default_value_t = 500)]
    think_ms: u64,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Threshold: reconnect+resume p99 at most this many times the bare reconnect p99.
    #[arg(long, default_value_t = 1.3)]
    max_ratio: f64,
}

/// What the clients of one run measured.
#[derive(Default)]
struct Tally {
    reconnect: Trend,
    moved: u64,
    resumed: u64,
    resume_failed: BTreeMap<String, u64>,
    chats_sent: u64,
    chats_ended: u64,
    /// Chats sent again after a retryable error frame.
    chat_retries: u64,
    /// Chats sent again because their `ack` had not come 3 s after `resumed` (node A closed the
    /// socket before reading them) — counted apart: a lost forwarded ack would also end up here.
    ack_overdue_resends: u64,
    seq_lost: u64,
    seq_repeated: u64,
    incomplete: u64,
    unended: u64,
    repeated_ends: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.reconnect.merge(other.reconnect);
        self.moved += other.moved;
        self.resumed += other.resumed;
        for (reason, count) in other.resume_failed {
            *self.resume_failed.entry(reason).or_default() += count;
        }
        (self.chats_sent, self.chats_ended) = (self.chats_sent + other.chats_sent, self.chats_ended + other.chats_ended);
        self.chat_retries += other.chat_retries;
        self.ack_overdue_resends += other.ack_overdue_resends;
        (self.seq_lost, self.seq_repeated) = (self.seq_lost + other.seq_lost, self.seq_repeated + other.seq_repeated);
        (self.incomplete, self.unended, self.repeated_ends) =
            (self.incomplete + other.incomplete, self.unended + other.unended, self.repeated_ends + other.repeated_ends);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    fn frames_lost(&self) -> u64 {
        self.seq_lost + self.incomplete + self.unended
    }

    fn frames_repeated(&self) -> u64 {
        self.seq_repeated + self.repeated_ends
    }
}

/// Runs the bare baseline, then the gateway failover; prints both and the thresholds.
pub(crate) async fn run(args: &FailoverArgs) -> Result<bool, String> {
    let (a, b, tokens) = args.nodes.resolve()?;
    let started = Instant::now();
    let bare = crate::bare_storm::run(args.clients, args.concurrency, RECONNECT_DEADLINE).await?;
    let gateway = gateway_failover(args, [a, b], &tokens).await?;
    let mut report =
        Report::new(format!("failover: {} v2 clients, node A drained after {} s", args.clients, args.warmup_secs), started.elapsed());
    let (mut g, mut r) = (gateway.reconnect.clone(), bare.clone());
    let (gp99, bp99) = (g.percentile(99.0).unwrap_or(f64::NAN), r.percentile(99.0).unwrap_or(f64::NAN));
    println!("\n  failover: reconnect (+resume) after the node went away, gateway vs bare tokio-tungstenite\n");
    println!("  {:<36} {:>10} {:>10} {:>7}", "figure", "gateway", "bare", "ratio");
    for q in [50.0, 99.0] {
        let (gv, bv) = (g.percentile(q).unwrap_or(f64::NAN), r.percentile(q).unwrap_or(f64::NAN));
        println!("  {:<36} {:>10} {:>10} {:>6.2}×", format!("close → resumed/pong p{q}"), fmt_ms(gv), fmt_ms(bv), gv / bv);
    }
    let failed: Vec<String> = gateway.resume_failed.iter().map(|(reason, n)| format!("{reason}={n}")).collect();
    report
        .trend("reconnect_resume", gateway.reconnect.clone())
        .trend("bare_reconnect", bare)
        .count("clients_moved", gateway.moved)
        .count("resumed", gateway.resumed)
        .count("resume_failed", gateway.resume_failed.values().sum())
        .count("chats_sent", gateway.chats_sent)
        .count("chats_ended", gateway.chats_ended)
        .count("chat_retries", gateway.chat_retries)
        .count("ack_overdue_resends", gateway.ack_overdue_resends)
        .count("frames_lost", gateway.frames_lost())
        .count("frames_repeated", gateway.frames_repeated())
        .count("errors", gateway.errors)
        .text(
            "lost/repeated detail",
            format!(
                "seq gaps {} · chats incomplete {} · chats unended {} · seq repeats {} · repeated chat_end {}",
                gateway.seq_lost, gateway.incomplete, gateway.unended, gateway.seq_repeated, gateway.repeated_ends
            ),
        )
        .text("p99 ratio gateway/bare", format!("{:.2}× (target ≤ {}×)", gp99 / bp99, args.max_ratio));
    if !failed.is_empty() {
        report.text("resume_failed reasons", failed.join(" "));
    }
    if let Some(error) = &gateway.first_error {
        report.text("first_error", error.clone());
    }
    report
        .threshold("frames_lost", Rule::CountAtMost { max: 0 })
        .threshold("frames_repeated", Rule::CountAtMost { max: 0 })
        .threshold("reconnect_resume", Rule::PercentileBelow { p: 99.0, limit_ms: bp99 * args.max_ratio });
    println!("{}", report.render());
    Ok(report.passed())
}

/// SIGTERM to `pid` (the gateway's graceful drain).
fn drain(pid: u32) -> Result<(), String> {
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().map_err(|e| format!("kill: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("kill -TERM {pid} failed ({status})"))
}

async fn gateway_failover(args: &FailoverArgs, urls: [String; 2], tokens: &Tokens) -> Result<Tally, String> {
    // Users of this run only: a chat id of an earlier run would be answered from the store.
    let salt = run_salt();
    let users: Vec<String> = (0..args.clients).map(|n| run_user(salt, n)).collect();
    let tokens = tokens_for(tokens, &users).await?;
    eprintln!("== failover: {} clients on {}, then {} drained and {}", args.clients, urls[0], urls[0], urls[1]);
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start("failover", progress.clone());
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (stop_tx, stop) = watch::channel(false);
    let urls = Arc::new(urls);
    let think = Duration::from_millis(args.think_ms);
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(n, token)| {
            let (urls, gate, progress, stop) = (urls.clone(), gate.clone(), progress.clone(), stop.clone());
            tokio::spawn(async move {
                let connected = {
                    let _permit = gate.acquire_owned().await;
                    connect_v2(&urls[0], &token).await
                };
                let mut tally = Tally::default();
                match connected {
                    Ok((socket, welcome)) => {
                        Progress::bump(&progress.connected);
                        let mut vu = Client::new(n, token, urls, socket, &welcome, progress);
                        if let Err(error) = vu.chat_until(stop, think).await {
                            vu.tally.fail(error);
                        }
                        tally = vu.finish();
                    }
                    Err(error) => {
                        Progress::bump(&progress.failed);
                        tally.fail(format!("connect: {error}"));
                    }
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
    eprintln!("== draining node A (SIGTERM to pid {})", args.drain_pid);
    let drained = drain(args.drain_pid);
    if drained.is_ok() {
        tokio::time::sleep(Duration::from_secs(args.after_secs)).await;
    }
    let _ = stop_tx.send(true);
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.unwrap_or_else(|e| Tally { errors: 1, first_error: Some(e.to_string()), ..Tally::default() }));
    }
    drained?;
    Ok(tally)
}

/// One virtual user: its socket, the stream it is on, and what it saw.
struct Client {
    n: usize,
    token: String,
    urls: Arc<[String; 2]>,
    node: usize,
    socket: Socket,
    stream_id: String,
    epoch: Option<String>,
    ledger: SeqLedger,
    book: ChatBook,
    pending: Option<String>,
    /// The open chat's `ack` (or a frame of its answer) arrived: the server has it.
    acked: bool,
    /// When to send the open chat again after a retryable error, or when its ack is overdue.
    resend_at: Option<tokio::time::Instant>,
    /// `resend_at` is for an overdue ack.
    resend_for_ack: bool,
    chats: u64,
    tally: Tally,
    progress: Arc<Progress>,
}

impl Client {
    fn new(n: usize, token: String, urls: Arc<[String; 2]>, socket: Socket, welcome: &Value, progress: Arc<Progress>) -> Self {
        let mut ledger = SeqLedger::default();
        if let Some(seq) = welcome["seq"].as_u64() {
            ledger.observe(seq);
        }
        let stream_id = welcome["stream_id"].as_str().unwrap_or_default().to_string();
        let epoch = welcome["epoch"].as_str().map(str::to_string);
        let (book, tally) = (ChatBook::default(), Tally::default());
        Self {
            n,
            token,
            urls,
            node: 0,
            socket,
            stream_id,
            epoch,
            ledger,
            book,
            pending: None,
            acked: false,
            resend_at: None,
            resend_for_ack: false,
            chats: 0,
            tally,
            progress,
        }
    }

    /// Chats (one at a time, `think` apart) until `stop`, then waits for the open chat's end.
    async fn chat_until(&mut self, mut stop: watch::Receiver<bool>, think: Duration) -> Result<(), String> {
        let mut next_chat = tokio::time::Instant::now() + think.mul_f64((self.n % 97) as f64 / 97.0);
        let mut chat_deadline = tokio::time::Instant::now();
        loop {
            let stopping = *stop.borrow();
            if stopping && self.pending.is_none() {
                let _ = futures_util::SinkExt::close(&mut self.socket).await;
                return Ok(());
            }
            let wake = match (&self.pending, self.resend_at) {
                (Some(_), Some(at)) => at.min(chat_deadline),
                (Some(_), None) => chat_deadline,
                (None, _) => next_chat,
            };
            tokio::select! {
                biased;
                read = next_v2(&mut self.socket) => match read {
                    Ok(frame) => {
                        if self.on_frame(&frame)? {
                            next_chat = tokio::time::Instant::now() + think;
                        }
                    }
                    Err(error) if should_reconnect_on(&error) => {
                        self.fail_over(error).await?;
                        chat_deadline = tokio::time::Instant::now() + CHAT_TIMEOUT;
                    }
                    Err(error) => return Err(String::from(error)),
                },
                _ = tokio::time::sleep_until(wake) => {
                    match (self.pending.clone(), self.resend_at.filter(|&at| at <= wake)) {
                        (Some(id), Some(_)) => {
                            self.resend_at = None;
                            if std::mem::take(&mut self.resend_for_ack) {
                                self.tally.ack_overdue_resends += 1;
                            } else {
                                self.tally.chat_retries += 1;
                            }
                            self.send_chat(Some(id)).await?;
                        }
                        (Some(id), None) => return Err(format!("chat {id} not ended within {} s", CHAT_TIMEOUT.as_secs())),
                        (None, _) if !stopping => {
                            self.send_chat(None).await?;
                            chat_deadline = tokio::time::Instant::now() + CHAT_TIMEOUT;
                        }
                        (None, _) => {}
                    }
                },
                _ = stop.changed(), if !stopping && self.pending.is_none() => {}
            }
        }
    }

    /// Sends a new chat, or `again` (the unanswered one, same id).
    async fn send_chat(&mut self, again: Option<String>) -> Result<(), String> {
        let id = again.unwrap_or_else(|| {
            self.chats += 1;
            self.tally.chats_sent += 1;
            Progress::bump(&self.progress.sent);
            format!("failover-{}-{}", self.n, self.chats)
        });
        self.book.sent(&id);
        client::send_json(&mut self.socket, &json!({"type": "chat", "id": id, "message": "hello"})).await?;
        self.pending = Some(id);
        self.acked = false;
        Ok(())
    }

    /// Books one frame; `Ok(true)` when it ended the open chat. A retryable error for the open
    /// chat (e.g. "still being answered on another node") schedules it again, same id.
    fn on_frame(&mut self, frame: &Value) -> Result<bool, String> {
        if let Some(seq) = frame["seq"].as_u64() {
            self.ledger.observe(seq);
        }
        let id = frame["id"].as_str().unwrap_or_default();
        if !self.acked && self.pending.as_deref() == Some(id) && matches!(frame["type"].as_str(), Some("ack" | "chat_delta" | "chat_end")) {
            self.acked = true;
            self.resend_at = None;
            self.resend_for_ack = false;
        }
        match frame["type"].as_str() {
            Some("chat_delta") => self.book.delta(id, frame["delta"].as_str().unwrap_or_default()),
            Some("chat_end") => {
                self.book.end(id, frame["message"].as_str().unwrap_or_default());
                if self.pending.as_deref() == Some(id) {
                    self.pending = None;
                    Progress::bump(&self.progress.received);
                    return Ok(true);
                }
            }
            // The error that precedes the drain's 1012; the close comes next.
            Some("error") if frame["error_code"] == "SERVICE_RESTART" => {}
            Some("error") if frame["retryable"] == true && self.pending.as_deref() == Some(id) => {
                let jitter = Duration::from_millis(SplitMix64::from_clock(self.n as u64).next_u64() % 500);
                self.resend_at = Some(tokio::time::Instant::now() + RETRY_AFTER + jitter);
                self.resend_for_ack = false;
            }
            Some("error") => return Err(format!("error frame {frame}")),
            _ => {}
        }
        Ok(false)
    }

    /// Reconnects to the other node, resumes, and books the outcome and its time.
    async fn fail_over(&mut self, ended: WsError) -> Result<(), String> {
        let closed = Instant::now();
        let other = 1 - self.node;
        let (mut backoff, mut rng) = (Backoff::standard(), SplitMix64::from_clock(self.n as u64));
        let deadline = Instant::now() + RECONNECT_DEADLINE;
        let (url, token) = (self.urls[other].clone(), self.token.clone());
        let ((socket, welcome), _) = retry_connect(deadline, &mut backoff, &mut rng, || connect_v2(&url, &token))
            .await
            .map_err(|gave_up| format!("{} ({gave_up})", String::from(ended)))?;
        (self.socket, self.node) = (socket, other);
        self.tally.moved += 1;
        let mut fresh = SeqLedger::default();
        if let Some(seq) = welcome["seq"].as_u64() {
            fresh.observe(seq);
        }
        let resume = json!({"type": "resume", "stream_id": self.stream_id, "epoch": self.epoch, "last_seq": self.ledger.last_seq()});
        client::send_json(&mut self.socket, &resume).await?;
        self.ledger.start_replay();
        loop {
            let frame = tokio::time::timeout(CHAT_TIMEOUT, next_v2(&mut self.socket))
                .await
                .map_err(|_| "no resumed/resume_failed in time".to_string())?
                .map_err(String::from)?;
            match frame["type"].as_str() {
                Some("resumed") => {
                    self.ledger.observe(frame["seq"].as_u64().unwrap_or(0));
                    self.ledger.resumed();
                    self.tally.resumed += 1;
                    self.tally.reconnect.record(closed.elapsed());
                    // Sent but maybe never read by the drained node: its ack may still be on
                    // the way (forwarded); if it does not come, send the chat again, same id.
                    if self.pending.is_some() && !self.acked {
                        self.resend_at = Some(tokio::time::Instant::now() + ACK_WAIT);
                        self.resend_for_ack = true;
                    }
                    return Ok(());
                }
                Some("resume_failed") => {
                    self.tally.reconnect.record(closed.elapsed());
                    let reason = frame["reason"].as_str().unwrap_or("?").to_string();
                    *self.tally.resume_failed.entry(reason).or_default() += 1;
                    fresh.observe(frame["seq"].as_u64().unwrap_or(0));
                    let old = std::mem::replace(&mut self.ledger, fresh);
                    (self.tally.seq_lost, self.tally.seq_repeated) =
                        (self.tally.seq_lost + old.lost, self.tally.seq_repeated + old.repeated);
                    self.stream_id = frame["stream_id"].as_str().unwrap_or_default().to_string();
                    self.epoch = welcome["epoch"].as_str().map(str::to_string);
                    if let Some(id) = self.pending.take() {
                        self.send_chat(Some(id)).await?;
                    }
                    return Ok(());
                }
                _ => {
                    self.on_frame(&frame)?;
                }
            }
        }
    }

    fn finish(mut self) -> Tally {
        self.tally.seq_lost += self.ledger.lost;
        self.tally.seq_repeated += self.ledger.repeated;
        self.tally.incomplete = self.book.incomplete;
        self.tally.repeated_ends = self.book.repeated_ends;
        self.tally.unended = self.book.unended();
        self.tally.chats_ended = self.book.ended();
        self.tally
    }
}
