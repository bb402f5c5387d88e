//! `Idempotency-Key` bookkeeping for `POST /api/v1/pam/chat`: a bounded in-memory map from
//! (user, key) to the request's fingerprint and, once answered, the stored response.
//!
//! Per node: a retry that lands on another node (or after a restart, or after the entry expired)
//! runs the turn again, and the conversation store's `client_msg_id` dedupe keeps that to one
//! stored turn; only the replayed response text can differ then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pam_protocol::UserId;
use serde_json::Value;
use tokio::time::Instant;

/// How long an answered key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(60 * 60);
/// Keys remembered at most (all users together); the oldest go first when full.
pub const IDEMPOTENCY_CAPACITY: usize = 10_000;
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

/// The bounded key map (one per node).
#[derive(Debug)]
pub struct IdempotencyKeys {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(UserId, String), Entry>,
    next_ticket: u64,
}

impl IdempotencyKeys {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
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
        if inner.entries.len() >= self.capacity {
            self.make_room(&mut inner, now);
        }
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        inner.entries.insert(id, Entry { fingerprint, created: now, slot: Slot::InFlight { ticket } });
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
            inner.entries.remove(&id);
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
        if inner.entries.len() < self.capacity {
            return;
        }
        let mut ages: Vec<Instant> = inner.entries.values().map(|e| e.created).collect();
        ages.sort_unstable();
        let cutoff = ages[(ages.len() / 10).min(ages.len() - 1)];
        inner.entries.retain(|_, e| e.created > cutoff);
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
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 10);
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
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let Claim::Run { ticket } = keys.claim(&user(), "k", [1; 32], now) else { panic!() };
        keys.release(&user(), "k", ticket);
        let Claim::Run { ticket } = keys.claim(&user(), "k", [1; 32], now) else { panic!("released keys run again") };
        keys.complete(&user(), "k", ticket, StoredResponse { body: Value::Null });
        assert!(matches!(keys.claim(&user(), "k", [2; 32], now + Duration::from_secs(61)), Claim::Run { .. }));
    }

    #[test]
    fn the_map_stays_bounded() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 50);
        let now = Instant::now();
        for n in 0..500u32 {
            let _ = keys.claim(&user(), &n.to_string(), [0; 32], now + Duration::from_millis(u64::from(n)));
        }
        assert!(keys.len() <= 50, "{}", keys.len());
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(valid_key("abc-123_X:y"));
        for bad in ["", "has space", "tab\t", "ünï", &"k".repeat(256)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }
}
