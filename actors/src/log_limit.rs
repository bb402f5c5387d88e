//! `LogLimit`: lets one warning of a kind through per window and counts the rest, so an outage
//! that fails thousands of turns logs a line every few seconds with how many were suppressed —
//! never one line per turn, never silence. `ClientLogLimit` does the same per client address, so
//! a client looping on a bad token logs one refusal per window, not one per attempt.
//! Imports only `BoundedMap`.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::bounded_map::BoundedMap;

/// A rate limit for one kind of log line.
pub(crate) struct LogLimit {
    window: Duration,
    state: Mutex<Option<(Instant, u64)>>,
}

impl LogLimit {
    /// One line per `window`.
    pub(crate) const fn new(window: Duration) -> Self {
        LogLimit { window, state: Mutex::new(None) }
    }

    /// `Some(suppressed)` when a line may be logged now, with how many were suppressed since the
    /// last one; `None` when this one is suppressed (and counted).
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.as_mut() {
            Some((last, suppressed)) if now.duration_since(*last) < self.window => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let count = std::mem::take(suppressed);
                *last = now;
                Some(count)
            }
            None => {
                *state = Some((now, 0));
                Some(0)
            }
        }
    }
}

/// One line per client address per window, with at most `cap` addresses remembered (an address
/// pushed out by a flood of others just logs again: the bound costs a line, never memory).
#[derive(Debug)]
pub(crate) struct ClientLogLimit {
    window: Duration,
    /// Address → (when its last line was logged, refusals suppressed since).
    clients: Mutex<BoundedMap<IpAddr, (Instant, u64)>>,
}

impl ClientLogLimit {
    /// One line per address per `window`, remembering at most `cap` addresses.
    pub(crate) fn new(window: Duration, cap: usize) -> Self {
        Self { window, clients: Mutex::new(BoundedMap::new(cap)) }
    }

    /// `Some(suppressed)` when a line about `client` may be logged at `now`, with how many were
    /// suppressed since its last one; `None` when this one is suppressed (and counted).
    pub(crate) fn allow(&self, client: IpAddr, now: Instant) -> Option<u64> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = false;
        let (last, suppressed) = clients.get_or_insert_with(client.to_canonical(), || {
            fresh = true;
            (now, 0)
        });
        if fresh {
            return Some(0);
        }
        if now.duration_since(*last) < self.window {
            *suppressed += 1;
            return None;
        }
        *last = now;
        Some(std::mem::take(suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_client_per_window_and_other_clients_are_not_silenced() {
        let limit = ClientLogLimit::new(Duration::from_secs(60), 16);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(limit.allow(a, t0), Some(0));
        assert_eq!(limit.allow(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(a, t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.allow(b, t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(limit.allow("::ffff:192.0.2.1".parse().unwrap(), t0 + Duration::from_secs(3)), None, "the same IPv4 client");
        assert_eq!(limit.allow(a, t0 + Duration::from_secs(61)), Some(3));
    }

    #[test]
    fn a_flood_of_addresses_stays_within_the_cap() {
        let limit = ClientLogLimit::new(Duration::from_secs(60), 1_024);
        let now = Instant::now();
        for n in 0..100_000u32 {
            limit.allow(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(limit.clients.lock().unwrap().len() <= 1_024);
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_per_window_with_the_count_of_what_was_suppressed() {
        let limit = LogLimit::new(Duration::from_secs(10));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(limit.allow(), Some(2));
        assert_eq!(limit.allow(), None);
    }
}
