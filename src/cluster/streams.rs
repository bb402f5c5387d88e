//! v2 streams on Redis (`StreamStore`), so a client drained from one node resumes on another:
//! `{p}:v2s:{id}` is a Redis stream of the replayable frames, one entry per writer round (entry id
//! `{last seq}-1`, fields `p` the replayable seq before its first frame, `s` its frames' seqs
//! comma-separated and `f` their JSON texts newline-separated; `MINID ~` keeps the ring's frame
//! cap in seqs) and `{p}:v2s:{id}:meta` a hash (user, epoch, holder `node` + `inst`, `last` seq,
//! `lastr` last replayable seq, `t:{id}` per open turn); both expire a resume window after the
//! last write.
//!
//! The socket path never waits for Redis: `write` queues (bounded) for ONE writer task per node,
//! which collects for `LINGER` and sends what waits as `STREAM_APPEND_BATCH` script calls, in
//! order per stream. A full queue or a failed batch drops
//! frames (counted; one log line when writes start and stop failing): resume then works from this
//! node's own ring, and a reader elsewhere sees the hole through `p`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::LuaInterface;
use fred::types::Value;
use pam_actors::metrics_names::{STREAM_STORE_DEGRADED, STREAM_WRITES_TOTAL};
use pam_actors::{
    BoxFuture, Claim, ClaimedStream, Orphans, ResumeLimits, SharedUnavailable, StoredFrame, StreamStore, StreamWrite, TurnMark,
};
use pam_protocol::UserId;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{RedisShared, scripts};

/// Writes waiting for the writer: a round's worth (`LINGER`) at ~100 000 frames/s (about 5 MB of
/// frames at most).
const QUEUE: usize = 32_768;
/// How long the writer collects writes before a call: a stream's frames of that time go to Redis
/// as one entry (a streaming answer gives ~6 at 30 tokens/s), which is what keeps Redis' work per
/// token small. Frames reach the client at once; only their copy in Redis is this much later (a
/// drain flushes it; a resume elsewhere while the writer lives waits for it, see `CATCH_UP_*`).
const LINGER: Duration = Duration::from_millis(200);
/// Streams written per script call.
const STREAMS_PER_CALL: usize = 64;

enum Job {
    Write(StreamWrite),
    /// Answered once every write queued before it was tried.
    Flush(oneshot::Sender<()>),
}

/// This node's stream store.
pub struct RedisStreamStore {
    shared: Arc<RedisShared>,
    queue: mpsc::Sender<Job>,
    /// Wakes the writer before its round is over (a stream opened, a flush).
    urgent: Arc<Notify>,
    ttl_ms: String,
    /// A full queue was logged (once, until it drains).
    full_logged: AtomicBool,
}

impl RedisStreamStore {
    /// The store, and its writer task (runs until the store is dropped; aborted at shutdown after
    /// the final `flush`).
    pub fn start(shared: Arc<RedisShared>, limits: ResumeLimits) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let ttl_ms = limits.ttl.as_millis().max(1).to_string();
        metrics::gauge!(STREAM_STORE_DEGRADED).set(0.0);
        let writer = Writer {
            shared: shared.clone(),
            max_frames: limits.max_frames.to_string(),
            ttl_ms: ttl_ms.clone(),
            sha: None,
            degraded: false,
        };
        let urgent = Arc::new(Notify::new());
        let task = tokio::spawn(writer.run(jobs, urgent.clone()));
        (Arc::new(Self { shared, queue, urgent, ttl_ms, full_logged: AtomicBool::new(false) }), task)
    }
}

/// Stream ids are the gateway's own (32 hex digits); anything else is no stream of ours.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl RedisShared {
    fn stream_keys(&self, id: &str) -> Vec<String> {
        vec![self.key(&format!("v2s:{id}:meta")), self.key(&format!("v2s:{id}"))]
    }
}

