//! Surviving a rollout: when the server ends a socket the way a draining or restarting gateway
//! does (1012 service restart, 1001 going away, 1013 try again later, or 1006 — the connection
//! dropped without a close frame), a virtual user reconnects after a capped, full-jitter
//! exponential backoff instead of stopping. Any other ending (a policy close, an error frame, a
//! timeout) still ends the user, so a broken server keeps failing the thresholds.

use std::time::{Duration, Instant};

use crate::auth::Tokens;
use crate::client::{self, Session, WsError};

/// Close codes after which reconnecting is the right thing to do.
pub const RECONNECT_CODES: [u16; 4] = [1012, 1001, 1013, 1006];

/// Whether a socket that ended with `code` (`None`: no close frame, i.e. 1006) should reconnect.
pub fn should_reconnect(code: Option<u16>) -> bool {
    RECONNECT_CODES.contains(&code.unwrap_or(1006))
}

/// Whether a read that failed with `error` should reconnect (an ending with a restart-style code).
pub fn should_reconnect_on(error: &WsError) -> bool {
    error.close_code().is_some_and(|code| should_reconnect(Some(code)))
}

/// How long an `error` frame's close may take to follow it.
const CLOSE_AFTER_ERROR: Duration = Duration::from_secs(2);

/// The server sends an `error` frame before every close it starts (SERVICE_RESTART before 1012,
/// AUTH_UNAVAILABLE or STORAGE_UNAVAILABLE before 1013): after one, reads on briefly for that
/// close so the caller sees how the socket ended. An error frame with no close after it (a turn
/// that failed on an open socket) stays `WsError::Other(described)`.
pub async fn after_error_frame(socket: &mut client::Socket, described: String) -> WsError {
    match tokio::time::timeout(CLOSE_AFTER_ERROR, client::next_frame(socket)).await {
        Ok(Err(WsError::Ended { code, detail })) => WsError::Ended { code, detail: format!("{described}, then {detail}") },
        _ => WsError::Other(described),
    }
}

