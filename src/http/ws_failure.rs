//! What a failed WebSocket read means: tungstenite reports a client's RFC 6455 violations as
//! `Error::Protocol` / `Error::Utf8` and a frame over the limits as `Error::Capacity`; each
//! becomes the close code the RFC asks for (§7.4.1) with a short reason, and everything else is
//! the transport ending (recorded as 1006, nothing left to send).

use pam_protocol::CloseCode;
use tungstenite::error::ProtocolError;

/// How a read error ends the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFailure {
    /// A frame or message over `PAM_MAX_FRAME_BYTES`: close 1009.
    TooBig,
    /// The client broke RFC 6455: close with this code (1002, or 1007 for invalid UTF-8) and this
    /// reason (≤ 123 bytes), after a `PROTOCOL_ERROR` error frame on PAM sockets.
    Violation(CloseCode, &'static str),
    /// The connection dropped, reset or ended without a close frame: nothing can be sent.
    Transport,
}

/// Classifies the error a WebSocket read returned (axum wraps tungstenite's error).
pub fn classify(error: &axum::Error) -> ReadFailure {
    match std::error::Error::source(error).and_then(|inner| inner.downcast_ref::<tungstenite::Error>()) {
        Some(error) => classify_tungstenite(error),
        None => ReadFailure::Transport,
    }
}

fn classify_tungstenite(error: &tungstenite::Error) -> ReadFailure {
    use tungstenite::Error;
    match error {
        Error::Capacity(_) => ReadFailure::TooBig,
        // §8.1: a text message, and §5.5.1: a close reason, must be UTF-8; §7.4.1 gives 1007.
        Error::Utf8(_) => ReadFailure::Violation(CloseCode::InvalidPayload, "invalid UTF-8 in a text frame or close reason"),
        Error::Protocol(violation) => match protocol_violation(violation) {
            Some(reason) => ReadFailure::Violation(CloseCode::ProtocolError, reason),
            None => ReadFailure::Transport,
        },
        _ => ReadFailure::Transport,
    }
}

/// The close reason for a client's violation; `None` for what is not one (a reset, our own send
/// after closing, handshake errors that cannot happen after the upgrade).
fn protocol_violation(error: &ProtocolError) -> Option<&'static str> {
    Some(match error {
        // §5.2: RSV1–3 must be 0 unless an extension was negotiated (none ever is here).
        ProtocolError::NonZeroReservedBits => "protocol error: reserved bits set without a negotiated extension",
        // §5.1: every client frame is masked.
        ProtocolError::UnmaskedFrameFromClient => "protocol error: unmasked frame from the client",
        // §5.5: control frames are never fragmented and carry at most 125 bytes.
        ProtocolError::FragmentedControlFrame => "protocol error: fragmented control frame",
        ProtocolError::ControlFrameTooBig => "protocol error: control frame payload over 125 bytes",
        // §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
        ProtocolError::UnknownControlFrameType(_) | ProtocolError::UnknownDataFrameType(_) | ProtocolError::InvalidOpcode(_) => {
            "protocol error: reserved opcode"
        }
        // §5.4: continuation frames only continue an open fragmented message, and a new data
        // frame may not start inside one.
        ProtocolError::UnexpectedContinueFrame => "protocol error: continuation frame without a fragmented message",
        ProtocolError::ExpectedFragment(_) => "protocol error: data frame inside a fragmented message",
        // §5.5.1: a close payload is empty or starts with a 2-byte code.
        ProtocolError::InvalidCloseSequence => "protocol error: close payload of 1 byte",
        // §5.5.1: nothing may follow the client's close frame.
        ProtocolError::ReceivedAfterClosing => "protocol error: frame after the close frame",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_reason_fits_a_close_frame() {
        let violations = [
            ProtocolError::NonZeroReservedBits,
            ProtocolError::UnmaskedFrameFromClient,
            ProtocolError::FragmentedControlFrame,
            ProtocolError::ControlFrameTooBig,
            ProtocolError::UnknownControlFrameType(11),
            ProtocolError::UnknownDataFrameType(3),
            ProtocolError::InvalidOpcode(16),
            ProtocolError::UnexpectedContinueFrame,
            ProtocolError::InvalidCloseSequence,
            ProtocolError::ReceivedAfterClosing,
        ];
        for violation in violations {
            let reason = protocol_violation(&violation).expect("a client violation");
            assert!(reason.len() <= pam_protocol::MAX_CLOSE_REASON_BYTES, "{reason}");
        }
        assert_eq!(protocol_violation(&ProtocolError::ResetWithoutClosingHandshake), None);
    }

    #[test]
    fn utf8_errors_close_with_1007_and_oversized_frames_with_1009() {
        let utf8 = classify_tungstenite(&tungstenite::Error::Utf8("bad".into()));
        assert!(matches!(utf8, ReadFailure::Violation(CloseCode::InvalidPayload, _)));
        let io = classify_tungstenite(&tungstenite::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert_eq!(io, ReadFailure::Transport);
    }
}
