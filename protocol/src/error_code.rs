//! Error codes carried in `error` frames and failed `chat_response` frames.

use serde::{Deserialize, Serialize};

/// `error_code` values (protocol.md, "Error codes in frames", plus the close-table extras).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    AuthInvalid,
    TokenExpired,
    Forbidden,
    AuthTimeout,
    /// Signing keys cannot be fetched right now (JWKS unreachable): retry later, not the token's fault.
    AuthUnavailable,
    InvalidJson,
    UnknownType,
    ValidationError,
    MessageTooLarge,
    RateLimitExceeded,
    EmptyMessage,
    LlmUnavailable,
    StorageUnavailable,
    Internal,
    Timeout,
    SlowConsumer,
    ServiceRestart,
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