/// A small seedable PRNG (SplitMix64): the runner needs jitter, not cryptography, and tests need
/// a fixed sequence.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the clock and `salt` (the virtual user's number), so users spread apart.
    pub fn from_clock(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Self::new(nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Capped full-jitter exponential backoff: attempt `k` (from 0) waits a uniform time in
/// `[min, min(max, min · 2^k)]`. The floor keeps a fleet of users from hammering a restarting
/// node in the first milliseconds; the cap bounds how long a user idles once it is back.
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// 0.2 s to 5 s.
    pub fn standard() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), attempt: 0 }
    }

    /// The ceiling of the current attempt's window.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next wait, drawing from `rng`; moves to the next attempt.
    pub fn next_delay(&mut self, rng: &mut SplitMix64) -> Duration {
        let (low, high) = (self.min.as_secs_f64(), self.ceiling().as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_secs_f64(low + (high - low) * rng.next_f64())
    }

    /// After a successful reconnect the next outage starts from the floor again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Reconnects virtual user `n` of the legacy protocol: [`retry_connect`] with `client::connect`.
pub async fn reconnect(
    url: &str,
    tokens: &Tokens,
    n: usize,
    deadline: Instant,
    backoff: &mut Backoff,
    rng: &mut SplitMix64,
) -> Result<(Session, u64), String> {
    retry_connect(deadline, backoff, rng, || client::connect(url, tokens, n)).await
}

/// Waits the next backoff delay and calls `connect`, again after each failure, until it succeeds
/// or the next wait would pass `deadline`. Returns what `connect` gave and how many calls it took;
/// the backoff starts over after a success.
pub async fn retry_connect<T, F, Fut>(
    deadline: Instant,
    backoff: &mut Backoff,
    rng: &mut SplitMix64,
    mut connect: F,
) -> Result<(T, u64), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut tries = 0;
    let mut last = String::from("no connect tried");
    loop {
        let delay = backoff.next_delay(rng);
        if Instant::now() + delay >= deadline {
            return Err(format!("reconnect gave up after {tries} tries (deadline): {last}"));
        }
        tokio::time::sleep(delay).await;
        tries += 1;
        match connect().await {
            Ok(connected) => {
                backoff.reset();
                return Ok((connected, tries));
            }
            Err(error) => last = error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn delays_stay_within_the_doubling_window_and_the_cap() {
        for seed in 0..50 {
            let mut rng = SplitMix64::new(seed);
            let mut backoff = Backoff::standard();
            for attempt in 0..12u32 {
                let ceiling = (200.0 * 2f64.powi(attempt as i32)).min(5000.0);
                assert!((ms(backoff.ceiling()) - ceiling).abs() < 1e-6, "attempt {attempt}");
                let d = ms(backoff.next_delay(&mut rng));
                assert!((200.0..=ceiling).contains(&d), "seed {seed} attempt {attempt}: {d} ms outside [200, {ceiling}]");
            }
        }
    }

    #[test]
    fn the_first_wait_is_the_floor_and_late_waits_use_the_whole_capped_window() {
        let mut rng = SplitMix64::new(7);
        let mut backoff = Backoff::standard();
        assert_eq!(backoff.next_delay(&mut rng), Duration::from_millis(200));
        for _ in 0..5 {
            backoff.next_delay(&mut rng);
        }
        // Full jitter at the cap: 1000 draws cover both ends of [0.2 s, 5 s].
        let draws: Vec<f64> = (0..1000).map(|_| ms(backoff.next_delay(&mut rng))).collect();
        let (lo, hi) = draws.iter().fold((f64::MAX, 0f64), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        assert!((200.0..600.0).contains(&lo), "lowest {lo}");
        assert!(hi > 4600.0 && hi <= 5000.0, "highest {hi}");
    }

    #[test]
    fn reset_starts_over_and_a_seed_replays_the_same_waits() {
        let mut backoff = Backoff::standard();
        let mut rng = SplitMix64::new(42);
        let first: Vec<_> = (0..6).map(|_| backoff.next_delay(&mut rng)).collect();
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(200));
        let mut again = Backoff::standard();
        let mut rng = SplitMix64::new(42);
        let replay: Vec<_> = (0..6).map(|_| again.next_delay(&mut rng)).collect();
        assert_eq!(first, replay);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut rng = SplitMix64::new(1);
        for _ in 0..200 {
            assert!(backoff.next_delay(&mut rng) <= Duration::from_secs(5));
        }
    }

    #[test]
    fn read_errors_reconnect_only_when_the_socket_ended_like_a_restart() {
        let ended = |code| WsError::Ended { code, detail: String::new() };
        assert!(should_reconnect_on(&ended(Some(1012))));
        assert!(should_reconnect_on(&ended(None)));
        assert!(!should_reconnect_on(&ended(Some(1008))));
        assert!(!should_reconnect_on(&ended(Some(1005))));
        assert!(!should_reconnect_on(&WsError::Other("invalid JSON".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_connect_backs_off_between_failures_and_gives_up_at_the_deadline() {
        let mut rng = SplitMix64::new(3);
        let mut backoff = Backoff::standard();
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(3600);
        let (value, tries) = retry_connect(deadline, &mut backoff, &mut rng, || {
            calls += 1;
            let ok = calls == 3;
            async move { if ok { Ok("connected") } else { Err(String::from("refused")) } }
        })
        .await
        .unwrap();
        assert_eq!((value, tries), ("connected", 3));
        assert_eq!(backoff.ceiling(), Duration::from_millis(200), "reset after the success");

        let soon = Instant::now() + Duration::from_millis(100);
        let error = retry_connect(soon, &mut backoff, &mut rng, || async { Ok::<_, String>(()) }).await.unwrap_err();
        assert!(error.contains("0 tries"), "{error}");
    }

    #[test]
    fn only_restart_style_endings_reconnect() {
        for code in [Some(1012), Some(1001), Some(1013), Some(1006), None] {
            assert!(should_reconnect(code), "{code:?}");
        }
        for code in [Some(1000), Some(1008), Some(1011), Some(4001), Some(4504)] {
            assert!(!should_reconnect(code), "{code:?}");
        }
    }
}
