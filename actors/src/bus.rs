//! The push bus on one node: `LocalPushBus` hands a push to this node's sockets of the user (the
//! whole cluster when `REDIS_URL` is unset), and `PushCounters` are the counts every bus keeps
//! (the gateway's Redis bus too). Imports the ports and the per-user socket registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pam_protocol::UserId;

use crate::admission::UserSlots;
use crate::metrics_names::{PUSH_DELIVERED_TOTAL, PUSH_PUBLISHED_TOTAL, PUSH_RECEIVED_TOTAL};
use crate::ports::{BoxFuture, PushBus, PushOutcome, PushStats};

/// The counters every bus keeps, per instance and in Prometheus.
#[derive(Debug, Default)]
pub struct PushCounters {
    published: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
}

impl PushCounters {
    /// Counts one `publish`.
    pub fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(PUSH_PUBLISHED_TOTAL).increment(1);
    }

    /// Counts one push that arrived from another node.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(PUSH_RECEIVED_TOTAL).increment(1);
    }

    /// Counts a push handed to `sockets` local sockets.
    pub fn delivered(&self, sockets: usize) {
        let sockets = sockets as u64;
        self.delivered.fetch_add(sockets, Ordering::Relaxed);
        metrics::counter!(PUSH_DELIVERED_TOTAL).increment(sockets);
    }

    /// This instance's counts.
    pub fn stats(&self) -> PushStats {
        PushStats {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
        }
    }
}

/// The single-node bus: a push reaches this node's sockets of the user.
pub struct LocalPushBus {
    slots: Arc<UserSlots>,
    counters: PushCounters,
}

impl LocalPushBus {
    /// A bus over this node's sockets of each user.
    pub fn new(slots: Arc<UserSlots>) -> Self {
        Self { slots, counters: PushCounters::default() }
    }
}

impl PushBus for LocalPushBus {
    fn publish<'a>(&'a self, user: &'a UserId, payload: &'a str) -> BoxFuture<'a, PushOutcome> {
        Box::pin(async move {
            self.counters.published();
            let local_sockets = self.slots.deliver(user, payload);
            self.counters.delivered(local_sockets);
            PushOutcome { local_sockets, remote_nodes: 0, degraded: false }
        })
    }

    fn stats(&self) -> PushStats {
        self.counters.stats()
    }
}
