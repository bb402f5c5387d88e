//! `UserSlots`: per-user socket slots (`PAM_MAX_CONNECTIONS_PER_USER` → 4504), counted across
//! nodes when a `SharedPresence` is set. Also this node's registry of user → connection actors,
//! through which pushes reach local sockets.
//! Imports the cluster ports and the connection's messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pam_protocol::UserId;
use ractor::ActorRef;

use crate::messages::connection::ConnectionMsg;
use crate::ports::{SharedPresence, SocketCount};

/// Sockets per user: this node's, and with a `SharedPresence` every node's. Entries exist only
/// for users holding a socket here, so the map is bounded by `PAM_MAX_CONNECTIONS`.
pub struct UserSlots {
    cap: usize,
    users: Mutex<HashMap<UserId, LocalUser>>,
    /// Slot ids and count versions (one sequence: both only need to be unique and growing).
    sequence: AtomicU64,
    shared: Option<Arc<dyn SharedPresence>>,
}

/// One user's sockets on this node.
#[derive(Default)]
struct LocalUser {
    sockets: Vec<(u64, Option<ActorRef<ConnectionMsg>>)>,
    /// Version of the latest change of `sockets`.
    version: u64,
}

/// Holds one of a user's slots; gives it back on drop (and tells the shared count).
pub struct UserSlot {
    slots: Arc<UserSlots>,
    user: UserId,
    id: u64,
}

impl std::fmt::Debug for UserSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSlot").field("user", &self.user).field("id", &self.id).finish()
    }
}

impl UserSlots {
    /// Slots counted on this node only (the single-node default).
    pub fn new(cap: usize) -> Arc<Self> {
        Self::build(cap, None)
    }

    /// Slots counted across nodes through `shared`, falling back to this node's count whenever
    /// `shared` is unavailable.
    pub fn with_shared(cap: usize, shared: Arc<dyn SharedPresence>) -> Arc<Self> {
        Self::build(cap, Some(shared))
    }

