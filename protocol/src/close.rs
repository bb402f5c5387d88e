//! The close-code table: every code the server sends, its name, its reason and the error code
//! of the `error` frame that precedes it. The gateway and the actors take codes only from here,
//! and so do metric labels and monitor keys: [`CloseCode::label_for`] maps any code a peer may
//! send onto a closed set.

use crate::ErrorCode;

/// WebSocket close reasons must fit a control frame: 125 bytes minus the 2-byte code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

macro_rules! close_table {
    ($( $variant:ident = $code:literal, $name:literal, $error:expr, $reason:literal; )*) => {
        /// Every close code the server may send (protocol.md, "Close codes").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum CloseCode { $( #[doc = concat!("`", stringify!($code), "` (", $name, "): ", $reason, ".")] $variant, )* }

        impl CloseCode {
            /// All codes, in table order.
            pub const ALL: &'static [CloseCode] = &[ $( CloseCode::$variant, )* ];

            /// The numeric code sent in the close frame.
            pub const fn code(self) -> u16 { match self { $( CloseCode::$variant => $code, )* } }

            /// The table name, e.g. `slow_consumer`.
            pub const fn name(self) -> &'static str { match self { $( CloseCode::$variant => $name, )* } }

            /// The default human-readable reason (≤ 123 bytes).
            pub const fn reason(self) -> &'static str { match self { $( CloseCode::$variant => $reason, )* } }

            /// The `error_code` of the `error` frame sent before this close, if any.
            pub const fn error_code(self) -> Option<ErrorCode> { match self { $( CloseCode::$variant => $error, )* } }

            /// The numeric code as a static string (`"4408"`): a metric label that costs no allocation.
            pub const fn label(self) -> &'static str { match self { $( CloseCode::$variant => stringify!($code), )* } }
        }
    };
}

close_table! {
    Normal = 1000, "normal", None, "session ended";
    GoingAway = 1001, "going_away", Some(ErrorCode::Timeout), "no pong or frame received in time";
    ProtocolError = 1002, "protocol_error", Some(ErrorCode::ProtocolError), "protocol error";
    InvalidPayload = 1007, "invalid_payload", Some(ErrorCode::ProtocolError), "invalid UTF-8 in a text frame or close reason";
    PolicyViolation = 1008, "policy_violation", Some(ErrorCode::ValidationError), "too many invalid frames in a row";
    MessageTooBig = 1009, "message_too_big", Some(ErrorCode::MessageTooLarge), "frame exceeds the size limit";
    InternalError = 1011, "internal_error", Some(ErrorCode::Internal), "internal error";
    ServiceRestart = 1012, "service_restart", Some(ErrorCode::ServiceRestart), "server restarting, please reconnect";
    TryAgainLater = 1013, "try_again_later", Some(ErrorCode::StorageUnavailable), "temporarily unavailable, try again later";
    AuthUnavailable = 1013, "try_again_later", Some(ErrorCode::AuthUnavailable), "cannot verify tokens right now, try again later";
    TokenExpired = 4401, "token_expired", Some(ErrorCode::TokenExpired), "token expired";
    SlowConsumer = 4408, "slow_consumer", Some(ErrorCode::SlowConsumer), "client is not reading fast enough";
    RateLimited = 4429, "rate_limited", Some(ErrorCode::RateLimitExceeded), "too many rate-limit violations";
    AuthInvalid = 4501, "auth_invalid", Some(ErrorCode::AuthInvalid), "authentication failed";
    Forbidden = 4503, "forbidden", Some(ErrorCode::Forbidden), "token does not grant access to this user";
    TooManyConnections = 4504, "too_many_connections", Some(ErrorCode::TooManyConnections), "too many connections for this user";
    AuthTimeout = 4508, "auth_timeout", Some(ErrorCode::AuthTimeout), "no auth frame received in time";
}

/// The label of every close code outside the table and [`RFC_EXTRA_LABELS`].
pub const OTHER_CLOSE_LABEL: &str = "other";

/// Codes registered by RFC 6455 §7.4.1 that are not in the table but are worth telling apart:
/// 1003 and 1010 are the ones a client may send, 1005 (no status code) and 1006 (no close frame)
/// are recorded for peers that ended that way, and 1014/1015 complete the registry.
const RFC_EXTRA_LABELS: [(u16, &str); 6] = [(1003, "1003"), (1005, "1005"), (1006, "1006"), (1010, "1010"), (1014, "1014"), (1015, "1015")];

