//! `GET /conformance/echo` (only with `PAM_CONFORMANCE_ECHO=true`, only on a loopback bind): a raw
//! WebSocket echo of text and binary messages for the Autobahn testsuite (scripts/autobahn.sh).
//! It goes through the production upgrade — the same refusals, buffer sizes, frame and message
//! limits — and fails connections the way PAM sockets do (`ws_failure.rs`: 1002, 1007, 1009), so
//! the testsuite grades the edge the chat sockets stand on; it just has no actor behind it and
//! sends no JSON `error` frame, which would be an unexpected message to the testsuite.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use pam_protocol::CloseCode;

use super::ws::{LiveSocket, refusal, sized, upgrade_rejected};
use super::ws_failure::{ReadFailure, classify};
use crate::http::state::SharedState;

/// The echo handler.
pub async fn echo(
    State(state): State<SharedState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return upgrade_rejected(rejection),
    };
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let live = LiveSocket::new(&state);
    sized(ws, state.settings.max_frame_bytes).on_upgrade(move |socket| async move {
        let _live = live;
        echo_socket(socket).await;
    })
}

/// Echoes until the peer closes (tungstenite answers its close frame and ends the stream on the
/// next read) or breaks the protocol (then our close frame goes out and the socket is dropped).
async fn echo_socket(mut socket: WebSocket) {
    while let Some(next) = socket.recv().await {
        let reply = match next {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => continue,
            Err(error) => {
                let (code, reason) = match classify(&error) {
                    ReadFailure::TooBig => (CloseCode::MessageTooBig, CloseCode::MessageTooBig.reason()),
                    ReadFailure::Violation(code, reason) => (code, reason),
                    ReadFailure::Transport => return,
                };
                let _ = socket.send(Message::Close(Some(CloseFrame { code: code.code(), reason: reason.into() }))).await;
                return;
            }
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
