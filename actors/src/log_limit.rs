//! `LogLimit`: lets one warning of a kind through per window and counts the rest, so an outage
//! that fails thousands of turns logs a line every few seconds with how many were suppressed —
//! never one line per turn, never silence.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate limit for one kind of log line.
pub struct LogLimit {
    window: Duration,
    state: Mutex<Option<(Instant, u64)>>,
}

impl LogLimit {
    /// One line per `window`.
    pub const fn new(window: Duration) -> Self {
        LogLimit { window, state: Mutex::new(None) }
    }

    /// `Some(suppressed)` when a line may be logged now, with how many were suppressed since the
    /// last one; `None` when this one is suppressed (and counted).
    pub fn allow(&self) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
