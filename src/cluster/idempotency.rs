//! `Idempotency-Key` bookkeeping for `POST /api/v1/pam/chat`: (user, key) → the request's
//! fingerprint and, once answered, the stored response. `RestIdempotency` asks the shared store
//! (Redis, with `REDIS_URL`) so a retry that lands on another node replays the stored response or
//! gets 409 while the first is still running there; without Redis, or while Redis is unavailable,
//! it uses this node's in-memory map (`IdempotencyKeys`), bounded in total and per user.
//!
//! A retry the shared store did not see (Redis down when the first ran, a restart without Redis)
//! runs the turn again, and the conversation store's `client_msg_id` dedupe keeps that to one
//! stored turn; only the replayed response text can differ then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pam_actors::{BoxFuture, SharedUnavailable};
use pam_protocol::UserId;
use serde_json::Value;
use tokio::time::Instant;

/// How long an answered key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(60 * 60);
/// Keys remembered at most (all users together); the oldest go first when full.
pub const IDEMPOTENCY_CAPACITY: usize = 10_000;
/// Keys remembered per user: beyond it that user's own oldest key goes, so one user (however
/// many requests it has in flight) cannot push other users' keys out; it takes ten users at
/// their share to fill the map.
pub const IDEMPOTENCY_KEYS_PER_USER: usize = 1_000;
/// How long a shared running marker lives without being renewed: a claim whose request never
/// learned it had claimed (its `SET NX` timed out, yet Redis ran it) or whose node died stops
/// blocking retries (409) after this, not after a whole turn lifetime.
pub const IDEMPOTENCY_LEASE: Duration = Duration::from_secs(10);
/// How often the request that holds a shared claim renews its lease while its turn runs.
pub const IDEMPOTENCY_RENEW_EVERY: Duration = Duration::from_secs(3);
/// Longest `Idempotency-Key` accepted.
pub const MAX_KEY_CHARS: usize = 255;

/// The stored answer for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub body: Value,
}

#[derive(Debug, Clone)]
enum Slot {
    InFlight { ticket: u64 },
    Done(StoredResponse),
}

#[derive(Debug, Clone)]
struct Entry {
    fingerprint: [u8; 32],
    created: Instant,
    slot: Slot,
}

/// What to do with a request carrying a key.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// First time: run the turn, then `complete` or `release` with this ticket.
    Run { ticket: u64 },
    /// Same key and body, already answered: send this again.
    Replay(StoredResponse),
    /// Same key and body, the first request is still running.
    InFlight,
    /// Same key, another body.
    Mismatch,
}

/// The bounded key map (one per node), bounded in total and per user.
#[derive(Debug)]
pub struct IdempotencyKeys {
    ttl: Duration,
    capacity: usize,
    per_user: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(UserId, String), Entry>,
    /// How many entries each user has.
    per_user: HashMap<UserId, usize>,
    next_ticket: u64,
}

impl Inner {
    fn insert(&mut self, id: (UserId, String), entry: Entry) {
        let user = id.0.clone();
        if self.entries.insert(id, entry).is_none() {
            *self.per_user.entry(user).or_default() += 1;
        }
    }

    fn remove(&mut self, id: &(UserId, String)) {
        if self.entries.remove(id).is_some() {
            if let Some(count) = self.per_user.get_mut(&id.0) {
                *count -= 1;
                if *count == 0 {
                    self.per_user.remove(&id.0);
                }
            }
        }
    }

    /// The per-user counts again, after entries were dropped wholesale.
    fn recount(&mut self) {
        self.per_user.clear();
        for (user, _) in self.entries.keys() {
            *self.per_user.entry(user.clone()).or_default() += 1;
        }
    }
}

impl IdempotencyKeys {
    /// Keys kept for `ttl`, at most `capacity` of them and `per_user` of one user.
    pub fn new(ttl: Duration, capacity: usize, per_user: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), per_user: per_user.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// Claims `key` for `user` with the request's `fingerprint`.
    pub fn claim(&self, user: &UserId, key: &str, fingerprint: [u8; 32], now: Instant) -> Claim {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (user.clone(), key.to_string());
        if let Some(entry) = inner.entries.get(&id) {
            if now.duration_since(entry.created) < self.ttl {
                return match (&entry.slot, entry.fingerprint == fingerprint) {
                    (_, false) => Claim::Mismatch,
                    (Slot::InFlight { .. }, true) => Claim::InFlight,
                    (Slot::Done(stored), true) => Claim::Replay(stored.clone()),
                };
            }
        }
        if inner.per_user.get(user).is_some_and(|count| *count >= self.per_user) {
            self.make_room_for(&mut inner, user, now);
        }
        if inner.entries.len() >= self.capacity {
            self.make_room(&mut inner, now);
        }
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        inner.insert(id, Entry { fingerprint, created: now, slot: Slot::InFlight { ticket } });
        Claim::Run { ticket }
    }

