//! Metric names shared by the actors and the gateway (design.md, "Metrics").

pub const WS_CONNECTIONS: &str = "pam_ws_connections";
pub const WS_OPENED_TOTAL: &str = "pam_ws_connections_opened_total";
pub const WS_CLOSED_TOTAL: &str = "pam_ws_closed_total";
pub const WS_FRAMES_TOTAL: &str = "pam_ws_frames_total";
pub const AUTH_FAILURES_TOTAL: &str = "pam_auth_failures_total";
pub const CHAT_SECONDS: &str = "pam_chat_seconds";
pub const CHAT_FIRST_TOKEN_SECONDS: &str = "pam_chat_first_token_seconds";
pub const LLM_REQUESTS_TOTAL: &str = "pam_llm_requests_total";
pub const RATE_LIMITED_TOTAL: &str = "pam_rate_limited_total";
pub const ORCHESTRATORS_ACTIVE: &str = "pam_orchestrators_active";
pub const WS_REJECTED_TOTAL: &str = "pam_ws_rejected_total";
pub const USER_CAP_HITS_TOTAL: &str = "pam_ws_user_cap_hits_total";
/// `pam_push_delivery_seconds{kind}` histogram: from when a push was due (an alert stored, a
/// timer's `fire_at`) until a socket sent it, for pushes that reached an online socket over the
/// bus (stored pushes sent on connect are not timed: that measures how long the user was away).
pub const PUSH_DELIVERY_SECONDS: &str = "pam_push_delivery_seconds";

/// Counts one frame in `pam_ws_frames_total{direction,type}`.
pub fn count_frame(direction: &'static str, kind: &'static str) {
    metrics::counter!(WS_FRAMES_TOTAL, "direction" => direction, "type" => kind).increment(1);
}
