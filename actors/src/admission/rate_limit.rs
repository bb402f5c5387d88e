//! Per-user chat rate limit shared by all of a user's connections and REST chats: GCRA (the
//! generic cell rate algorithm), the same rule in process (`RateLimiter`) and in Redis (the
//! gateway's `SharedRateLimit`), so a user gets the same budget from one node or from many.
//!
//! `per_minute` chats are spaced `T = 60 s / per_minute` apart, with a burst tolerance of
//! `(per_minute - 1) · T`: a fresh user may send `per_minute` at once, then one every `T`. The
//! only state is the theoretical arrival time (TAT) of the next chat: a chat at `now` is allowed
//! when `max(TAT, now) - now <= tolerance`, and then moves TAT to `max(TAT, now) + T`.
//!
//! In process at most `MAX_TRACKED_USERS` TATs are kept (a `BoundedMap`: amortised O(1) eviction
//! of the least recently active).
//! Imports the cluster ports and `BoundedMap`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pam_protocol::UserId;
use tokio::time::Instant;

use crate::bounded_map::BoundedMap;
use crate::ports::{SharedRateLimit, SharedUnavailable};

const WINDOW: Duration = Duration::from_secs(60);
/// Users whose state is kept; an evicted user starts again with a full burst, which only
/// happens after this many other users chatted since (the newest half is never evicted).
pub(crate) const MAX_TRACKED_USERS: usize = 100_000;

/// The GCRA parameters of a per-minute budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `T`: the spacing of chats at the sustained rate.
    pub interval: Duration,
    /// `(per_minute - 1) · T`: how far ahead of the sustained rate a burst may run.
    pub tolerance: Duration,
}

impl Gcra {
    /// `per_minute` chats a minute (at least 1).
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let interval = WINDOW / per_minute;
        Gcra { interval, tolerance: interval * (per_minute - 1) }
    }
}

/// Allows `per_minute` chats per user per rolling minute, on this node.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    gcra: Gcra,
    /// The theoretical arrival time of each user's next chat.
    tats: Mutex<BoundedMap<UserId, Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED_USERS)
    }

    /// Like `new`, keeping at most `users` users' state.
    pub(crate) fn with_capacity(per_minute: u32, users: usize) -> Self {
        Self { gcra: Gcra::per_minute(per_minute), tats: Mutex::new(BoundedMap::new(users)) }
    }

    /// Takes one chat for `user`; `false` when the budget is spent.
    pub(crate) fn check(&self, user: &UserId, now: Instant) -> bool {
        let mut tats = self.tats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = tats.get_or_insert_with(user.clone(), || now);
        let start = (*tat).max(now);
        if start.duration_since(now) > self.gcra.tolerance {
            return false;
        }
        *tat = start + self.gcra.interval;
        true
    }
}

/// The chat rate limit every socket and REST chat of this node asks: the shared one when set
/// and reachable, else this node's own. This node's own also records the chats the shared one
/// allows, so a Redis outage starts from what this node has seen rather than a fresh budget.
pub struct ChatRateLimit {
    per_minute: u32,
    local: RateLimiter,
    shared: Option<Arc<dyn SharedRateLimit>>,
}

impl ChatRateLimit {
    /// `per_minute` chats per user, counted through `shared` when set and reachable.
    pub fn new(per_minute: u32, shared: Option<Arc<dyn SharedRateLimit>>) -> Self {
        Self { per_minute: per_minute.max(1), local: RateLimiter::new(per_minute), shared }
    }

    /// Takes one chat for `user`; `false` when the budget is spent.
    pub async fn check(&self, user: &UserId) -> bool {
        let shared = match &self.shared {
            Some(shared) => shared.admit(user, self.per_minute).await,
            None => Err(SharedUnavailable),
        };
        match shared {
            Ok(false) => false,
            Ok(true) => {
                // Recorded here too; its answer does not matter while the shared one is there.
                let _ = self.local.check(user, Instant::now());
                true
            }
            Err(SharedUnavailable) => self.local.check(user, Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::BoxFuture;

    fn user(n: u8) -> UserId {
        UserId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02}")).unwrap()
    }

    #[test]
    fn budget_is_per_user_and_refills_over_the_minute() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.check(&user(1), t0)));
        assert!(!limiter.check(&user(1), t0));
        assert!(limiter.check(&user(2), t0), "another user has their own budget");
        assert!(!limiter.check(&user(1), t0 + Duration::from_secs(10)), "one chat takes 20 s");
        assert!(limiter.check(&user(1), t0 + Duration::from_secs(21)));
        assert!(!limiter.check(&user(1), t0 + Duration::from_secs(21)), "and only one");
    }

    #[test]
    fn a_quiet_minute_gives_the_whole_burst_back_and_no_more() {
        let limiter = RateLimiter::new(5);
        let t0 = Instant::now();
        assert!((0..5).all(|_| limiter.check(&user(1), t0)));
        let later = t0 + Duration::from_secs(600);
        assert_eq!((0..10).filter(|_| limiter.check(&user(1), later)).count(), 5);
    }

    #[test]
    fn a_flood_of_users_keeps_the_map_within_its_cap() {
        let limiter = RateLimiter::with_capacity(3, 1_000);
        let now = Instant::now();
        for n in 0..200_000u32 {
            let id = UserId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap();
            assert!(limiter.check(&id, now));
        }
        assert!(limiter.tats.lock().unwrap().len() <= 1_000);
    }

    struct Answer(Result<bool, SharedUnavailable>);

    impl SharedRateLimit for Answer {
        fn admit<'a>(&'a self, _user: &'a UserId, _per_minute: u32) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
            Box::pin(async move { self.0 })
        }
    }

    #[tokio::test]
    async fn the_shared_answer_wins_and_an_unavailable_one_falls_back_to_this_nodes_count() {
        let refusing = ChatRateLimit::new(2, Some(Arc::new(Answer(Ok(false)))));
        assert!(!refusing.check(&user(1)).await, "the shared budget is spent elsewhere");
        let down = ChatRateLimit::new(2, Some(Arc::new(Answer(Err(SharedUnavailable)))));
        assert!(down.check(&user(1)).await && down.check(&user(1)).await);
        assert!(!down.check(&user(1)).await, "this node's own count applies");
    }
}