    /// Stores the answer for a claimed key (ignored if the claim was evicted meanwhile).
    pub fn complete(&self, user: &UserId, key: &str, ticket: u64, response: StoredResponse) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = inner.entries.get_mut(&(user.clone(), key.to_string())) {
            if matches!(entry.slot, Slot::InFlight { ticket: t } if t == ticket) {
                entry.slot = Slot::Done(response);
            }
        }
    }

    /// Forgets a claimed key whose request failed, so a retry runs again.
    pub fn release(&self, user: &UserId, key: &str, ticket: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (user.clone(), key.to_string());
        if inner.entries.get(&id).is_some_and(|e| matches!(e.slot, Slot::InFlight { ticket: t } if t == ticket)) {
            inner.remove(&id);
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries; if still full, the oldest tenth.
    fn make_room(&self, inner: &mut Inner, now: Instant) {
        inner.entries.retain(|_, e| now.duration_since(e.created) < self.ttl);
        if inner.entries.len() >= self.capacity {
            let mut ages: Vec<Instant> = inner.entries.values().map(|e| e.created).collect();
            ages.sort_unstable();
            let cutoff = ages[(ages.len() / 10).min(ages.len() - 1)];
            inner.entries.retain(|_, e| e.created > cutoff);
        }
        inner.recount();
    }

    /// `user` holds its whole share: its expired keys go, and if none had, its oldest one.
    /// Scans the map, which only a user at its share makes this node do.
    fn make_room_for(&self, inner: &mut Inner, user: &UserId, now: Instant) {
        let mine: Vec<((UserId, String), Instant)> =
            inner.entries.iter().filter(|((owner, _), _)| owner == user).map(|(id, e)| (id.clone(), e.created)).collect();
        let expired: Vec<_> = mine.iter().filter(|(_, created)| now.duration_since(*created) >= self.ttl).collect();
        if expired.is_empty() {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, created)| *created) {
                inner.remove(oldest);
            }
        } else {
            for (id, _) in expired {
                inner.remove(id);
            }
        }
    }
}

/// REST idempotency keys shared by every node (the port; Redis implements it).
pub trait SharedIdempotency: Send + Sync + 'static {
    /// Claims `key` for `user` with the request's `fingerprint`; a claim left running expires after
    /// `lease` unless renewed.
    fn claim<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a str,
        fingerprint: [u8; 32],
        lease: Duration,
    ) -> BoxFuture<'a, Result<SharedClaim, SharedUnavailable>>;
    /// Extends the claim `marker` holds to `lease` from now; `false` when it no longer holds the key.
    fn renew<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a str,
        marker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedUnavailable>>;
    /// Stores `response` for `ttl` (or, with `None`, forgets the claim) if `marker` still holds the key.
    fn settle<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a str,
        marker: &'a str,
        response: Option<&'a StoredResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), SharedUnavailable>>;
}

/// What a shared claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedClaim {
    /// Claimed: run the turn, then settle with this marker.
    Run {
        marker: String,
    },
    Replay(StoredResponse),
    InFlight,
    Mismatch,
}

/// Where a claim was made, so it is settled in the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticket {
    Local(u64),
    Shared(String),
}

/// What to do with a request carrying a key, across nodes.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// First time: run the turn, then `complete` or `release` with this ticket.
    Run(Ticket),
    Replay(StoredResponse),
    InFlight,
    Mismatch,
}

/// The keys every REST chat asks: shared when set and reachable, else this node's own.
pub struct RestIdempotency {
    local: IdempotencyKeys,
    shared: Option<Arc<dyn SharedIdempotency>>,
    /// How long a shared claim may be renewed (a turn's longest life); then a retry runs again.
    running_for: Duration,
}

impl RestIdempotency {
    pub fn new(local: IdempotencyKeys, shared: Option<Arc<dyn SharedIdempotency>>, running_for: Duration) -> Self {
        Self { local, shared, running_for }
    }

    pub async fn claim(&self, user: &UserId, key: &str, fingerprint: [u8; 32]) -> Decision {
        if let Some(shared) = &self.shared {
            match shared.claim(user, key, fingerprint, IDEMPOTENCY_LEASE).await {
                Ok(SharedClaim::Run { marker }) => return Decision::Run(Ticket::Shared(marker)),
                Ok(SharedClaim::Replay(stored)) => return Decision::Replay(stored),
                Ok(SharedClaim::InFlight) => return Decision::InFlight,
                Ok(SharedClaim::Mismatch) => return Decision::Mismatch,
                Err(SharedUnavailable) => {}
            }
        }
        match self.local.claim(user, key, fingerprint, Instant::now()) {
            Claim::Run { ticket } => Decision::Run(Ticket::Local(ticket)),
            Claim::Replay(stored) => Decision::Replay(stored),
            Claim::InFlight => Decision::InFlight,
            Claim::Mismatch => Decision::Mismatch,
        }
    }

