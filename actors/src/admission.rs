//! Admission limits shared by all connections: per-user socket slots (`PAM_MAX_CONNECTIONS_PER_USER`
//! → 4504), counted across nodes when a `SharedPresence` is set, and the per-IP auth-failure
//! throttle that turns a client looping on a bad token away with 429 before the upgrade (unless
//! the upgrade carries a token that verifies). `UserSlots` is also this node's registry of user →
//! connection actors, through which pushes reach local sockets.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pam_protocol::UserId;
use ractor::ActorRef;
use tokio::time::Instant;

use crate::bounded_map::BoundedMap;
use crate::cluster::{SharedPresence, SocketCount};
use crate::connection::ConnectionMsg;
use crate::log_limit::ClientLogLimit;

/// Addresses the throttle tracks at most (each ≤ ~150 bytes with the default limit of 5).
pub const THROTTLE_MAX_ADDRESSES: usize = 65_536;

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

/// Counts auth failures per client IP over a sliding window; a limit of 0 turns it off. IPv6
/// clients are counted per /64 (one subscriber's prefix: spraying addresses inside it changes
/// nothing). At most `THROTTLE_MAX_ADDRESSES` are tracked, the least recently failing dropped first.
#[derive(Debug)]
pub struct AuthFailureThrottle {
    limit: usize,
    window: Duration,
    failures: Mutex<BoundedMap<IpAddr, VecDeque<Instant>>>,
    /// Refusals (failed auth, throttled upgrades) are logged once per address per window.
    refusal_log: ClientLogLimit,
}

impl AuthFailureThrottle {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self::with_capacity(limit, window, THROTTLE_MAX_ADDRESSES)
    }

    /// Like `new`, tracking at most `addresses` addresses.
    pub fn with_capacity(limit: usize, window: Duration, addresses: usize) -> Self {
        let refusal_log = ClientLogLimit::new(window.max(Duration::from_secs(1)), addresses);
        Self { limit, window, failures: Mutex::new(BoundedMap::new(addresses)), refusal_log }
    }

    /// Whether a refusal of `ip` (failed auth or a throttled upgrade) may be logged now:
    /// `Some(suppressed since the last line)` once per address per window, `None` otherwise.
    /// Works whether or not the throttle itself is on.
    pub fn log_refusal(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        self.refusal_log.allow(ip, now)
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = failures.get_or_insert_with(key(ip), VecDeque::new);
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
    }

    /// Seconds until `ip` may try again, when it has `limit` failures within the window.
    pub fn retry_after(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = failures.get(&key(ip))?;
        let oldest = *times.front()?;
        let age = now.duration_since(oldest);
        (times.len() >= self.limit && age < self.window).then(|| self.window - age)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// What the throttle counts under: the address, or an IPv6 address's /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        answer: Result<bool, crate::cluster::SharedUnavailable>,
        puts: Mutex<Vec<SocketCount>>,
    }

    impl SharedPresence for Recording {
        fn acquire<'a>(
            &'a self,
            _user: &'a UserId,
            now: SocketCount,
            _cap: usize,
        ) -> crate::ports::BoxFuture<'a, Result<bool, crate::cluster::SharedUnavailable>> {
            Box::pin(async move {
                if self.answer == Ok(true) {
                    self.puts.lock().unwrap().push(now);
                }
                self.answer
            })
        }

        fn put<'a>(
            &'a self,
            _user: &'a UserId,
            now: SocketCount,
        ) -> crate::ports::BoxFuture<'a, Result<(), crate::cluster::SharedUnavailable>> {
            Box::pin(async move {
                self.puts.lock().unwrap().push(now);
                Ok(())
            })
        }
    }

    fn recording(answer: Result<bool, crate::cluster::SharedUnavailable>) -> Arc<Recording> {
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
        let slots = UserSlots::with_shared(2, recording(Err(crate::cluster::SharedUnavailable)));
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

    #[test]
    fn five_failures_within_a_minute_throttle_an_ip_until_the_oldest_ages_out() {
        let throttle = AuthFailureThrottle::new(5, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..4 {
            throttle.record_failure(ip, t0 + Duration::from_secs(i));
        }
        assert_eq!(throttle.retry_after(ip, t0 + Duration::from_secs(5)), None);
        throttle.record_failure(ip, t0 + Duration::from_secs(5));
        assert_eq!(throttle.retry_after(ip, t0 + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(throttle.retry_after(ip, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn a_spray_of_a_million_distinct_ipv6_prefixes_stays_within_the_cap() {
        let throttle = AuthFailureThrottle::with_capacity(5, Duration::from_secs(60), 4_096);
        let now = Instant::now();
        for n in 0..1_000_000u128 {
            throttle.record_failure(IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (n << 64) | n)), now);
        }
        assert!(throttle.tracked() <= 4_096, "{} addresses tracked", throttle.tracked());
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_count_and_other_prefixes_do_not() {
        let throttle = AuthFailureThrottle::new(5, Duration::from_secs(60));
        let now = Instant::now();
        for host in 1..=5u16 {
            throttle.record_failure(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host)), now);
        }
        assert!(throttle.retry_after("2001:db8:0:1::99".parse().unwrap(), now).is_some());
        assert_eq!(throttle.retry_after("2001:db8:0:2::1".parse().unwrap(), now), None);
        // An IPv4 client seen through a dual-stack socket is the same IPv4 client.
        (0..5).for_each(|_| throttle.record_failure("::ffff:192.0.2.7".parse().unwrap(), now));
        assert!(throttle.retry_after("192.0.2.7".parse().unwrap(), now).is_some());
    }

    #[test]
    fn a_limit_of_zero_never_throttles() {
        let throttle = AuthFailureThrottle::new(0, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        (0..100).for_each(|_| throttle.record_failure(ip, now));
        assert_eq!(throttle.retry_after(ip, now), None);
    }
}
