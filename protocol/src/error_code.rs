//! Error codes carried in `error` frames and failed `chat_response` frames.

use serde::{Deserialize, Serialize};

/// `error_code` values (protocol.md, "Error codes in frames", plus the close-table extras).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The token is missing, malformed, forged, for another audience/issuer or of a refused `alg` (close 4501).
    AuthInvalid,
    /// The token's `exp` passed (close 4401; on REST, 401).
    TokenExpired,
    /// The token does not grant access to this user (close 4503).
    Forbidden,
    /// v2: no `auth` frame in time (close 4508).
    AuthTimeout,
    /// Signing keys cannot be fetched right now (JWKS unreachable): retry later, not the token's fault.
    AuthUnavailable,
    /// The frame is not JSON.
    InvalidJson,
    /// The frame's `type` is not one this socket takes.
    UnknownType,
    /// A field is missing or of the wrong kind (10 invalid frames in a row close with 1008).
    ValidationError,
    /// Over `PAM_MAX_MESSAGE_CHARS`, or a context over `PAM_MAX_CONTEXT_BYTES` (a frame over `PAM_MAX_FRAME_BYTES` closes with 1009).
    MessageTooLarge,
    /// Over `PAM_RATE_LIMIT_PER_MINUTE` chats (5 violations close with 4429).
    RateLimitExceeded,
    /// A chat without text.
    EmptyMessage,
    /// No model could answer (retryable).
    LlmUnavailable,
    /// The database cannot take the write now (retryable; with 1013 when it closes).
    StorageUnavailable,
    /// An unexpected failure inside the gateway (retryable).
    Internal,
    /// No pong or frame in time (close 1001).
    Timeout,
    /// The client does not read fast enough (close 4408).
    SlowConsumer,
    /// The server is draining for a restart (close 1012; reconnect).
    ServiceRestart,
    /// Too many sockets for this user (close 4504).
    TooManyConnections,
    /// An RFC 6455 violation by the client (sent with close 1002, or 1007 for invalid UTF-8).
    ProtocolError,
}

impl ErrorCode {
    /// The wire spelling, e.g. `AUTH_INVALID`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthInvalid => "AUTH_INVALID",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::AuthTimeout => "AUTH_TIMEOUT",
            ErrorCode::AuthUnavailable => "AUTH_UNAVAILABLE",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::EmptyMessage => "EMPTY_MESSAGE",
            ErrorCode::LlmUnavailable => "LLM_UNAVAILABLE",
            ErrorCode::StorageUnavailable => "STORAGE_UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::ServiceRestart => "SERVICE_RESTART",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::ProtocolError => "PROTOCOL_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde_spelling() {
        for code in [
            ErrorCode::AuthInvalid,
            ErrorCode::AuthUnavailable,
            ErrorCode::InvalidJson,
            ErrorCode::MessageTooLarge,
            ErrorCode::TooManyConnections,
            ErrorCode::ProtocolError,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