    fn build(cap: usize, shared: Option<Arc<dyn SharedPresence>>) -> Arc<Self> {
        Arc::new(Self { cap: cap.max(1), users: Mutex::new(HashMap::new()), sequence: AtomicU64::new(0), shared })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, LocalUser>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A slot for `user`, or `None` when the user already holds `cap` sockets — on this node, or
    /// (with shared presence that answers) on all nodes together. `connection` receives the
    /// user's pushes while the slot is held.
    pub async fn acquire(self: &Arc<Self>, user: &UserId, connection: Option<ActorRef<ConnectionMsg>>) -> Option<UserSlot> {
        let (slot, now) = {
            let mut users = self.lock();
            let local = users.entry(user.clone()).or_default();
            if local.sockets.len() >= self.cap {
                return None;
            }
            let id = self.next();
            local.sockets.push((id, connection));
            local.version = self.next();
            (UserSlot { slots: self.clone(), user: user.clone(), id }, SocketCount { count: local.sockets.len(), version: local.version })
        };
        let Some(shared) = &self.shared else { return Some(slot) };
        // Dropping `slot` (refused, or this future dropped mid-call) writes the count back.
        match shared.acquire(user, now, self.cap).await {
            Ok(false) => None,
            Ok(true) | Err(_) => Some(slot),
        }
    }

    /// Sockets one user may hold.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Sockets `user` holds on this node now.
    pub fn held(&self, user: &UserId) -> usize {
        self.lock().get(user).map_or(0, |local| local.sockets.len())
    }

    /// Sockets held on this node, and the users holding them.
    pub fn totals(&self) -> (usize, usize) {
        let users = self.lock();
        (users.values().map(|local| local.sockets.len()).sum(), users.len())
    }

    /// Every user's count on this node (for a shared store that lost them).
    pub fn snapshot(&self) -> Vec<(UserId, SocketCount)> {
        self.lock().iter().map(|(user, local)| (user.clone(), SocketCount { count: local.sockets.len(), version: local.version })).collect()
    }

    /// Users holding a socket on this node now.
    pub fn users(&self) -> Vec<UserId> {
        self.lock().keys().cloned().collect()
    }

    /// The connection actors of `user`'s sockets on this node now (those receiving its pushes).
    pub fn sockets_of(&self, user: &UserId) -> Vec<ActorRef<ConnectionMsg>> {
        self.lock().get(user).map_or_else(Vec::new, |local| local.sockets.iter().filter_map(|(_, connection)| connection.clone()).collect())
    }

    /// Hands `payload` (a frame's JSON text) to every socket of `user` on this node; how many took it.
    pub fn deliver(&self, user: &UserId, payload: &str) -> usize {
        let users = self.lock();
        let Some(local) = users.get(user) else { return 0 };
        local
            .sockets
            .iter()
            .filter_map(|(_, connection)| connection.as_ref())
            .filter(|connection| connection.cast(ConnectionMsg::Push(payload.to_string())).is_ok())
            .count()
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let now = {
            let mut users = self.slots.lock();
            let Some(local) = users.get_mut(&self.user) else { return };
            local.sockets.retain(|(id, _)| *id != self.id);
            local.version = self.slots.next();
            let now = SocketCount { count: local.sockets.len(), version: local.version };
            if local.sockets.is_empty() {
                users.remove(&self.user);
            }
            now
        };
        let (Some(shared), Ok(runtime)) = (self.slots.shared.clone(), tokio::runtime::Handle::try_current()) else { return };
        let user = self.user.clone();
        // A failed write is the shared store's to heal (it re-syncs from `snapshot`).
        runtime.spawn(async move {
            let _ = shared.put(&user, now).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{BoxFuture, SharedUnavailable};

    #[tokio::test]
    async fn slots_are_capped_per_user_and_returned_on_drop() {
        let slots = UserSlots::new(2);
        let user = UserId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let a = slots.acquire(&user, None).await.unwrap();
        let _b = slots.acquire(&user, None).await.unwrap();
        assert!(slots.acquire(&user, None).await.is_none());
        drop(a);
        assert_eq!(slots.held(&user), 1);
        assert!(slots.acquire(&user, None).await.is_some());
    }

    /// A shared store that answers `answer` to every acquire and records every count it is given.
    struct Recording {
        answer: Result<bool, SharedUnavailable>,
        puts: Mutex<Vec<SocketCount>>,
    }

    impl SharedPresence for Recording {
        fn acquire<'a>(&'a self, _user: &'a UserId, now: SocketCount, _cap: usize) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
            Box::pin(async move {
                if self.answer == Ok(true) {
                    self.puts.lock().unwrap().push(now);
                }
                self.answer
            })
        }

        fn put<'a>(&'a self, _user: &'a UserId, now: SocketCount) -> BoxFuture<'a, Result<(), SharedUnavailable>> {
            Box::pin(async move {
                self.puts.lock().unwrap().push(now);
                Ok(())
            })
        }
    }

    fn recording(answer: Result<bool, SharedUnavailable>) -> Arc<Recording> {
        Arc::new(Recording { answer, puts: Mutex::new(Vec::new()) })
    }

    async fn settled() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_slot_the_shared_count_refuses_is_not_taken_and_the_count_is_written_back_with_a_newer_version() {
        let shared = recording(Ok(false));
        let slots = UserSlots::with_shared(3, shared.clone());
        let user = UserId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        assert!(slots.acquire(&user, None).await.is_none());
        assert_eq!(slots.held(&user), 0);
        settled().await;
        let puts = shared.puts.lock().unwrap().clone();
        assert_eq!(puts.len(), 1, "{puts:?}");
        assert_eq!(puts[0].count, 0);
    }

    #[tokio::test]
    async fn while_the_shared_count_is_unavailable_this_nodes_cap_still_holds() {
        let slots = UserSlots::with_shared(2, recording(Err(SharedUnavailable)));
        let user = UserId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let _a = slots.acquire(&user, None).await.expect("admitted on this node's count");
        let _b = slots.acquire(&user, None).await.expect("admitted on this node's count");
        assert!(slots.acquire(&user, None).await.is_none());
    }

    #[tokio::test]
    async fn every_change_is_written_with_a_growing_version_so_a_late_write_cannot_undo_a_newer_one() {
        let shared = recording(Ok(true));
        let slots = UserSlots::with_shared(3, shared.clone());
        let user = UserId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let a = slots.acquire(&user, None).await.unwrap();
        let b = slots.acquire(&user, None).await.unwrap();
        drop(a);
        drop(b);
        settled().await;
        let puts = shared.puts.lock().unwrap().clone();
        assert_eq!(puts.iter().map(|p| p.count).collect::<Vec<_>>(), [1, 2, 1, 0]);
        assert!(puts.windows(2).all(|w| w[0].version < w[1].version), "{puts:?}");
        assert!(slots.snapshot().is_empty(), "a user with no socket leaves no entry");
    }
}
