//! The turn outbox: conversation writes that could not be stored (the database was unavailable)
//! wait here, in order, until the flusher stores them. With a journal (`PAM_OUTBOX_JOURNAL`)
//! every write is also appended there (fsync) before it counts as accepted, so a write in the
//! outbox survives a crash, a shutdown and an overflow: a full queue spills to the journal
//! instead of dropping anything, and the journal is replayed (idempotently: every write is keyed
//! by its turn) at the next start or once the queue has drained, then cleared.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::ports::{AnswerRecord, TurnKey, UnansweredMark, UserMessage};

pub const TURNS_PENDING: &str = "pam_turns_pending";
pub const TURNS_DROPPED_TOTAL: &str = "pam_turns_dropped_total";
/// Counter: writes appended to the journal (fsync'd).
pub const OUTBOX_JOURNALED_TOTAL: &str = "pam_outbox_journaled_total";
/// Counter: writes kept only in the journal because the in-memory queue was full.
pub const OUTBOX_SPILLED_TOTAL: &str = "pam_outbox_spilled_total";
/// Counter: journaled writes stored when the journal was replayed.
pub const OUTBOX_REPLAYED_TOTAL: &str = "pam_outbox_replayed_total";
/// Gauge: 1 while conversation writes have been failing for at least [`DEGRADED_AFTER`].
pub const STORAGE_DEGRADED: &str = "pam_storage_degraded";
/// How long writes must fail before health says `degraded`.
pub const DEGRADED_AFTER: Duration = Duration::from_secs(5);

/// A conversation write waiting for the database. Every variant is idempotent by its turn key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum PendingWrite {
    /// A user message, stored before model work (its v2 `ack` went out on the journal's word).
    User(UserMessage),
    /// An answer to a user message.
    Answer(AnswerRecord),
    /// A turn abandoned at shutdown.
    Unanswered(UnansweredMark),
}

impl PendingWrite {
    pub fn key(&self) -> &TurnKey {
        match self {
            PendingWrite::User(m) => &m.key,
            PendingWrite::Answer(a) => &a.key,
            PendingWrite::Unanswered(m) => &m.key,
        }
    }
}

/// Durable storage for outbox writes (a JSON-lines file in production).
pub trait OutboxJournal: Send + Sync + 'static {
    /// Appends the writes and makes them durable (fsync) before returning.
    fn append(&self, writes: &[PendingWrite]) -> std::io::Result<()>;
    /// Every write in the journal, oldest first (an unreadable line is skipped and logged).
    fn read_all(&self) -> std::io::Result<Vec<PendingWrite>>;
    /// Empties the journal.
    fn clear(&self) -> std::io::Result<()>;
    /// Where it is, for logs.
    fn location(&self) -> String;
}

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
    queue: VecDeque<PendingWrite>,
    /// The journal holds writes that are not in `queue` (spilled, or left by an earlier run).
    spilled: bool,
    /// The journal holds anything at all.
    journal_dirty: bool,
    /// Bumped by every append, so a replay only clears what it read.
    appends: u64,
    failing_since: Option<Instant>,
}

/// A bounded FIFO of writes waiting to be stored, backed by an optional journal.
pub struct TurnOutbox {
    capacity: usize,
    state: Mutex<State>,
    journal: Option<Arc<dyn OutboxJournal>>,
}

impl TurnOutbox {
    /// An outbox without a journal: a full queue drops its oldest write.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), state: Mutex::new(State::default()), journal: None }
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
        Self { capacity: capacity.max(1), state: Mutex::new(state), journal: Some(journal) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a write at the back (journaled first when there is a journal). Blocking: it may
    /// fsync; async callers use [`TurnOutbox::enqueue`].
    pub fn push(&self, write: impl Into<PendingWrite>) -> Durability {
        let write = write.into();
        let mut state = self.lock();
        let mut durability = Durability::MemoryOnly;
        if let Some(journal) = &self.journal {
            match journal.append(std::slice::from_ref(&write)) {
                Ok(()) => {
                    metrics::counter!(OUTBOX_JOURNALED_TOTAL).increment(1);
                    state.appends += 1;
                    state.journal_dirty = true;
                    durability = Durability::Journaled;
                }
                Err(error) => tracing::error!(journal = journal.location(), %error, "could not append to the outbox journal"),
            }
        }
        if state.queue.len() >= self.capacity {
            if durability == Durability::Journaled {
                // Kept in the journal only; replayed once the queue has drained.
                state.spilled = true;
                metrics::counter!(OUTBOX_SPILLED_TOTAL).increment(1);
                return durability;
            }
            state.queue.pop_front();
            metrics::counter!(TURNS_DROPPED_TOTAL).increment(1);
            tracing::error!(capacity = self.capacity, "turn outbox full and no journal: dropped the oldest unsaved write");
            durability = Durability::Dropped;
        }
        state.queue.push_back(write);
        metrics::gauge!(TURNS_PENDING).set(state.queue.len() as f64);
        durability
    }

    /// [`TurnOutbox::push`] off the async runtime's threads (the journal fsyncs).
    pub async fn enqueue(self: &Arc<Self>, write: impl Into<PendingWrite>) -> Durability {
        let write = write.into();
        if self.journal.is_none() {
            return self.push(write);
        }
        let outbox = self.clone();
        tokio::task::spawn_blocking(move || outbox.push(write)).await.unwrap_or(Durability::MemoryOnly)
    }

    /// The oldest waiting write, left in place until [`TurnOutbox::remove_front`] (so a flush
    /// cancelled mid-write loses nothing).
    pub fn peek(&self) -> Option<PendingWrite> {
        self.lock().queue.front().cloned()
    }

    /// Removes the oldest write once it is stored (or refused for good).
    pub fn remove_front(&self) {
        let mut state = self.lock();
        state.queue.pop_front();
        metrics::gauge!(TURNS_PENDING).set(state.queue.len() as f64);
    }

    /// What waits here for `key` (the queue only; spilled writes are found after their replay).
    pub fn find(&self, key: &TurnKey) -> Option<PendingTurn> {
        let state = self.lock();
        let mut found: Option<PendingTurn> = None;
        for write in state.queue.iter().filter(|w| w.key() == key) {
            let turn = found.get_or_insert_with(PendingTurn::default);
            match write {
                PendingWrite::User(_) => turn.user_message = true,
                PendingWrite::Answer(answer) => turn.answer = Some(answer.clone()),
                PendingWrite::Unanswered(_) => {}
            }
        }
        found
    }

    /// Writes waiting in memory.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Nothing waits: neither in memory nor spilled to the journal.
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.queue.is_empty() && !state.spilled
    }

