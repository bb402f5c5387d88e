//! Per-connection limits and deadlines, taken from the gateway's validated settings.
//! A leaf.

use std::time::Duration;

/// What every `ConnectionActor` obeys.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Server pings go out this often (`PAM_PING_INTERVAL_MS`).
    pub ping_interval: Duration,
    /// Silence this long closes with 1001 (`PAM_PONG_TIMEOUT_MS`).
    pub pong_timeout: Duration,
    /// A v2 socket without a query token sends `auth` within this (`PAM_AUTH_TIMEOUT_MS`).
    pub auth_timeout: Duration,
    /// Characters a chat message may have (`PAM_MAX_MESSAGE_CHARS`).
    pub max_message_chars: usize,
    /// Bytes (as JSON) a client's context may hold: `init`/`context_update` merged, or a chat's own.
    pub max_context_bytes: usize,
    /// Chats per user per minute, socket and REST together (`PAM_RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: u32,
    /// Frames queued for a socket before it closes with 4408 (`PAM_OUTBOUND_QUEUE`).
    pub outbound_queue: usize,
    /// Inbound frames read ahead of the actor before the reader waits.
    pub inbound_queue: usize,
    /// The whole answer's deadline (`PAM_LLM_TIMEOUT_MS`).
    pub llm_timeout: Duration,
    /// Chats queued on one connection before new ones are refused.
    pub max_chats_in_flight: usize,
    /// How long a drain waits for running chats (`PAM_SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            pong_timeout: Duration::from_millis(70_000),
            auth_timeout: Duration::from_millis(5_000),
            max_message_chars: 2_000,
            max_context_bytes: 16 * 1024,
            rate_limit_per_minute: 60,
            outbound_queue: 256,
            inbound_queue: 32,
            llm_timeout: Duration::from_millis(30_000),
            max_chats_in_flight: 8,
            shutdown_grace: Duration::from_millis(10_000),
        }
    }
}

impl ConnectionSettings {
    /// How long a turn can possibly run on any node: behind up to `max_chats_in_flight` earlier
    /// turns of its socket, each within the model deadline, plus its own, the shutdown grace and
    /// a margin for storage. An unanswered id older than this is answered again on a repeat.
    pub fn turn_lifetime(&self) -> Duration {
        let turns = u32::try_from(self.max_chats_in_flight).unwrap_or(u32::MAX).saturating_add(1);
        self.llm_timeout.saturating_mul(turns) + self.shutdown_grace + Duration::from_secs(10)
    }

    /// How often the keepalive timer wakes: often enough to close within half a ping interval
    /// (or half the pong timeout) of the deadline.
    pub fn tick_period(&self) -> Duration {
        (self.ping_interval.min(self.pong_timeout) / 2).max(Duration::from_millis(10))
    }
}
