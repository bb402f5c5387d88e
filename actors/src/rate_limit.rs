//! Per-user chat rate limit shared by all of a user's connections (token bucket, refilled
//! continuously so a burst cannot exceed the per-minute budget).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pam_protocol::UserId;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked users, idle full buckets are pruned on the next check.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Allows `per_minute` chats per user per rolling minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<UserId, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute: per_minute.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `user`; `false` when the budget is spent.
    pub fn check(&self, user: &UserId, now: Instant) -> bool {
        let capacity = f64::from(self.per_minute);
        let refill_per_sec = capacity / WINDOW.as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| now.duration_since(b.updated) < WINDOW);
        }
        let bucket = buckets.entry(user.clone()).or_insert(Bucket { tokens: capacity, updated: now });
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
}