    /// With the queue drained: the journal's writes to replay and the append count they cover.
    pub fn journal_to_replay(&self) -> Option<(Vec<PendingWrite>, u64)> {
        let journal = self.journal.as_ref()?;
        let appends = {
            let state = self.lock();
            if !state.queue.is_empty() || !state.spilled {
                return None;
            }
            state.appends
        };
        match journal.read_all() {
            Ok(writes) => Some((writes, appends)),
            Err(error) => {
                tracing::error!(journal = journal.location(), %error, "could not read the outbox journal");
                None
            }
        }
    }

    /// Clears the journal when everything in it is stored: the queue is empty and nothing was
    /// appended since `replayed_through` (the appends count [`TurnOutbox::journal_to_replay`]
    /// gave, or `None` when no replay was needed).
    pub fn settle_journal(&self, replayed_through: Option<u64>) {
        let Some(journal) = &self.journal else { return };
        let mut state = self.lock();
        let replay_done = match replayed_through {
            Some(appends) => state.appends == appends,
            None => !state.spilled,
        };
        if !state.queue.is_empty() || !state.journal_dirty || !replay_done {
            return;
        }
        match journal.clear() {
            Ok(()) => {
                state.spilled = false;
                state.journal_dirty = false;
            }
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
    use pam_protocol::{SessionId, UserId};

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
        while let Some(write) = outbox.peek() {
            ids.push(write.key().client_msg_id.clone());
            outbox.remove_front();
        }
        ids
    }

    #[test]
    fn without_a_journal_a_full_outbox_drops_the_oldest() {
        let outbox = TurnOutbox::new(2);
        assert_eq!(outbox.push(user_write("1")), Durability::MemoryOnly);
        outbox.push(user_write("2"));
        assert_eq!(outbox.push(user_write("3")), Durability::Dropped);
        assert_eq!(ids(&outbox), ["2", "3"]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn with_a_journal_a_full_outbox_spills_and_replays_everything_before_clearing() {
        let journal = Arc::new(MemoryJournal::default());
        let outbox = TurnOutbox::with_journal(2, journal.clone());
        for id in ["1", "2", "3"] {
            assert_eq!(outbox.push(user_write(id)), Durability::Journaled);
        }
        assert_eq!(ids(&outbox), ["1", "2"], "the third waits in the journal only");
        assert!(!outbox.is_empty(), "a spilled write still waits");
        let (writes, appends) = outbox.journal_to_replay().expect("a replay is due");
        assert_eq!(writes.len(), 3);
        outbox.push(user_write("4"));
        outbox.settle_journal(Some(appends));
        assert_eq!(journal.read_all().unwrap().len(), 4, "a write appended during the replay keeps the journal");
        assert_eq!(ids(&outbox), ["4"]);
        let (_, appends) = outbox.journal_to_replay().expect("replayed again");
        outbox.settle_journal(Some(appends));
        assert!(journal.read_all().unwrap().is_empty());
        assert!(outbox.is_empty());
    }

    #[test]
    fn an_earlier_runs_journal_is_replayed_and_a_pending_turn_is_found() {
        let journal = Arc::new(MemoryJournal::default());
        journal.append(&[user_write("old")]).unwrap();
        let outbox = TurnOutbox::with_journal(10, journal);
        assert!(!outbox.is_empty());
        assert_eq!(outbox.journal_to_replay().unwrap().0.len(), 1);
        outbox.push(user_write("new"));
        let key = user_write("new").key().clone();
        assert_eq!(outbox.find(&key), Some(PendingTurn { user_message: true, answer: None }));
    }
}
