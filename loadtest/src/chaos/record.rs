//! What one chat came to, as its client saw it, and what the clients share.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use pam_loadtest::progress::Progress;
use pam_loadtest::reconnect::SplitMix64;

/// The client's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Legacy,
    V2,
    Rest,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Legacy => "legacy",
            Kind::V2 => "v2",
            Kind::Rest => "rest",
        }
    }

    /// The letter in its chats' markers.
    pub(super) fn letter(self) -> char {
        match self {
            Kind::Legacy => 'l',
            Kind::V2 => 'v',
            Kind::Rest => 'r',
        }
    }
}

/// How a chat ended for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// An answer came (its text is checked by the audit).
    Answered,
    /// An error the client does not (or no longer) re-send: the code and why.
    Errored(String),
    /// No answer and no error: the answer deadline passed twice (v2), 30 s on a live socket
    /// (legacy), or still open when the run ended.
    Silent(String),
}

/// One chat.
#[derive(Debug, Clone)]
pub(super) struct ChatRecord {
    pub(super) kind: Kind,
    pub(super) marker: String,
    /// First send, since the run started.
    pub(super) sent: Duration,
    pub(super) ended: Duration,
    pub(super) outcome: Outcome,
    /// Times it went out again (same id / key / text): after a lost socket, a retryable error, a
    /// failed resume, a passed answer deadline, a failed REST attempt.
    pub(super) resends: u32,
    /// Retryable errors (v2 `error` with `retryable: true`; REST network errors, 408/409/429/5xx).
    pub(super) retryable_errors: u32,
    /// Answers received: v2 `chat_end`s for its id (more than one = answered twice).
    pub(super) answers: u32,
    /// The answer's text.
    pub(super) text: Option<String>,
    /// v2: the deltas since its last send add up to the `chat_end` text (or none came).
    pub(super) deltas_ok: bool,
    /// v2: the answer deadline passed (it was sent again).
    pub(super) deadline_passed: bool,
}

impl ChatRecord {
    pub(super) fn new(kind: Kind, marker: String, sent: Duration) -> Self {
        ChatRecord {
            kind,
            marker,
            sent,
            ended: sent,
            outcome: Outcome::Silent("open".into()),
            resends: 0,
            retryable_errors: 0,
            answers: 0,
            text: None,
            deltas_ok: true,
            deadline_passed: false,
        }
    }
}

/// What a client saw besides its chats.
#[derive(Debug, Default)]
pub(super) struct ClientStats {
    pub(super) connects: u64,
    pub(super) connect_failures: u64,
    /// Socket endings by close code (1006: dropped without a close frame).
    pub(super) closes: BTreeMap<u16, u64>,
    pub(super) resumed: u64,
    pub(super) resume_failed: BTreeMap<String, u64>,
    /// Error frames / REST errors by code.
    pub(super) errors: BTreeMap<String, u64>,
    /// Legacy answers that came with no chat open, or for another chat's marker.
    pub(super) stray_answers: u64,
    pub(super) first_problem: Option<String>,
    /// When each error code and resume outcome came (since the run started), to put beside the faults.
    pub(super) events: Vec<(Duration, String)>,
}

impl ClientStats {
    pub(super) fn merge(&mut self, other: ClientStats) {
        self.connects += other.connects;
        self.connect_failures += other.connect_failures;
        for (code, n) in other.closes {
            *self.closes.entry(code).or_default() += n;
        }
        self.resumed += other.resumed;
        for (reason, n) in other.resume_failed {
            *self.resume_failed.entry(reason).or_default() += n;
        }
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.stray_answers += other.stray_answers;
        self.events.extend(other.events);
        self.first_problem = self.first_problem.take().or(other.first_problem);
    }

    pub(super) fn error(&mut self, code: &str, at: Duration) {
        *self.errors.entry(code.to_string()).or_default() += 1;
        self.events.push((at, code.to_string()));
    }
}

/// Everything a client task needs.
pub(super) struct Shared {
    /// Each node's socket URL (through its proxy).
    pub(super) ws: Vec<String>,
    /// Each node's HTTP base (straight to it).
    pub(super) http: Vec<String>,
    /// The run's marker prefix.
    pub(super) salt: String,
    pub(super) progress: Arc<Progress>,
    /// No new chats once true.
    pub(super) stop: watch::Receiver<bool>,
    /// Give up on open chats once true.
    pub(super) halt: watch::Receiver<bool>,
    /// Pause between one client's chats: uniform in [min, max].
    pub(super) think: (Duration, Duration),
    pub(super) started: tokio::time::Instant,
}

impl Shared {
    pub(super) fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    pub(super) fn think(&self, rng: &mut SplitMix64) -> Duration {
        let (low, high) = self.think;
        low + (high.saturating_sub(low)).mul_f64(rng.next_f64())
    }

    pub(super) fn marker(&self, kind: Kind, n: usize, chat: u32) -> String {
        format!("cx{}-{}{n}-{chat}", self.salt, kind.letter())
    }
}

/// The SDK's wait before re-send `attempt` (0-based) after a retryable error: equal jitter in
/// [max(1 s, ceiling/2), ceiling], ceiling = min(16 s, 2 s · 2^attempt) (web/client backoff.ts).
pub(super) fn retry_delay(attempt: u32, rng: &mut SplitMix64) -> Duration {
    let ceiling = (2_000u64.saturating_mul(1 << attempt.min(10))).min(16_000) as f64;
    let floor = (ceiling / 2.0).max(1_000.0).min(ceiling);
    Duration::from_millis((floor + (ceiling - floor) * rng.next_f64()) as u64)
}

/// Re-sends after retryable errors before a chat fails (the SDK's `chatRetries`).
pub(super) const CHAT_RETRIES: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_follow_the_sdk() {
        let mut rng = SplitMix64::new(1);
        for (attempt, (low, high)) in
            [(1_000, 2_000), (2_000, 4_000), (4_000, 8_000), (8_000, 16_000), (8_000, 16_000)].into_iter().enumerate()
        {
            for _ in 0..50 {
                let ms = retry_delay(attempt as u32, &mut rng).as_millis() as u64;
                assert!((low..=high).contains(&ms), "attempt {attempt}: {ms}");
            }
        }
    }
}
