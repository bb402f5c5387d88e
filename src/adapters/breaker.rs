//! A consecutive-failure circuit breaker, shared by the Redis cache and the model chain: after
//! `failures_to_open` failures in a row the dependency is skipped for `open_for`; then calls are
//! let through again, and the first success closes it (a failure re-opens it for another
//! period). Callers log the transitions it reports, each once, in their own words.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failures_to_open: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(failures_to_open: u32, open_for: Duration) -> Self {
        CircuitBreaker { failures_to_open: failures_to_open.max(1), open_for, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False while open; true when closed or when the open period is over (a trial call).
    pub fn allows(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => true,
            State::Open { until } => Instant::now() >= until,
        }
    }

    pub fn succeeded(&self) -> Option<Transition> {
        let mut state = self.lock();
        let was_open = matches!(*state, State::Open { .. });
        *state = State::Closed { failures: 0 };
        was_open.then_some(Transition::Closed)
    }

    pub fn failed(&self) -> Option<Transition> {
        let mut state = self.lock();
        let until = Instant::now() + self.open_for;
        let (next, transition) = match *state {
            State::Closed { failures } if failures + 1 >= self.failures_to_open => (State::Open { until }, Some(Transition::Opened)),
            State::Closed { failures } => (State::Closed { failures: failures + 1 }, None),
            State::Open { .. } => (State::Open { until }, None),
        };
        *state = next;
        transition
    }

    /// `healthy`, `degraded` (recent failures) or `open`.
    pub fn status(&self) -> &'static str {
        match *self.lock() {
            State::Closed { failures: 0 } => "healthy",
            State::Closed { .. } => "degraded",
            State::Open { .. } => "open",
        }
    }

    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_failures_in_a_row_and_closes_on_the_first_success_after_the_period() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        assert_eq!((breaker.failed(), breaker.failed()), (None, None));
        assert_eq!(breaker.status(), "degraded");
        assert_eq!(breaker.succeeded(), None, "a success in between resets the count");
        assert_eq!((breaker.failed(), breaker.failed(), breaker.failed()), (None, None, Some(Transition::Opened)));
        assert!(!breaker.allows());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(breaker.allows(), "a trial call after the period");
        assert_eq!(breaker.failed(), None, "a failed trial re-opens quietly");
        assert!(!breaker.allows());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.succeeded(), Some(Transition::Closed));
        assert_eq!(breaker.status(), "healthy");
    }
}