impl StreamStore for RedisStreamStore {
    fn write(&self, write: StreamWrite) {
        let open = write.open;
        match self.queue.try_send(Job::Write(write)) {
            Ok(()) => {
                // A new stream is known to the store at once: a resume elsewhere that finds no
                // stream fails, while one that finds it behind waits for the rest.
                if open {
                    self.urgent.notify_one();
                }
                if self.full_logged.load(Ordering::Relaxed) {
                    self.full_logged.store(false, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(STREAM_WRITES_TOTAL, "outcome" => "dropped").increment(1);
                if !self.full_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "v2 stream writes to Redis queue up faster than Redis takes them; frames are dropped from Redis (resume elsewhere may be too_old)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn holds<'a>(&'a self, stream: &'a str, inst: u64) -> BoxFuture<'a, Result<Option<bool>, SharedUnavailable>> {
        Box::pin(async move {
            if !valid_id(stream) {
                return Ok(None);
            }
            let keys = self.shared.stream_keys(stream);
            let holder: Vec<Option<String>> =
                self.shared.streams(self.shared.streams_client.eval(scripts::STREAM_HOLDER, vec![keys[0].clone()], ())).await?;
            Ok(match holder.as_slice() {
                [Some(node), Some(held)] => Some(node == self.shared.node() && *held == inst.to_string()),
                _ => None,
            })
        })
    }

    fn claim<'a>(
        &'a self,
        stream: &'a str,
        user: &'a UserId,
        epoch: Option<&'a str>,
        last_seq: u64,
        inst: u64,
    ) -> BoxFuture<'a, Result<Claim, SharedUnavailable>> {
        Box::pin(async move {
            if !valid_id(stream) {
                return Ok(Claim::Unknown);
            }
            let shared = &self.shared;
            let args = vec![
                user.to_string(),
                epoch.unwrap_or_default().to_string(),
                last_seq.to_string(),
                shared.node().to_string(),
                inst.to_string(),
                shared.prefix.clone(),
                self.ttl_ms.clone(),
                stream.to_string(),
                shared.boot.clone(),
            ];
            let answer: Vec<Value> =
                shared.streams(shared.streams_client.eval(scripts::STREAM_CLAIM, shared.stream_keys(stream), args)).await?;
            Ok(parse_claim(answer))
        })
    }

    fn orphans<'a>(&'a self, stream: &'a str, node: &'a str, boot: &'a str) -> BoxFuture<'a, Result<Orphans, SharedUnavailable>> {
        Box::pin(async move {
            if !valid_id(stream) {
                return Ok(Orphans { holder_alive: false, open_turns: Vec::new() });
            }
            let shared = &self.shared;
            let args = vec![shared.prefix.clone(), node.to_string(), boot.to_string()];
            let keys = vec![shared.stream_keys(stream)[0].clone()];
            let answer: Vec<Value> = shared.streams(shared.streams_client.eval(scripts::STREAM_ORPHANS, keys, args)).await?;
            let open_turns = answer.get(1).cloned().map(Value::into_array).unwrap_or_default().iter().map(|v| text(Some(v))).collect();
            Ok(Orphans { holder_alive: text(answer.first()) == "1", open_turns })
        })
    }

    fn flush(&self, within: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let (done, flushed) = oneshot::channel();
            let waited = tokio::time::timeout(within, async {
                let queued = self.queue.send(Job::Flush(done)).await.is_ok();
                self.urgent.notify_one();
                queued && flushed.await.is_ok()
            });
            waited.await.unwrap_or(false)
        })
    }
}

fn text(value: Option<&Value>) -> String {
    value.and_then(|v| v.as_str().map(|s| s.into_owned())).unwrap_or_default()
}

fn number(value: Option<&Value>) -> u64 {
    text(value).parse().unwrap_or(0)
}

/// The claim script's answer (layout in `scripts::STREAM_CLAIM`).
fn parse_claim(answer: Vec<Value>) -> Claim {
    match text(answer.first()).as_str() {
        "epoch_changed" => Claim::EpochChanged,
        "ahead" => Claim::Ahead { holder_alive: text(answer.get(1)) == "1" },
        "ok" => {
            let strings = |at: usize| -> Vec<String> {
                answer.get(at).cloned().map(Value::into_array).unwrap_or_default().iter().map(|v| text(Some(v))).collect()
            };
            let frames = strings(7)
                .chunks_exact(3)
                .map(|f| StoredFrame { seq: f[0].parse().unwrap_or(0), prev: f[1].parse().unwrap_or(0), text: f[2].clone() })
                .collect();
            Claim::Claimed(ClaimedStream {
                epoch: text(answer.get(1)),
                last_seq: number(answer.get(2)),
                last_replayable: number(answer.get(3)),
                previous_node: text(answer.get(4)),
                previous_boot: text(answer.get(8)),
                previous_alive: text(answer.get(5)) == "1",
                open_turns: strings(6),
                frames,
            })
        }
        _ => Claim::Unknown,
    }
}

/// The one task per node that sends stream writes to Redis.
struct Writer {
    shared: Arc<RedisShared>,
    max_frames: String,
    ttl_ms: String,
    /// `STREAM_APPEND_BATCH`'s SHA once loaded (forgotten when Redis says it no longer has it).
    sha: Option<String>,
    degraded: bool,
}

