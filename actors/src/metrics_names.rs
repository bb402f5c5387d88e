//! Every metric name the actors record, in one place: the gateway describes them (help text) and
//! records a few of its own under the same names. A leaf: imports nothing of the crate. Names are
//! part of the monitoring contract (dashboards, alert rules) and never change.

/// Gauge `pam_ws_connections{state}`: open sockets by `ConnectionPhase` label.
pub const WS_CONNECTIONS: &str = "pam_ws_connections";
/// Counter: sockets accepted.
pub const WS_OPENED_TOTAL: &str = "pam_ws_connections_opened_total";
/// Counter `pam_ws_closed_total{code}`: sockets closed, by close code label.
pub const WS_CLOSED_TOTAL: &str = "pam_ws_closed_total";
/// Counter `pam_ws_frames_total{direction,type}` (see [`count_frame`]).
pub const WS_FRAMES_TOTAL: &str = "pam_ws_frames_total";
/// Counter `pam_auth_failures_total{reason}`: refused authentications.
pub const AUTH_FAILURES_TOTAL: &str = "pam_auth_failures_total";
/// Histogram: a chat turn from the frame read to its terminal frame.
pub const CHAT_SECONDS: &str = "pam_chat_seconds";
/// Histogram: time to the model's first token (the whole answer's time when it did not stream).
pub const CHAT_FIRST_TOKEN_SECONDS: &str = "pam_chat_first_token_seconds";
/// Counter `pam_llm_requests_total{provider,model,outcome}`.
pub const LLM_REQUESTS_TOTAL: &str = "pam_llm_requests_total";
/// Counter `pam_llm_tokens_total{provider,model,direction}` (`input`/`output`), as the provider
/// reported them; `model` is the configured name (a closed set), not the provider's.
pub const LLM_TOKENS_TOTAL: &str = "pam_llm_tokens_total";
/// Counter: chats refused by the per-user rate limit.
pub const RATE_LIMITED_TOTAL: &str = "pam_rate_limited_total";
/// Gauge: running orchestrator actors (one per chatting connection).
pub const ORCHESTRATORS_ACTIVE: &str = "pam_orchestrators_active";
/// Counter: upgrades refused before the 101 (recorded by the gateway's upgrade route).
pub const WS_REJECTED_TOTAL: &str = "pam_ws_rejected_total";
/// Counter: sockets refused by `PAM_MAX_CONNECTIONS_PER_USER`.
pub const USER_CAP_HITS_TOTAL: &str = "pam_ws_user_cap_hits_total";
/// `pam_push_delivery_seconds{kind}` histogram: from when a push was due (an alert stored, a
/// timer's `fire_at`) until a socket sent it, for pushes that reached an online socket over the
/// bus (stored pushes sent on connect are not timed: that measures how long the user was away).
pub const PUSH_DELIVERY_SECONDS: &str = "pam_push_delivery_seconds";
/// Counter `pam_push_proven_total{proof}`: pushes a client proved it received (`pong` to a ping
/// sent after them, v2 `ack`, or a `resume` position), each then marked delivered.
pub const PUSH_PROVEN_TOTAL: &str = "pam_push_proven_total";
/// Counter `pam_push_unproven_total{reason}`: pushes sent on a socket that never proved it got
/// them (`closed`: the socket ended first; `overflow`: over the per-socket list), so they stay
/// undelivered for the next connect.
pub const PUSH_UNPROVEN_TOTAL: &str = "pam_push_unproven_total";
/// Counter: messages published on the push bus (`publish` calls, on the node that published).
pub const PUSH_PUBLISHED_TOTAL: &str = "pam_push_bus_published_total";
/// Counter: pushes handed to a local socket (on the node that holds the socket).
pub const PUSH_DELIVERED_TOTAL: &str = "pam_push_bus_delivered_total";
/// Counter: pushes that arrived from another node over the bus (on the receiving node).
pub const PUSH_RECEIVED_TOTAL: &str = "pam_push_bus_received_total";
/// Counter `pam_cache_requests_total{kind,result}`: context lookups, hit or miss.
pub const CACHE_REQUESTS_TOTAL: &str = "pam_cache_requests_total";
/// Histogram `pam_context_load_seconds{kind,source}`: one context load.
pub const CONTEXT_LOAD_SECONDS: &str = "pam_context_load_seconds";
/// Counter: turns still running when this process's shutdown grace ended (recorded as
/// unanswered). Process-local: it moves moments before the process exits, so a scrape rarely
/// sees it; alerts use [`TURNS_ABANDONED_RECENT`].
pub const TURNS_ABANDONED_TOTAL: &str = "pam_turns_abandoned_total";
/// Gauge `pam_turns_abandoned_recent{cause}`: turns abandoned across the whole gateway in the
/// last 15 minutes (`shutdown`: a drain's grace ended; `crash`: a dead node's turn ended by
/// another), read from the database, so every node exports it after the abandoning process is gone.
pub const TURNS_ABANDONED_RECENT: &str = "pam_turns_abandoned_recent";
/// Counter: chat turns the server has read (each is then answered and stored, or recorded).
pub const TURNS_ACCEPTED_TOTAL: &str = "pam_turns_accepted_total";
/// Gauge: turns running on this node.
pub const TURNS_RUNNING: &str = "pam_turns_running";
/// Gauge: conversation writes waiting in memory for the database.
pub const TURNS_PENDING: &str = "pam_turns_pending";
/// Counter: conversation writes not stored (refused by the database, or the outbox was full
/// without a journal).
pub const TURNS_DROPPED_TOTAL: &str = "pam_turns_dropped_total";
/// Counter: outbox writes appended to the journal (fsync'd).
pub const OUTBOX_JOURNALED_TOTAL: &str = "pam_outbox_journaled_total";
/// Counter: outbox writes kept only in the journal because the in-memory queue was full.
pub const OUTBOX_SPILLED_TOTAL: &str = "pam_outbox_spilled_total";
/// Counter: journaled writes stored when the journal was replayed.
pub const OUTBOX_REPLAYED_TOTAL: &str = "pam_outbox_replayed_total";
/// Gauge: 1 while conversation writes have been failing for at least the outbox's degraded delay.
pub const STORAGE_DEGRADED: &str = "pam_storage_degraded";
/// Counter: v2 stream writes to the `StreamStore` by outcome (`written`, `forwarded`, `failed`,
/// `dropped`: a closed set), recorded by the gateway's Redis store.
pub const STREAM_WRITES_TOTAL: &str = "pam_resume_store_writes_total";
/// Gauge: `1` while the last batch of stream writes failed (resume then works on this node only).
pub const STREAM_STORE_DEGRADED: &str = "pam_resume_store_degraded";

/// Counts one frame in `pam_ws_frames_total{direction,type}`.
pub fn count_frame(direction: &'static str, kind: &'static str) {
    metrics::counter!(WS_FRAMES_TOTAL, "direction" => direction, "type" => kind).increment(1);
}
