//! The recent-errors log behind `GET /api/v1/monitoring/errors`: a tracing layer records every
//! WARN and ERROR event by kind (level, target, message) with a count and first/last time, plus
//! the last occurrences. Bounded (100 kinds, the least recently seen go first; 50 occurrences).
//! Only the event's message is kept — never its fields — and anything in it that looks like a
//! token is blanked, so a secret cannot reach the endpoint.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Kinds of error kept.
pub const MAX_KINDS: usize = 100;
/// Occurrences kept.
pub const MAX_RECENT: usize = 50;
/// Longest message kept (characters).
const MAX_MESSAGE_CHARS: usize = 300;

/// One kind of error and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorKind {
    pub level: &'static str,
    pub target: String,
    pub message: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// One occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorOccurrence {
    pub level: &'static str,
    pub target: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// The bounded log (one per process: see [`error_log`]).
#[derive(Debug, Default)]
pub struct ErrorLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each kind with the sequence number of its last occurrence (for least-recently-seen eviction).
    kinds: HashMap<(&'static str, String, String), (ErrorKind, u64)>,
    seq: u64,
    recent: VecDeque<ErrorOccurrence>,
}

impl ErrorLog {
    /// Records one event (the message is redacted and shortened here).
    pub fn record(&self, level: &'static str, target: &str, message: &str) {
        let message = redact(message);
        let at = Utc::now();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (level, target.to_string(), message.clone());
        if !inner.kinds.contains_key(&id) && inner.kinds.len() >= MAX_KINDS {
            if let Some(stalest) = inner.kinds.iter().min_by_key(|(_, (_, seq))| *seq).map(|(id, _)| id.clone()) {
                inner.kinds.remove(&stalest);
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        let (kind, last_seq) = inner.kinds.entry(id).or_insert_with(|| {
            let kind = ErrorKind { level, target: target.to_string(), message: message.clone(), count: 0, first_seen: at, last_seen: at };
            (kind, seq)
        });
        kind.count += 1;
        kind.last_seen = at;
        *last_seq = seq;
        if inner.recent.len() >= MAX_RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(ErrorOccurrence { level, target: target.to_string(), message, at });
    }

    /// Kinds, most recently seen first.
    pub fn kinds(&self) -> Vec<ErrorKind> {
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut kinds: Vec<&(ErrorKind, u64)> = inner.kinds.values().collect();
        kinds.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
        kinds.into_iter().map(|(kind, _)| kind.clone()).collect()
    }

    /// Occurrences, newest first.
    pub fn recent(&self) -> Vec<ErrorOccurrence> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recent.iter().rev().cloned().collect()
    }
}

/// The process-wide log the [`ErrorLayer`] feeds.
pub fn error_log() -> &'static ErrorLog {
    static LOG: OnceLock<ErrorLog> = OnceLock::new();
    LOG.get_or_init(ErrorLog::default)
}

/// A tracing layer that sends WARN and ERROR events to [`error_log`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorLayer;

impl<S: Subscriber> Layer<S> for ErrorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            _ => return,
        };
        let mut visitor = MessageOnly(String::new());
        event.record(&mut visitor);
        error_log().record(level, event.metadata().target(), &visitor.0);
    }
}

/// Keeps the `message` field and nothing else.
struct MessageOnly(String);

impl Visit for MessageOnly {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

/// Blanks JWT-like runs (`eyJ…`), `token=…` values and `Bearer …` credentials; shortens to 300 chars.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    let mut rest = message;
    while !rest.is_empty() {
        let lower = rest.to_ascii_lowercase();
        let hit = ["eyj", "token=", "bearer "].iter().filter_map(|p| lower.find(p).map(|i| (i, p.len()))).min();
        let Some((start, prefix)) = hit else {
            out.push_str(rest);
            break;
        };
        // A JWT is blanked whole; after `token=` or `Bearer ` only the value is.
        let keep = if lower[start..].starts_with("eyj") { start } else { start + prefix };
        out.push_str(&rest[..keep]);
        let secret = &rest[keep..];
        let end =
            secret.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '/' | '='))).unwrap_or(secret.len());
        if end > 0 {
            out.push_str("[redacted]");
        }
        rest = &secret[end..];
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_survive_redaction() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        for (input, expected) in [
            (format!("refused {jwt} at once"), "refused [redacted] at once".to_string()),
            (format!("GET /ws?token={jwt}&x=1"), "GET /ws?token=[redacted]&x=1".to_string()),
            ("Authorization: Bearer abc.def-ghi".to_string(), "Authorization: Bearer [redacted]".to_string()),
            ("plain message".to_string(), "plain message".to_string()),
            ("token= nothing".to_string(), "token= nothing".to_string()),
        ] {
            assert_eq!(redact(&input), expected, "{input}");
        }
        assert!(redact(&"x".repeat(1000)).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn kinds_are_counted_and_bounded() {
        let log = ErrorLog::default();
        for _ in 0..3 {
            log.record("warn", "pam", "redis down");
        }
        for n in 0..(MAX_KINDS + 20) {
            log.record("error", "pam", &format!("kind {n}"));
        }
        let kinds = log.kinds();
        assert_eq!(kinds.len(), MAX_KINDS);
        assert!(kinds.iter().all(|k| k.message != "redis down"), "the stalest kind went first");
        assert_eq!(log.recent().len(), MAX_RECENT);
        assert_eq!(log.recent()[0].message, format!("kind {}", MAX_KINDS + 19));
    }
}
