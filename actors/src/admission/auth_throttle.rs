//! `AuthFailureThrottle`: counts auth failures per client IP and turns a client looping on a bad
//! token away with 429 before the upgrade (unless the upgrade carries a token that verifies);
//! also rate-limits the log lines about refused clients.
//! Imports only the crate's bounded utilities.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::bounded_map::BoundedMap;
use crate::log_limit::ClientLogLimit;

/// Addresses the throttle tracks at most (each ≤ ~150 bytes with the default limit of 5).
pub(crate) const THROTTLE_MAX_ADDRESSES: usize = 65_536;

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
    /// At most `limit` failures per address within `window` (0 turns it off).
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

    /// Counts one failed authentication of `ip`.
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
