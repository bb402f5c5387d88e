//! Admission limits shared by all connections: per-user socket slots (`PAM_MAX_CONNECTIONS_PER_USER`
//! → 4504) and the per-IP auth-failure throttle that turns a client looping on a bad token away
//! with 429 before the upgrade.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pam_protocol::UserId;
use tokio::time::Instant;

/// Sockets per user.
#[derive(Debug)]
pub struct UserSlots {
    cap: usize,
    taken: Mutex<HashMap<UserId, usize>>,
}

/// Holds one of a user's slots; gives it back on drop.
#[derive(Debug)]
pub struct UserSlot {
    slots: Arc<UserSlots>,
    user: UserId,
}

impl UserSlots {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self { cap: cap.max(1), taken: Mutex::new(HashMap::new()) })
    }

    /// A slot for `user`, or `None` when the user already holds `cap`.
    pub fn acquire(self: &Arc<Self>, user: &UserId) -> Option<UserSlot> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let count = taken.entry(user.clone()).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(UserSlot { slots: self.clone(), user: user.clone() })
    }

    /// Sockets one user may hold.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Sockets `user` holds now.
    pub fn held(&self, user: &UserId) -> usize {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).get(user).copied().unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut taken = self.slots.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = taken.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                taken.remove(&self.user);
            }
        }
    }
}

/// Counts auth failures per client IP over a sliding window; a limit of 0 turns it off.
#[derive(Debug)]
pub struct AuthFailureThrottle {
    limit: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl AuthFailureThrottle {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self { limit, window, failures: Mutex::new(HashMap::new()) }
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 10_000 {
            let window = self.window;
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let times = failures.entry(ip).or_default();
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
        let times = failures.get(&ip)?;
        let oldest = *times.front()?;
        let age = now.duration_since(oldest);
        (times.len() >= self.limit && age < self.window).then(|| self.window - age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_user_and_returned_on_drop() {
        let slots = UserSlots::new(2);
        let user = UserId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let a = slots.acquire(&user).unwrap();
        let _b = slots.acquire(&user).unwrap();
        assert!(slots.acquire(&user).is_none());
        drop(a);
        assert_eq!(slots.held(&user), 1);
        assert!(slots.acquire(&user).is_some());
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
    fn a_limit_of_zero_never_throttles() {
        let throttle = AuthFailureThrottle::new(0, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        (0..100).for_each(|_| throttle.record_failure(ip, now));
        assert_eq!(throttle.retry_after(ip, now), None);
    }
}