impl CloseCode {
    /// The metric label and monitor key for any close code, sent or received: the code itself
    /// (as a static string) when it is in the table or among the RFC 6455 codes above,
    /// [`OTHER_CLOSE_LABEL`] for everything else. A client picks its own close code (3000–4999
    /// are all valid on the wire), so its codes must never become labels one for one.
    pub fn label_for(code: u16) -> &'static str {
        if let Some(known) = Self::from_code(code) {
            return known.label();
        }
        RFC_EXTRA_LABELS.iter().find(|(extra, _)| *extra == code).map_or(OTHER_CLOSE_LABEL, |(_, label)| label)
    }

    /// 4500–4999 ask the client not to reconnect (without user action); every other code, 4000–4499
    /// and the 1xxx ones, allows a reconnect with backoff (1000 needs none: the socket ended on purpose).
    pub const fn may_reconnect(self) -> bool {
        !matches!(self.code(), 4500..=4999)
    }

    /// Looks a numeric code up in the table.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// `detail` cut to fit a close frame, at a char boundary; the default reason when empty.
    pub fn reason_with(self, detail: &str) -> String {
        let text = if detail.is_empty() { self.reason() } else { detail };
        let mut end = text.len().min(MAX_CLOSE_REASON_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_fits_a_close_frame_and_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in CloseCode::ALL {
            assert!(code.reason().len() <= MAX_CLOSE_REASON_BYTES, "{code:?}");
            assert!(!code.reason().is_empty(), "{code:?}");
            // 1013 is the one code with two rows (two error codes); the first row is its default.
            assert!(seen.insert((code.code(), code.error_code())), "duplicate {}", code.code());
            assert_eq!(CloseCode::from_code(code.code()).map(CloseCode::name), Some(code.name()));
        }
        assert_eq!(CloseCode::from_code(1013), Some(CloseCode::TryAgainLater));
        assert_eq!(CloseCode::AuthUnavailable.code(), 1013);
        assert_eq!(CloseCode::AuthUnavailable.error_code(), Some(ErrorCode::AuthUnavailable));
    }

    #[test]
    fn only_normal_close_has_no_error_frame() {
        for code in CloseCode::ALL {
            assert_eq!(code.error_code().is_none(), *code == CloseCode::Normal, "{code:?}");
        }
    }

    #[test]
    fn every_possible_code_maps_onto_a_small_closed_set_of_labels() {
        let labels: std::collections::HashSet<&str> = (0..=u16::MAX).map(CloseCode::label_for).collect();
        let table_codes: std::collections::HashSet<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(labels.len(), table_codes.len() + RFC_EXTRA_LABELS.len() + 1, "{labels:?}");
        for code in CloseCode::ALL {
            assert_eq!(code.label(), code.code().to_string());
            assert_eq!(CloseCode::label_for(code.code()), code.label());
        }
        assert_eq!(CloseCode::label_for(1006), "1006");
        assert_eq!(CloseCode::label_for(3000), OTHER_CLOSE_LABEL);
        assert_eq!(CloseCode::label_for(4999), OTHER_CLOSE_LABEL);
    }

    #[test]
    fn protocol_violations_close_with_an_error_frame_naming_protocol_error() {
        assert_eq!(CloseCode::ProtocolError.code(), 1002);
        assert_eq!(CloseCode::InvalidPayload.code(), 1007);
        assert_eq!(CloseCode::ProtocolError.error_code(), Some(ErrorCode::ProtocolError));
        assert_eq!(CloseCode::InvalidPayload.error_code(), Some(ErrorCode::ProtocolError));
    }

    #[test]
    fn reconnect_range_follows_the_table() {
        assert!(CloseCode::SlowConsumer.may_reconnect());
        assert!(CloseCode::TokenExpired.may_reconnect());
        assert!(!CloseCode::AuthInvalid.may_reconnect());
        assert!(!CloseCode::Forbidden.may_reconnect());
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let long = "é".repeat(100);
        let reason = CloseCode::InternalError.reason_with(&long);
        assert!(reason.len() <= MAX_CLOSE_REASON_BYTES);
        assert!(reason.chars().all(|c| c == 'é'));
        assert_eq!(CloseCode::InternalError.reason_with(""), "internal error");
    }
}
