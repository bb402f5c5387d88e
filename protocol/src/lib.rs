//! The PAM wire contract: frames of the legacy and v2 dialects, validated ids and the one
//! close-code table. Used by the actors (to build frames) and the gateway (to parse them).
//! Knows nothing of tokio or sockets: serde only. With the `schema` feature the frame types also
//! derive JSON Schema, and [`schema`] builds the JSON Schemas and the AsyncAPI document from them.

#![warn(missing_docs)]

mod client_wire;
mod close;
mod error_code;
mod ids;
mod inbound;
#[cfg(test)]
mod inbound_props;
mod outbound;
mod push;
#[cfg(feature = "schema")]
pub mod schema;
mod v2;

pub use client_wire::{LegacyChat, LegacyClientFrame, V2Chat, V2ClientFrame, legacy_client_examples, v2_client_examples};
pub use close::{CloseCode, MAX_CLOSE_REASON_BYTES, OTHER_CLOSE_LABEL};
pub use error_code::ErrorCode;
pub use ids::{IdError, SessionId, UserId};
pub use inbound::{ChatRequest, ClientFrame, FrameError, parse_client_frame};
pub use outbound::{ChatResponse, ConnectionFrame, ErrorFrame, ServerFrame, UiAction};
pub use push::{AlertContent, AlertPriority, ProactiveAlert, PushFrame, SeqPushFrame, TimerExpired, TimerNotification, TimerType};
pub use v2::{ChatEnd, ResumeFailure, SeqFrame, V2Error, V2Frame, Welcome};

/// The `Sec-WebSocket-Protocol` value that opts a socket into the v2 dialect.
pub const V2_SUBPROTOCOL: &str = "pam.v2";

/// Which dialect a socket speaks, fixed at upgrade time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// What today's browser client speaks: one terminal frame per chat, no ids.
    Legacy,
    /// Opt-in dialect with message ids, streaming, resume and token refresh.
    V2,
}
