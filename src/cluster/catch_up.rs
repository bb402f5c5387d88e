//! Catch-up: this node's sockets get again what is stored for their users, after pushes may
//! have passed them by. Redis pub/sub is at most once, so a push published while this node's
//! subscription was down, while this node was missing from the user's presence, or by a node
//! that could not reach Redis at all never arrives here by the bus; it is in the database
//! (pushes are stored before they are published), so re-reading what waits for each socket's
//! user delivers it. The bus (`bus.rs`) and the heartbeat (`node.rs`) say when.
//!
//! The reads go through the one stored-push task of the node (`StoredPushDelivery`, the one that
//! serves connecting sockets), never a query per socket at once. Sockets drop push ids they
//! already sent, so a re-read never doubles what a socket has; a re-read alert is marked
//! delivered as the socket sends it, like on connect.
//!
//! Work is bounded: requests that arrive while a pass runs merge into one next pass (users kept up
//! to `MAX_USERS`, beyond that every socket), and a pass hands sockets to the stored-push task
//! `CHUNK` at a time, `PAUSE` apart, so sockets connecting meanwhile wait behind one chunk, not
//! behind every socket of the node. Imports nothing else of the cluster.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pam_actors::{StoredPushDelivery, UserSlots};
use pam_protocol::UserId;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Counter: sockets whose stored pushes were read again by a catch-up.
pub const CATCH_UP_SOCKETS_TOTAL: &str = "pam_push_catch_up_sockets_total";

/// Sockets handed to the stored-push task at once.
const CHUNK: usize = 200;
/// Between two chunks (about 2 000 sockets a second).
const PAUSE: Duration = Duration::from_millis(100);
/// Users a pending catch-up names at most; beyond, it covers every socket.
pub(super) const MAX_USERS: usize = 10_000;

/// Why a catch-up runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// This node's subscription to its push channel came back after being down.
    Subscription,
    /// This node's presence was written again after Redis had lost it or missed a write.
    Presence,
    /// Another node could not publish pushes for these users and now reaches Redis again.
    Publisher,
    /// This node's listener fell behind and dropped messages.
    Lagged,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Subscription => "push channel subscription back",
            Reason::Presence => "presence re-synced",
            Reason::Publisher => "another node's unpublished pushes",
            Reason::Lagged => "listener fell behind",
        }
    }
}

/// What the next pass covers.
#[derive(Default)]
struct Pending {
    all: bool,
    users: HashSet<UserId>,
    reasons: Vec<Reason>,
}

/// This node's catch-up: requests, and the task that runs them one pass at a time.
pub struct CatchUp {
    slots: Arc<UserSlots>,
    stored: StoredPushDelivery,
    pending: Mutex<Pending>,
    wake: Notify,
}

impl CatchUp {
    /// The catch-up of this node's sockets, and its task (abort it at shutdown).
    pub fn start(slots: Arc<UserSlots>, stored: StoredPushDelivery) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let catch_up = Arc::new(Self { slots, stored, pending: Mutex::new(Pending::default()), wake: Notify::new() });
        let task = tokio::spawn(catch_up.clone().run());
        (catch_up, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every socket of this node (a node without any does nothing).
    pub fn all(&self, reason: Reason) {
        if self.slots.totals().0 == 0 {
            return;
        }
        {
            let mut pending = self.lock();
            pending.all = true;
            pending.users.clear();
            note(&mut pending.reasons, reason);
        }
        self.wake.notify_one();
    }

    /// This node's sockets of `users` (a node without any of them does nothing).
    pub fn users(&self, users: impl IntoIterator<Item = UserId>, reason: Reason) {
        let mut held = users.into_iter().filter(|user| self.slots.held(user) > 0).peekable();
        if held.peek().is_none() {
            return;
        }
        {
            let mut pending = self.lock();
            if !pending.all {
                pending.users.extend(held);
                if pending.users.len() > MAX_USERS {
                    pending.all = true;
                    pending.users.clear();
                }
            }
            note(&mut pending.reasons, reason);
        }
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            let pending = std::mem::take(&mut *self.lock());
            if pending.reasons.is_empty() {
                continue;
            }
            self.pass(pending).await;
        }
    }

    /// Hands the sockets `pending` covers to the stored-push task, a chunk at a time.
    async fn pass(&self, pending: Pending) {
        let started = Instant::now();
        let users: Vec<UserId> = if pending.all { self.slots.users() } else { pending.users.into_iter().collect() };
        let (mut sockets, mut in_chunk) = (0usize, 0usize);
        for user in &users {
            if in_chunk >= CHUNK {
                tokio::time::sleep(PAUSE).await;
                in_chunk = 0;
            }
            for socket in self.slots.sockets_of(user) {
                let conn_id = format!("catch-up/{}", socket.get_id());
                self.stored.request(user.clone(), socket, conn_id);
                sockets += 1;
                in_chunk += 1;
            }
        }
        metrics::counter!(CATCH_UP_SOCKETS_TOTAL).increment(sockets as u64);
        let reasons = pending.reasons.iter().map(|reason| reason.as_str()).collect::<Vec<_>>().join(", ");
        let queued_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            sockets,
            users = users.len(),
            reasons,
            queued_ms,
            "push catch-up: stored pushes are read again for this node's sockets"
        );
    }
}

fn note(reasons: &mut Vec<Reason>, reason: Reason) {
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
}
