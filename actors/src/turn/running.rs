//! `RunningTurns`: every chat turn this node has read and not finished, from the moment the
//! server read it until its answer is stored (or it is abandoned at shutdown). The drain waits
//! on it, a repeated chat id finds the turn already answering it, and what is still here when
//! the shutdown grace ends is recorded as unanswered. It only holds turns that run, each for at
//! most its turn lifetime, so it is bounded by the per-user chat rate limit times that lifetime.
//! A leaf of the turn pipeline: imports the ports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics_names::{TURNS_ACCEPTED_TOTAL, TURNS_RUNNING};
use crate::ports::TurnKey;

/// Who carried a turn in, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnOrigin {
    /// A socket, by connection id.
    Socket(String),
    /// A REST request, by request id.
    Rest(String),
}

impl std::fmt::Display for TurnOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnOrigin::Socket(conn) => write!(f, "conn_id={conn}"),
            TurnOrigin::Rest(request) => write!(f, "request_id={request}"),
        }
    }
}

/// A running turn as the registry reports it.
#[derive(Debug, Clone)]
pub struct RunningTurn {
    pub key: TurnKey,
    pub origin: TurnOrigin,
    pub started: Instant,
}

struct Entry {
    turn: RunningTurn,
    /// Closed (sender dropped) when the turn ends.
    done: watch::Receiver<()>,
    /// Stops the turn's task (at the end of the shutdown grace, once it is recorded as unanswered).
    abort: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct Inner {
    turns: HashMap<u64, Entry>,
    next: u64,
}

/// The registry of running turns (one per node, shared by sockets and REST).
pub struct RunningTurns {
    inner: Mutex<Inner>,
    count: watch::Sender<usize>,
}

impl Default for RunningTurns {
    fn default() -> Self {
        RunningTurns { inner: Mutex::new(Inner::default()), count: watch::Sender::new(0) }
    }
}

/// Counts one turn as accepted (`pam_turns_accepted_total`).
pub(crate) fn count_accepted() {
    metrics::counter!(TURNS_ACCEPTED_TOTAL).increment(1);
}

/// Held by a turn while it runs; dropping it (the turn ended, finished or panicked) removes the
/// turn and wakes whoever waits for it.
pub struct TurnGuard {
    registry: Arc<RunningTurns>,
    id: u64,
    done: watch::Sender<()>,
}

impl TurnGuard {
    /// This turn's number in the registry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A receiver whose `changed()` errs once this turn has ended (the next turn of the same
    /// connection waits on it before its model work, so a conversation's turns stay in order).
    pub fn finished(&self) -> watch::Receiver<()> {
        self.done.subscribe()
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.turns.remove(&self.id);
        self.registry.publish(inner.turns.len());
    }
}

impl RunningTurns {
    /// An empty registry, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, len: usize) {
        metrics::gauge!(TURNS_RUNNING).set(len as f64);
        self.count.send_replace(len);
    }

    /// Registers a turn the server has just read.
    pub fn begin(self: &Arc<Self>, key: TurnKey, origin: TurnOrigin) -> TurnGuard {
        count_accepted();
        self.begin_unadmitted(key, origin)
    }

    /// Registers a turn the server has just read but not admitted yet (a REST chat whose rate
    /// limit is asked on the turn's own task): it runs, and the drain waits for it, but it counts
    /// as accepted only once [`count_accepted`] says so.
    pub(crate) fn begin_unadmitted(self: &Arc<Self>, key: TurnKey, origin: TurnOrigin) -> TurnGuard {
        let (done, waiter) = watch::channel(());
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner.turns.insert(id, Entry { turn: RunningTurn { key, origin, started: Instant::now() }, done: waiter, abort: None });
        self.publish(inner.turns.len());
        TurnGuard { registry: self.clone(), id, done }
    }

    /// An earlier running turn than `turn` answering `key`: a receiver whose `changed()` errs
    /// when that turn ends. Only earlier ones, so two repeats never wait for each other.
    pub fn other(&self, key: &TurnKey, turn: u64) -> Option<watch::Receiver<()>> {
        let inner = self.lock();
        inner.turns.iter().filter(|(id, e)| **id < turn && e.turn.key == *key).min_by_key(|(id, _)| **id).map(|(_, e)| e.done.clone())
    }

    /// The task running turn `id`, so it can be stopped once recorded as unanswered.
    pub fn set_abort(&self, id: u64, abort: tokio::task::AbortHandle) {
        if let Some(entry) = self.lock().turns.get_mut(&id) {
            entry.abort = Some(abort);
        }
    }

    /// At the end of the shutdown grace: every running turn, oldest first, each stopped so that
    /// it cannot store an answer after being recorded as unanswered.
    pub fn abandon_all(&self) -> Vec<RunningTurn> {
        let inner = self.lock();
        let mut turns: Vec<_> = inner.turns.values().collect();
        turns.sort_by_key(|e| e.turn.started);
        for entry in &turns {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
        }
        turns.into_iter().map(|e| e.turn.clone()).collect()
    }

    /// How many turns run now.
    pub fn len(&self) -> usize {
        self.lock().turns.len()
    }

    /// Whether no turn runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The turns running now, oldest first.
    pub fn snapshot(&self) -> Vec<RunningTurn> {
        let mut turns: Vec<_> = self.lock().turns.values().map(|e| e.turn.clone()).collect();
        turns.sort_by_key(|t| t.started);
        turns
    }

    /// Waits until no turn runs or `timeout` passes; `true` when none runs.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut count = self.count.subscribe();
        tokio::time::timeout(timeout, count.wait_for(|n| *n == 0)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_protocol::{SessionId, UserId};

    fn key(id: &str) -> TurnKey {
        TurnKey {
            user: UserId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
            session: SessionId::default_session(),
            client_msg_id: id.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_is_registered_until_its_guard_drops_and_waiters_wake() {
        let turns = RunningTurns::new();
        let first = turns.begin(key("a"), TurnOrigin::Socket("c1".into()));
        let second = turns.begin(key("a"), TurnOrigin::Rest("r1".into()));
        assert_eq!(turns.len(), 2);
        let mut waiter = turns.other(&key("a"), second.id()).expect("the first turn answers the same key");
        assert!(turns.other(&key("a"), first.id()).is_none(), "the first never waits for a later repeat");
        assert!(turns.other(&key("b"), second.id()).is_none());
        assert!(!turns.wait_idle(Duration::from_secs(1)).await);
        drop(first);
        assert!(waiter.changed().await.is_err(), "the waiter learns the turn ended");
        assert!(turns.other(&key("a"), second.id()).is_none(), "only itself is left");
        drop(second);
        assert!(turns.wait_idle(Duration::from_secs(1)).await);
        assert!(turns.snapshot().is_empty());
    }
}
