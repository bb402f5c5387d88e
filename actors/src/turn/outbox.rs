//! The turn outbox: conversation writes that could not be stored (the database was unavailable)
//! wait here, in order, until the flusher stores them. With a journal (`PAM_OUTBOX_JOURNAL`)
//! every write is also appended there (fsync) before it counts as accepted, so a write in the
//! outbox survives a crash, a shutdown and an overflow: a full queue spills to the journal
//! instead of dropping anything, and the journal is replayed (idempotently: every write is keyed
//! by its turn) at the next start or once the queue has drained, then cleared.
//! A leaf of the turn pipeline: imports the ports.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use pam_protocol::{SessionId, UserId};

use crate::metrics_names::{OUTBOX_JOURNALED_TOTAL, OUTBOX_SPILLED_TOTAL, STORAGE_DEGRADED, TURNS_DROPPED_TOTAL, TURNS_PENDING};
use crate::ports::{AnswerRecord, OutboxJournal, PendingWrite, TurnKey};

/// How long writes must fail before health says `degraded`.
pub(crate) const DEGRADED_AFTER: Duration = Duration::from_secs(5);

/// Whether an accepted write survives a crash of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the journal (fsync'd).
    Journaled,
    /// In memory only (no journal configured, or the journal could not be written).
    MemoryOnly,
    /// Not kept at all: memory was full and there is no journal; the oldest write was dropped.
    Dropped,
}

/// What the outbox holds for one turn (a repeat of its id must not be answered twice).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingTurn {
    pub user_message: bool,
    pub answer: Option<AnswerRecord>,
}

#[derive(Default)]
struct State {
    /// Waiting writes, oldest first, each with its number (so the flusher removes exactly the
    /// write it stored, whatever happened to the queue meanwhile).
    queue: VecDeque<(u64, PendingWrite)>,
    next_seq: u64,
    /// Writes waiting in `queue` per (user, session): a turn of a pair with none goes straight
    /// to the database; one with some waits its place behind them.
    per_pair: HashMap<(UserId, SessionId), usize>,
    /// The journal holds writes that are not in `queue` (spilled, or left by an earlier run).
    spilled: bool,
    /// Bumped by every spill, so a replay clears `spilled` only if nothing spilled meanwhile.
    spills: u64,
    /// The journal holds anything at all.
    journal_dirty: bool,
    failing_since: Option<Instant>,
}

impl State {
    fn enqueue(&mut self, write: PendingWrite) {
        self.next_seq += 1;
        *self.per_pair.entry(pair(write.key())).or_default() += 1;
        self.queue.push_back((self.next_seq, write));
        metrics::gauge!(TURNS_PENDING).set(self.queue.len() as f64);
    }

    fn pop_front(&mut self) -> Option<PendingWrite> {
        let (_, write) = self.queue.pop_front()?;
        let key = pair(write.key());
        if let Some(count) = self.per_pair.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.per_pair.remove(&key);
            }
        }
        metrics::gauge!(TURNS_PENDING).set(self.queue.len() as f64);
        Some(write)
    }
}

fn pair(key: &TurnKey) -> (UserId, SessionId) {
    (key.user.clone(), key.session.clone())
}

/// A bounded FIFO of writes waiting to be stored, backed by an optional journal.
pub struct TurnOutbox {
    capacity: usize,
    state: Mutex<State>,
    /// Serialises journal I/O (append + fsync, clear) without holding `state`, which every turn
    /// reads: an fsync must never stall the runtime's workers. Lock order: `journal_io`, then `state`.
    journal_io: Mutex<()>,
    journal: Option<Arc<dyn OutboxJournal>>,
}

