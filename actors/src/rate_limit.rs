//! Per-user chat rate limit shared by all of a user's connections (token bucket, refilled
//! continuously so a burst cannot exceed the per-minute budget). At most `MAX_TRACKED_USERS`
//! buckets are kept (a `BoundedMap`: amortised O(1) eviction of the least recently active).

use std::sync::Mutex;
use std::time::Duration;

use pam_protocol::UserId;
use tokio::time::Instant;

use crate::bounded_map::BoundedMap;

const WINDOW: Duration = Duration::from_secs(60);
/// Users whose buckets are kept; an evicted user starts again with a full bucket, which only
/// happens after this many other users chatted since (the newest half is never evicted).
pub const MAX_TRACKED_USERS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Allows `per_minute` chats per user per rolling minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<BoundedMap<UserId, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED_USERS)
    }

    /// Like `new`, keeping at most `users` buckets.
    pub fn with_capacity(per_minute: u32, users: usize) -> Self {
        Self { per_minute: per_minute.max(1), buckets: Mutex::new(BoundedMap::new(users)) }
    }

    /// Takes one token for `user`; `false` when the budget is spent.
    pub fn check(&self, user: &UserId, now: Instant) -> bool {
        let capacity = f64::from(self.per_minute);
        let refill_per_sec = capacity / WINDOW.as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets.get_or_insert_with(user.clone(), || Bucket { tokens: capacity, updated: now });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill_per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!limiter.check(&user(1), t0 + Duration::from_secs(10)), "one token takes 20 s");
        assert!(limiter.check(&user(1), t0 + Duration::from_secs(21)));
    }

    #[test]
    fn a_flood_of_users_keeps_the_bucket_map_within_its_cap() {
        let limiter = RateLimiter::with_capacity(3, 1_000);
        let now = Instant::now();
        for n in 0..200_000u32 {
            let id = UserId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap();
            assert!(limiter.check(&id, now));
        }
        assert!(limiter.buckets.lock().unwrap().len() <= 1_000);
    }
}