impl Writer {
    /// A round: the first write, then `LINGER` asleep (cut short by `urgent`: a stream opened or
    /// a flush is asked for), then everything queued meanwhile goes to Redis. Sleeping instead of
    /// taking each write as it comes is what keeps the writer from being woken once per frame.
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>, urgent: Arc<Notify>) {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        while let Some(first) = jobs.recv().await {
            let mut next = Some(first);
            let mut now = false;
            loop {
                while let Some(job) = next.take() {
                    match job {
                        Job::Write(write) => {
                            now |= write.open;
                            batch.push(write);
                        }
                        Job::Flush(done) => {
                            now = true;
                            flushes.push(done);
                        }
                    }
                    next = jobs.try_recv().ok();
                }
                if now {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(LINGER) => {}
                    _ = urgent.notified() => {}
                }
                now = true;
                next = jobs.try_recv().ok();
            }
            if !batch.is_empty() {
                self.send(&batch).await;
                batch.clear();
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// A round's streams go `STREAMS_PER_CALL` at a time, one call after another: neither this
    /// node's encoding nor Redis' script holds a core for long at once.
    /// After a failed call the rest of the round is given up too (counted as failed): with Redis
    /// hanging, each call would wait its full limit and the round would hold the queue for long.
    async fn send(&mut self, batch: &[StreamWrite]) {
        let groups = group_by_stream(batch);
        let mut chunks = groups.chunks(STREAMS_PER_CALL);
        for chunk in chunks.by_ref() {
            if !self.send_groups(chunk).await {
                break;
            }
        }
        let given_up: usize = chunks.flatten().map(Vec::len).sum();
        if given_up > 0 {
            metrics::counter!(STREAM_WRITES_TOTAL, "outcome" => "failed").increment(given_up as u64);
        }
    }

    /// Sends one call's streams (once more after reloading the script if Redis lost it); `false`
    /// when they could not be written.
    async fn send_groups(&mut self, groups: &[Vec<&StreamWrite>]) -> bool {
        let (keys, args) = self.script_input(groups);
        for _ in 0..2 {
            match self.try_send(&keys, &args).await {
                Ok(Some((written, forwarded))) => {
                    self.succeeded(written, forwarded);
                    return true;
                }
                Ok(None) => self.sha = None,
                Err(SharedUnavailable) => break,
            }
        }
        let writes: usize = groups.iter().map(Vec::len).sum();
        metrics::counter!(STREAM_WRITES_TOTAL, "outcome" => "failed").increment(writes as u64);
        if !self.degraded {
            self.degraded = true;
            metrics::gauge!(STREAM_STORE_DEGRADED).set(1.0);
            tracing::warn!(node = %self.shared.node(), "v2 stream writes to Redis fail: streams resume on this node only until Redis takes them again");
        }
        false
    }

    fn succeeded(&mut self, written: u64, forwarded: u64) {
        metrics::counter!(STREAM_WRITES_TOTAL, "outcome" => "forwarded").increment(forwarded);
        metrics::counter!(STREAM_WRITES_TOTAL, "outcome" => "written").increment(written);
        if self.degraded {
            self.degraded = false;
            metrics::gauge!(STREAM_STORE_DEGRADED).set(0.0);
            tracing::info!(node = %self.shared.node(), "v2 stream writes reach Redis again: streams resume on any node");
        }
    }

    /// `Ok(None)` when Redis does not know the script (loaded again on the next try).
    async fn try_send(&mut self, keys: &[String], args: &[String]) -> Result<Option<(u64, u64)>, SharedUnavailable> {
        let shared = self.shared.clone();
        let sha = match &self.sha {
            Some(sha) => sha.clone(),
            None => {
                let sha: String = shared.streams(shared.streams_client.script_load(scripts::STREAM_APPEND_BATCH)).await?;
                self.sha = Some(sha.clone());
                sha
            }
        };
        shared
            .streams(async {
                match shared.streams_client.evalsha::<(u64, u64), _, _, _>(sha, keys.to_vec(), args.to_vec()).await {
                    Ok(counts) => Ok(Some(counts)),
                    Err(error) if error.details().starts_with("NOSCRIPT") => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await
    }

    /// `STREAM_APPEND_BATCH`'s KEYS and ARGV for `groups` (layout there); a group's replayable
    /// frames packed into one entry.
    fn script_input(&self, groups: &[Vec<&StreamWrite>]) -> (Vec<String>, Vec<String>) {
        let shared = &self.shared;
        let mut keys = Vec::with_capacity(groups.len() * 2);
        let mut args =
            vec![shared.node().to_string(), self.max_frames.clone(), self.ttl_ms.clone(), shared.prefix.clone(), shared.boot.clone()];
        for group in groups {
            let (first, last) = (group[0], group[group.len() - 1]);
            keys.extend(shared.stream_keys(&first.stream));
            let replayable: Vec<(u64, &str)> = group.iter().filter_map(|w| w.text.as_deref().map(|text| (w.seq, text))).collect();
            let prev = group.iter().find(|w| w.text.is_some()).map_or(0, |w| w.prev);
            let seqs = replayable.iter().map(|(seq, _)| seq.to_string()).collect::<Vec<_>>().join(",");
            let texts = replayable.iter().map(|(_, text)| *text).collect::<Vec<_>>().join("\n");
            let (opened, closed) = turn_marks(group);
            args.extend([
                first.stream.to_string(),
                first.inst.to_string(),
                first.user.to_string(),
                first.epoch.to_string(),
                if first.open { "1" } else { "0" }.to_string(),
                first.seq.to_string(),
                last.seq.to_string(),
                prev.to_string(),
                seqs,
                texts,
                group.len().to_string(),
                opened.len().to_string(),
                closed.len().to_string(),
            ]);
            args.extend(opened);
            args.extend(closed);
        }
        (keys, args)
    }
}

/// The writes of a round by stream (and writing object), each stream's in their order.
///
/// A stream entry records only its first frame's `prev` (each later frame follows the one before
/// it), so a replayable write whose `prev` is not its group's last replayable seq — the frames
/// between were dropped (a full queue) — starts a new group, a new entry, after it: the gap stays
/// visible to a claim (`check_replay`) instead of being replayed over.
fn group_by_stream(batch: &[StreamWrite]) -> Vec<Vec<&StreamWrite>> {
    let mut groups: Vec<Vec<&StreamWrite>> = Vec::new();
    // Per stream and writer: its open group and that group's last replayable seq.
    let mut open: HashMap<(&str, u64), (usize, Option<u64>)> = HashMap::new();
    for write in batch {
        let key = (&*write.stream, write.inst);
        let gap = |(_, last): &(usize, Option<u64>)| write.text.is_some() && last.is_some_and(|last| last != write.prev);
        if open.get(&key).is_none_or(gap) {
            groups.push(Vec::new());
            open.insert(key, (groups.len() - 1, None));
        }
        let (at, last) = open.get_mut(&key).expect("opened above");
        groups[*at].push(write);
        if write.text.is_some() {
            *last = Some(write.seq);
        }
    }
    groups
}

/// The turns a group's marks leave open and closed: the last mark of a turn wins (a turn that
/// ends with a retryable error and is acked again within one round is open).
fn turn_marks(group: &[&StreamWrite]) -> (Vec<String>, Vec<String>) {
    let mut last: Vec<(&str, bool)> = Vec::new();
    for write in group {
        let (id, open) = match &write.turn {
            TurnMark::None => continue,
            TurnMark::Open(id) => (id.as_str(), true),
            TurnMark::Close(id) => (id.as_str(), false),
        };
        match last.iter_mut().find(|(seen, _)| *seen == id) {
            Some(mark) => mark.1 = open,
            None => last.push((id, open)),
        }
    }
    let (opened, closed): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, open)| *open);
    (opened.into_iter().map(|(id, _)| id.to_string()).collect(), closed.into_iter().map(|(id, _)| id.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(seq: u64, prev: u64, text: bool, turn: TurnMark) -> StreamWrite {
        StreamWrite {
            stream: Arc::from("s1"),
            inst: 7,
            user: UserId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
            epoch: Arc::from("e"),
            seq,
            prev,
            text: text.then(|| Arc::from(format!("{{\"seq\":{seq}}}"))),
            turn,
            open: false,
        }
    }

    fn seqs(groups: &[Vec<&StreamWrite>]) -> Vec<Vec<u64>> {
        groups.iter().map(|g| g.iter().map(|w| w.seq).collect()).collect()
    }

    #[test]
    fn a_round_of_one_stream_is_one_entry_when_its_frames_follow_each_other() {
        let batch = [write(5, 4, true, TurnMark::None), write(6, 5, false, TurnMark::None), write(7, 5, true, TurnMark::None)];
        assert_eq!(seqs(&group_by_stream(&batch)), vec![vec![5, 6, 7]]);
    }

    #[test]
    fn frames_dropped_inside_a_round_start_a_new_entry_so_the_gap_shows() {
        // 6 and 7 were dropped (a full queue): 8 says its previous replayable frame was 7.
        let batch = [write(5, 4, true, TurnMark::None), write(8, 7, true, TurnMark::None), write(9, 8, true, TurnMark::None)];
        assert_eq!(seqs(&group_by_stream(&batch)), vec![vec![5], vec![8, 9]]);
    }

    #[test]
    fn the_last_mark_of_a_turn_in_a_round_wins() {
        let retried = [write(5, 4, true, TurnMark::Close("t".into())), write(6, 5, true, TurnMark::Open("t".into()))];
        let refs: Vec<&StreamWrite> = retried.iter().collect();
        assert_eq!(turn_marks(&refs), (vec!["t".to_string()], vec![]));
        let ended = [write(5, 4, true, TurnMark::Open("u".into())), write(6, 5, true, TurnMark::Close("u".into()))];
        let refs: Vec<&StreamWrite> = ended.iter().collect();
        assert_eq!(turn_marks(&refs), (vec![], vec!["u".to_string()]));
    }
}