    /// Keeps a shared claim running while its turn runs: renews its lease every
    /// `IDEMPOTENCY_RENEW_EVERY`, for at most `running_for` (a turn's longest life), then lets it
    /// lapse. Never returns; run it beside the turn and drop it when the turn ends. A renewal Redis
    /// does not answer is tried again at the next; after `IDEMPOTENCY_LEASE` without one the claim
    /// lapses and a retry runs again (the `client_msg_id` dedupe keeps one stored turn).
    pub async fn hold(&self, user: &UserId, key: &str, ticket: &Ticket) -> std::convert::Infallible {
        if let (Ticket::Shared(marker), Some(shared)) = (ticket, &self.shared) {
            let until = Instant::now() + self.running_for;
            let mut renewals = tokio::time::interval_at(Instant::now() + IDEMPOTENCY_RENEW_EVERY, IDEMPOTENCY_RENEW_EVERY);
            while renewals.tick().await < until {
                if let Ok(false) = shared.renew(user, key, marker, IDEMPOTENCY_LEASE).await {
                    break;
                }
            }
        }
        std::future::pending().await
    }

    /// Stores the answer for a claimed key (a shared one for `IDEMPOTENCY_TTL`).
    pub async fn complete(&self, user: &UserId, key: &str, ticket: &Ticket, response: StoredResponse) {
        match (ticket, &self.shared) {
            (Ticket::Local(ticket), _) => self.local.complete(user, key, *ticket, response),
            (Ticket::Shared(marker), Some(shared)) => {
                if shared.settle(user, key, marker, Some(&response), self.local.ttl).await.is_err() {
                    tracing::warn!("could not store a REST answer under its Idempotency-Key in Redis; a retry runs the turn again");
                }
            }
            (Ticket::Shared(_), None) => {}
        }
    }

    /// Forgets a claimed key whose request failed, so a retry runs again.
    pub async fn release(&self, user: &UserId, key: &str, ticket: &Ticket) {
        match (ticket, &self.shared) {
            (Ticket::Local(ticket), _) => self.local.release(user, key, *ticket),
            // If this fails the claim expires by itself after `running_for`.
            (Ticket::Shared(marker), Some(shared)) => {
                let _ = shared.settle(user, key, marker, None, self.local.ttl).await;
            }
            (Ticket::Shared(_), None) => {}
        }
    }
}

/// Whether `key` is an acceptable `Idempotency-Key`: 1–255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("00000000-0000-4000-8000-000000000001").unwrap()
    }

    #[test]
    fn a_key_runs_once_then_replays_and_refuses_another_body() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 10, 10);
        let now = Instant::now();
        let Claim::Run { ticket } = keys.claim(&user(), "k", [1; 32], now) else { panic!("first claim runs") };
        assert_eq!(keys.claim(&user(), "k", [1; 32], now), Claim::InFlight);
        assert_eq!(keys.claim(&user(), "k", [2; 32], now), Claim::Mismatch);
        let stored = StoredResponse { body: serde_json::json!({"response": "hi"}) };
        keys.complete(&user(), "k", ticket, stored.clone());
        assert_eq!(keys.claim(&user(), "k", [1; 32], now), Claim::Replay(stored));
        assert_eq!(keys.claim(&user(), "k", [2; 32], now), Claim::Mismatch);
    }

    #[test]
    fn a_released_key_runs_again_and_an_expired_one_too() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 10, 10);
        let now = Instant::now();
        let Claim::Run { ticket } = keys.claim(&user(), "k", [1; 32], now) else { panic!() };
        keys.release(&user(), "k", ticket);
        let Claim::Run { ticket } = keys.claim(&user(), "k", [1; 32], now) else { panic!("released keys run again") };
        keys.complete(&user(), "k", ticket, StoredResponse { body: Value::Null });
        assert!(matches!(keys.claim(&user(), "k", [2; 32], now + Duration::from_secs(61)), Claim::Run { .. }));
    }

    #[test]
    fn the_map_stays_bounded() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 50, 50);
        let now = Instant::now();
        for n in 0..500u32 {
            let _ = keys.claim(&user(), &n.to_string(), [0; 32], now + Duration::from_millis(u64::from(n)));
        }
        assert!(keys.len() <= 50, "{}", keys.len());
    }

    #[test]
    fn one_user_over_its_share_loses_its_own_oldest_keys_never_another_users() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 100, 5);
        let other = UserId::parse("00000000-0000-4000-8000-000000000002").unwrap();
        let now = Instant::now();
        let Claim::Run { ticket } = keys.claim(&other, "theirs", [9; 32], now) else { panic!() };
        let stored = StoredResponse { body: serde_json::json!({"response": "kept"}) };
        keys.complete(&other, "theirs", ticket, stored.clone());
        for n in 0..500u32 {
            let _ = keys.claim(&user(), &n.to_string(), [0; 32], now + Duration::from_millis(u64::from(n) + 1));
        }
        assert_eq!(keys.len(), 6, "five of the busy user's keys, one of the other's");
        assert_eq!(keys.claim(&other, "theirs", [9; 32], now), Claim::Replay(stored), "the other user's key is still there");
        assert_eq!(keys.claim(&user(), "499", [0; 32], now), Claim::InFlight, "the newest are kept");
        assert!(matches!(keys.claim(&user(), "0", [0; 32], now), Claim::Run { .. }), "the oldest went");
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(valid_key("abc-123_X:y"));
        for bad in ["", "has space", "tab\t", "ünï", &"k".repeat(256)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }
}