impl TurnOutbox {
    /// An outbox without a journal: a full queue drops its oldest write.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), state: Mutex::new(State::default()), journal_io: Mutex::new(()), journal: None }
    }

    /// An outbox backed by `journal`; what an earlier run left there is replayed by the flusher.
    pub fn with_journal(capacity: usize, journal: Arc<dyn OutboxJournal>) -> Self {
        let left = match journal.read_all() {
            Ok(writes) => writes.len(),
            Err(error) => {
                tracing::error!(journal = journal.location(), %error, "could not read the outbox journal; its writes are not replayed");
                0
            }
        };
        if left > 0 {
            tracing::warn!(
                journal = journal.location(),
                writes = left,
                "the outbox journal holds writes from an earlier run; replaying them"
            );
        }
        let state = State { spilled: left > 0, journal_dirty: left > 0, ..State::default() };
        Self { capacity: capacity.max(1), state: Mutex::new(state), journal_io: Mutex::new(()), journal: Some(journal) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_io(&self) -> std::sync::MutexGuard<'_, ()> {
        self.journal_io.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a write at the back (journaled first when there is a journal). Blocking: it may
    /// fsync; async callers use [`TurnOutbox::enqueue`].
    pub fn enqueue_blocking(&self, write: impl Into<PendingWrite>) -> Durability {
        self.enqueue_all_blocking(vec![write.into()])
    }

    /// Queues writes in order with one journal append (one fsync) for all of them.
    pub fn enqueue_all_blocking(&self, writes: Vec<PendingWrite>) -> Durability {
        let _io = self.lock_io();
        let mut durability = Durability::MemoryOnly;
        if let Some(journal) = &self.journal {
            match journal.append(&writes) {
                Ok(()) => {
                    metrics::counter!(OUTBOX_JOURNALED_TOTAL).increment(writes.len() as u64);
                    durability = Durability::Journaled;
                }
                Err(error) => tracing::error!(journal = journal.location(), %error, "could not append to the outbox journal"),
            }
        }
        let mut state = self.lock();
        if durability == Durability::Journaled {
            state.journal_dirty = true;
        }
        for write in writes {
            if state.queue.len() >= self.capacity {
                if durability == Durability::Journaled {
                    // Kept in the journal only; replayed once the queue has drained.
                    state.spilled = true;
                    state.spills += 1;
                    metrics::counter!(OUTBOX_SPILLED_TOTAL).increment(1);
                    continue;
                }
                state.pop_front();
                metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
                if state.journal_dirty {
                    // The dropped write may be in the journal from an earlier append: replay it.
                    state.spilled = true;
                    state.spills += 1;
                } else {
                    tracing::error!(capacity = self.capacity, "turn outbox full and no journal: dropped the oldest unsaved write");
                    durability = Durability::Dropped;
                }
            }
            state.enqueue(write);
        }
        durability
    }

    /// [`TurnOutbox::enqueue_blocking`] off the async runtime's threads (the journal fsyncs).
    pub async fn enqueue(self: &Arc<Self>, write: impl Into<PendingWrite>) -> Durability {
        self.enqueue_all(vec![write.into()]).await
    }

    /// [`TurnOutbox::enqueue_all_blocking`] off the async runtime's threads.
    pub async fn enqueue_all(self: &Arc<Self>, writes: Vec<PendingWrite>) -> Durability {
        if self.journal.is_none() {
            return self.enqueue_all_blocking(writes);
        }
        let outbox = self.clone();
        match tokio::task::spawn_blocking(move || outbox.enqueue_all_blocking(writes)).await {
            Ok(durability) => durability,
            Err(error) => {
                tracing::error!(%error, "queueing writes in the outbox failed");
                Durability::Dropped
            }
        }
    }

    /// The oldest waiting write and its number, left in place until [`TurnOutbox::remove`] (so a
    /// flush cancelled mid-write loses nothing).
    pub fn peek(&self) -> Option<(u64, PendingWrite)> {
        self.lock().queue.front().cloned()
    }

    /// Removes write `seq` once it is stored (or refused for good) — only if it is still the
    /// oldest (a full queue without a journal may have dropped it meanwhile).
    pub fn remove(&self, seq: u64) {
        let mut state = self.lock();
        if state.queue.front().is_some_and(|(front, _)| *front == seq) {
            state.pop_front();
        }
    }

    /// What waits here for `key` (the queue only; spilled writes are found after their replay).
    pub fn find(&self, key: &TurnKey) -> Option<PendingTurn> {
        let state = self.lock();
        if !state.per_pair.contains_key(&pair(key)) {
            return None;
        }
        let mut found: Option<PendingTurn> = None;
        for (_, write) in state.queue.iter().filter(|(_, w)| w.key() == key) {
            let turn = found.get_or_insert_with(PendingTurn::default);
            match write {
                PendingWrite::User(_) => turn.user_message = true,
                PendingWrite::Answer(answer) => turn.answer = Some(answer.clone()),
                PendingWrite::Unanswered(_) => {}
            }
        }
        found
    }

    /// Whether a write for `key`'s (user, session) must wait its place here rather than go
    /// straight to the database: writes of that pair wait already, writes are failing, or some
    /// spilled to the journal (their pairs are unknown until the replay).
    pub fn must_queue(&self, key: &TurnKey) -> bool {
        let state = self.lock();
        state.spilled || state.failing_since.is_some() || state.per_pair.contains_key(&pair(key))
    }

    /// Writes waiting in memory.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether writes wait in the journal only (the queue was full).
    pub fn spilled(&self) -> bool {
        self.lock().spilled
    }

    /// Nothing waits: neither in memory nor spilled to the journal.
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.queue.is_empty() && !state.spilled
    }

    /// With the queue drained and writes spilled: the journal's writes to replay and the spill
    /// count they cover.
    pub fn journal_to_replay(&self) -> Option<(Vec<PendingWrite>, u64)> {
        let journal = self.journal.as_ref()?;
        let spills = {
            let state = self.lock();
            if !state.queue.is_empty() || !state.spilled {
                return None;
            }
            state.spills
        };
        match journal.read_all() {
            Ok(writes) => Some((writes, spills)),
            Err(error) => {
                tracing::error!(journal = journal.location(), %error, "could not read the outbox journal");
                None
            }
        }
    }

    /// After a replay that covered spill count `replayed` (from [`TurnOutbox::journal_to_replay`];
    /// `None` when none was needed): nothing spilled since means every journal-only write is
    /// stored, so the journal is only a copy of the queue; once the queue is empty too it is cleared.
    pub fn settle_journal(&self, replayed: Option<u64>) {
        let Some(journal) = &self.journal else { return };
        let _io = self.lock_io();
        let mut state = self.lock();
        if replayed.is_some_and(|spills| spills == state.spills) {
            state.spilled = false;
        }
        if !state.queue.is_empty() || state.spilled || !state.journal_dirty {
            return;
        }
        match journal.clear() {
            Ok(()) => state.journal_dirty = false,
            Err(error) => tracing::error!(journal = journal.location(), %error, "could not clear the outbox journal"),
        }
    }

    /// Where the journal is, if there is one.
    pub fn journal_location(&self) -> Option<String> {
        self.journal.as_ref().map(|j| j.location())
    }

    /// A conversation write failed because the database was unavailable.
    pub fn write_failed(&self) {
        let mut state = self.lock();
        state.failing_since.get_or_insert_with(Instant::now);
    }

    /// A conversation write succeeded: the database takes writes again.
    pub fn write_succeeded(&self) {
        let mut state = self.lock();
        if state.failing_since.take().is_some() {
            metrics::gauge!(STORAGE_DEGRADED).set(0.0);
        }
    }

    /// How long writes have been failing, when they have been failing for [`DEGRADED_AFTER`] or
    /// more; also sets the `pam_storage_degraded` gauge.
    pub fn degraded_for(&self) -> Option<Duration> {
        let failing = self.lock().failing_since.map(|since| since.elapsed()).filter(|f| *f >= DEGRADED_AFTER);
        metrics::gauge!(STORAGE_DEGRADED).set(if failing.is_some() { 1.0 } else { 0.0 });
        failing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::UserMessage;

    pub(crate) fn user_write(id: &str) -> PendingWrite {
        PendingWrite::User(UserMessage {
            key: TurnKey {
                user: UserId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
                session: SessionId::default_session(),
                client_msg_id: id.into(),
            },
            text: "hi".into(),
            received_at: chrono::Utc::now(),
            node: "n1".into(),
            boot: None,
        })
    }

    /// A journal in memory, for the outbox's own tests.
    #[derive(Default)]
    struct MemoryJournal(Mutex<Vec<PendingWrite>>);

    impl OutboxJournal for MemoryJournal {
        fn append(&self, writes: &[PendingWrite]) -> std::io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(writes);
            Ok(())
        }
        fn read_all(&self) -> std::io::Result<Vec<PendingWrite>> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn clear(&self) -> std::io::Result<()> {
            self.0.lock().unwrap().clear();
            Ok(())
        }
        fn location(&self) -> String {
            "memory".into()
        }
    }

    fn ids(outbox: &TurnOutbox) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some((seq, write)) = outbox.peek() {
            ids.push(write.key().client_msg_id.clone());
            outbox.remove(seq);
        }
        ids
    }

    #[test]
    fn without_a_journal_a_full_outbox_drops_the_oldest() {
        let outbox = TurnOutbox::new(2);
        assert_eq!(outbox.enqueue_blocking(user_write("1")), Durability::MemoryOnly);
        outbox.enqueue_blocking(user_write("2"));
        assert_eq!(outbox.enqueue_blocking(user_write("3")), Durability::Dropped);
        assert_eq!(ids(&outbox), ["2", "3"]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn with_a_journal_a_full_outbox_spills_and_replays_everything_before_clearing() {
        let journal = Arc::new(MemoryJournal::default());
        let outbox = TurnOutbox::with_journal(2, journal.clone());
        for id in ["1", "2", "3"] {
            assert_eq!(outbox.enqueue_blocking(user_write(id)), Durability::Journaled);
        }
        assert_eq!(ids(&outbox), ["1", "2"], "the third waits in the journal only");
        assert!(!outbox.is_empty(), "a spilled write still waits");
        let (writes, spills) = outbox.journal_to_replay().expect("a replay is due");
        assert_eq!(writes.len(), 3);
        outbox.enqueue_blocking(user_write("4"));
        outbox.settle_journal(Some(spills));
        assert!(!outbox.spilled(), "nothing spilled during the replay: the journal only copies the queue now");
        assert_eq!(journal.read_all().unwrap().len(), 4, "kept while the queue still holds a write");
        assert_eq!(ids(&outbox), ["4"]);
        assert!(outbox.journal_to_replay().is_none(), "no second replay is needed");
        outbox.settle_journal(None);
        assert!(journal.read_all().unwrap().is_empty());
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_write_dropped_meanwhile_is_not_taken_for_the_one_the_flusher_stored() {
        let outbox = TurnOutbox::new(1);
        outbox.enqueue_blocking(user_write("1"));
        let (stored, _) = outbox.peek().unwrap();
        outbox.enqueue_blocking(user_write("2"));
        outbox.remove(stored);
        assert_eq!(ids(&outbox), ["2"], "write 2 waits on, unstored");
    }

    #[test]
    fn writes_of_a_pair_with_nothing_waiting_go_straight_to_the_database() {
        let outbox = TurnOutbox::new(10);
        let key = user_write("1").key().clone();
        assert!(!outbox.must_queue(&key));
        outbox.enqueue_blocking(user_write("1"));
        assert!(outbox.must_queue(&key), "behind the waiting write of the same pair");
        let mut other = key.clone();
        other.session = SessionId::parse("trip-b").unwrap();
        assert!(!outbox.must_queue(&other), "another conversation is not held up");
        outbox.write_failed();
        assert!(outbox.must_queue(&other), "while writes fail, everything queues");
        outbox.write_succeeded();
        ids(&outbox);
        assert!(!outbox.must_queue(&key));
    }

    #[test]
    fn an_earlier_runs_journal_is_replayed_and_a_pending_turn_is_found() {
        let journal = Arc::new(MemoryJournal::default());
        journal.append(&[user_write("old")]).unwrap();
        let outbox = TurnOutbox::with_journal(10, journal);
        assert!(!outbox.is_empty());
        assert_eq!(outbox.journal_to_replay().unwrap().0.len(), 1);
        outbox.enqueue_blocking(user_write("new"));
        let key = user_write("new").key().clone();
        assert_eq!(outbox.find(&key), Some(PendingTurn { user_message: true, answer: None }));
    }
}
