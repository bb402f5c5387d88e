//! A consecutive-failure circuit breaker, shared by the Redis cache and the model chain: after
//! `failures_to_open` failures in a row the dependency is skipped for `open_for`; then exactly one
//! trial call is let through (half-open) while every other caller is still refused, and the
//! trial's success closes it (its failure re-opens it for another period). Callers log the
//! transitions it reports, each once, in their own words.
//!
//! A call is admitted as a [`Permit`] that reports the outcome. A trial whose future is dropped
//! before it reports (a cancelled turn, a timeout around the call) gives the trial back, so the
//! next caller tries instead of the breaker staying half-open forever.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The open period is over and trial number `trial` is running; everyone else is refused.
    HalfOpen {
        trial: u64,
    },
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
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Numbers the trials, so a late report or drop of an old trial cannot end a newer one.
    trials: u64,
}

/// One admitted call. Report its outcome with [`Permit::succeeded`] or [`Permit::failed`];
/// dropping it unreported gives a half-open trial back.
#[derive(Debug)]
#[must_use = "report the call's outcome, or drop the permit if the call was abandoned"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    /// `Some(n)` when this call is the half-open trial number `n`.
    trial: Option<u64>,
    reported: bool,
}

impl CircuitBreaker {
    pub fn new(failures_to_open: u32, open_for: Duration) -> Self {
        CircuitBreaker {
            failures_to_open: failures_to_open.max(1),
            open_for,
            inner: Mutex::new(Inner { state: State::Closed { failures: 0 }, trials: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit when closed, or as the single trial once the open period is over; `None` while
    /// open or while another caller's trial is running.
    pub fn admit(&self) -> Option<Permit<'_>> {
        let mut inner = self.lock();
        let trial = match inner.state {
            State::Closed { .. } => None,
            State::Open { until } if Instant::now() >= until => {
                inner.trials += 1;
                inner.state = State::HalfOpen { trial: inner.trials };
                Some(inner.trials)
            }
            State::Open { .. } | State::HalfOpen { .. } => return None,
        };
        Some(Permit { breaker: self, trial, reported: false })
    }

    fn succeeded(&self) -> Option<Transition> {
        let mut inner = self.lock();
        let was_open = !matches!(inner.state, State::Closed { .. });
        inner.state = State::Closed { failures: 0 };
        was_open.then_some(Transition::Closed)
    }

    fn failed(&self) -> Option<Transition> {
        let mut inner = self.lock();
        let until = Instant::now() + self.open_for;
        let (next, transition) = match inner.state {
            State::Closed { failures } if failures + 1 >= self.failures_to_open => (State::Open { until }, Some(Transition::Opened)),
            State::Closed { failures } => (State::Closed { failures: failures + 1 }, None),
            State::Open { .. } | State::HalfOpen { .. } => (State::Open { until }, None),
        };
        inner.state = next;
        transition
    }

    /// The trial ended without a report: the next caller may try at once.
    fn abandoned(&self, trial: u64) {
        let mut inner = self.lock();
        if inner.state == (State::HalfOpen { trial }) {
            inner.state = State::Open { until: Instant::now() };
        }
    }

    /// Closes the breaker after a call made past it (a probe, see the Redis heartbeat) worked:
    /// `Some(Closed)` when it was open. A trial still running reports into the closed state.
    pub fn close_after_probe(&self) -> Option<Transition> {
        self.succeeded()
    }

    /// `healthy`, `degraded` (recent failures) or `open` (also while a trial runs).
    pub fn status(&self) -> &'static str {
        match self.lock().state {
            State::Closed { failures: 0 } => "healthy",
            State::Closed { .. } => "degraded",
            State::Open { .. } | State::HalfOpen { .. } => "open",
        }
    }

    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

impl Permit<'_> {
    /// The call worked; `Some(Closed)` when this closed the breaker.
    pub fn succeeded(mut self) -> Option<Transition> {
        self.reported = true;
        self.breaker.succeeded()
    }

    /// The call failed; `Some(Opened)` when this opened the breaker (a failed trial re-opens it quietly).
    pub fn failed(mut self) -> Option<Transition> {
        self.reported = true;
        self.breaker.failed()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let (false, Some(trial)) = (self.reported, self.trial) {
            self.breaker.abandoned(trial);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn opened(breaker: &CircuitBreaker) {
        for _ in 0..breaker.failures_to_open {
            let _ = breaker.admit().expect("closed").failed();
        }
        assert_eq!(breaker.status(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_failures_in_a_row_and_closes_on_the_first_success_after_the_period() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        assert_eq!((breaker.admit().unwrap().failed(), breaker.admit().unwrap().failed()), (None, None));
        assert_eq!(breaker.status(), "degraded");
        assert_eq!(breaker.admit().unwrap().succeeded(), None, "a success in between resets the count");
        let fail = || breaker.admit().unwrap().failed();
        assert_eq!((fail(), fail(), fail()), (None, None, Some(Transition::Opened)));
        assert!(breaker.admit().is_none());
        tokio::time::advance(Duration::from_secs(30)).await;
        let trial = breaker.admit().expect("a trial call after the period");
        assert_eq!(trial.failed(), None, "a failed trial re-opens quietly");
        assert!(breaker.admit().is_none());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.admit().unwrap().succeeded(), Some(Transition::Closed));
        assert_eq!(breaker.status(), "healthy");
    }

    // Real threads racing for the trial (no paused clock): an open period of zero makes the
    // breaker half-open as soon as it has opened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn half_open_admits_exactly_one_of_many_concurrent_callers_until_the_trial_reports() {
        const CALLERS: usize = 64;
        let breaker = Arc::new(CircuitBreaker::new(3, Duration::ZERO));
        opened(&breaker);
        let (admitted, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (report, reported) = tokio::sync::watch::channel(false);
        let start = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (breaker, admitted, refused, start) = (breaker.clone(), admitted.clone(), refused.clone(), start.clone());
                let mut reported = reported.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let Some(permit) = breaker.admit() else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        return None;
                    };
                    admitted.fetch_add(1, Ordering::SeqCst);
                    // The trial holds its permit until the test lets it report.
                    reported.wait_for(|r| *r).await.unwrap();
                    permit.succeeded()
                })
            })
            .collect();
        while admitted.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst) < CALLERS {
            tokio::task::yield_now().await;
        }
        assert_eq!((admitted.load(Ordering::SeqCst), refused.load(Ordering::SeqCst)), (1, CALLERS - 1));
        assert!(breaker.admit().is_none(), "still refused while the trial runs");
        report.send(true).unwrap();
        let mut transitions = Vec::new();
        for caller in callers {
            transitions.push(caller.await.unwrap());
        }
        assert_eq!(transitions.iter().filter(|t| **t == Some(Transition::Closed)).count(), 1);
        assert_eq!(breaker.status(), "healthy", "closed by the trial's success");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_worked_closes_an_open_breaker_before_its_period_ends() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(30));
        opened(&breaker);
        assert!(breaker.admit().is_none());
        assert_eq!(breaker.close_after_probe(), Some(Transition::Closed));
        assert_eq!(breaker.status(), "healthy");
        assert_eq!(breaker.close_after_probe(), None, "closing a closed breaker is no transition");
        assert!(breaker.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_dropped_before_it_reports_lets_the_next_caller_try() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(30));
        opened(&breaker);
        tokio::time::advance(Duration::from_secs(30)).await;
        let trial = breaker.admit().expect("the trial");
        assert!(breaker.admit().is_none());
        drop(trial);
        let next = breaker.admit().expect("the abandoned trial is given back");
        assert!(breaker.admit().is_none(), "and it is again the only one");
        assert_eq!(next.succeeded(), Some(Transition::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_report_from_before_the_opening_does_not_end_the_running_trial() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(30));
        let early = breaker.admit().expect("closed");
        opened(&breaker);
        tokio::time::advance(Duration::from_secs(30)).await;
        let trial = breaker.admit().expect("the trial");
        drop(early);
        assert!(breaker.admit().is_none(), "an unreported closed-state permit frees no trial");
        drop(trial);
        assert!(breaker.admit().is_some());
    }
}
