//! The WebSocket edge: only cheap checks before the 101, then the socket is split into a reader
//! task (feeding the `ConnectionActor` through a bounded permit pool) and a writer task owning
//! the sink, fed by the bounded outbound queue. Both tasks box their busy and closing paths: a
//! task's size is its largest state, and idle sockets hold it for their whole life. Every
//! server-started close goes out with a code and a reason; a client's RFC 6455 violations close
//! with 1002/1007 after a `PROTOCOL_ERROR` error frame (see `ws_failure.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pam_actors::metrics_names::WS_REJECTED_TOTAL;
use pam_actors::{CloseRequest, ConnectionArgs, ConnectionMsg, Inbound, OutFrame, Outbound, OutboundReceiver, SupervisorMsg, WriterEvent};
use pam_protocol::{CloseCode, Dialect, V2_SUBPROTOCOL};
use ractor::ActorRef;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};

use super::ws_failure::{ReadFailure, classify};
use crate::http::error::error_response;
use crate::http::state::SharedState;

/// tungstenite reads in chunks of this size and keeps the buffer for the socket's life; a chat
/// frame of ~2 KB takes two reads (a bigger frame grows it), and the default 128 KiB would cost
/// that much per idle socket. Measured per idle socket: 4 KiB → 18 KiB RSS, 2 KiB → 15.4–16.4,
/// 1 KiB (with the smaller tasks) → 14.1–14.8.
const READ_BUFFER_BYTES: usize = 1024;
/// Budget for flushing queued frames plus error and close frames when closing.
const CLOSE_BUDGET: Duration = Duration::from_secs(2);
/// How long to wait for the peer's close reply after ours.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// `GET /api/v1/pam/ws/{user_id}` and aliases: legacy, or v2 when the client offers the
/// `pam.v2` subprotocol (echoed in the 101).
pub async fn upgrade(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    Query(query): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => accept(state, peer, &headers, ws, Some(user_id), query.token).await,
        Err(rejection) => upgrade_rejected(rejection),
    }
}

/// `GET /api/v2/pam/ws`: v2 only; the user comes from the token (`?token=` or an `auth` frame).
pub async fn upgrade_v2(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => accept(state, peer, &headers, ws, None, query.token).await,
        Err(rejection) => upgrade_rejected(rejection),
    }
}

/// An upgrade request axum's extractor refused. Another `Sec-WebSocket-Version` than 13 gets 426
/// with `Sec-WebSocket-Version: 13` (RFC 6455 §4.4; RFC 9110 §15.5.22 adds `Upgrade`); the rest
/// keep axum's status, and the edge middleware makes their body the JSON error body.
pub fn upgrade_rejected(rejection: WebSocketUpgradeRejection) -> Response {
    if !matches!(rejection, WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_)) {
        return rejection.into_response();
    }
    metrics::counter!(WS_REJECTED_TOTAL, "reason" => "version").increment(1);
    let message = "only WebSocket version 13 (RFC 6455) is supported";
    let mut response = error_response(StatusCode::UPGRADE_REQUIRED, "UNSUPPORTED_WEBSOCKET_VERSION", message);
    response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response
}

/// The cheap refusals, then the 101: v2 on `/api/v2/pam/ws` (no path user) or when `pam.v2` was
/// offered, legacy otherwise. `peer` is the TCP peer; the client is who `PAM_TRUSTED_PROXIES`
/// says it is.
async fn accept(
    state: SharedState,
    peer: SocketAddr,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    path_user: Option<String>,
    token: Option<String>,
) -> Response {
    let client = state.trusted_proxies.client_ip(peer, headers);
    if let Some(refusal) = refusal(&state, headers) {
        return refusal;
    }
    let ws = sized(ws.protocols([V2_SUBPROTOCOL]), state.settings.max_frame_bytes);
    let dialect = if path_user.is_none() || ws.selected_protocol().is_some() { Dialect::V2 } else { Dialect::Legacy };
    if let Some(refusal) = throttled(&state, client, token.as_deref(), dialect).await {
        return refusal;
    }
    ws.on_upgrade(move |socket| {
        serve_socket(state, socket, path_user, token, dialect, client);
        std::future::ready(())
    })
    .into_response()
}

/// Buffers sized for idle sockets and the frame-size limit.
pub(super) fn sized(ws: WebSocketUpgrade, max: usize) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER_BYTES).write_buffer_size(0).max_write_buffer_size(max * 2).max_message_size(max).max_frame_size(max)
}

/// A refusal before the upgrade, counted in `pam_ws_rejected_total{reason}`.
fn refuse(reason: &'static str, status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    metrics::counter!(WS_REJECTED_TOTAL, "reason" => reason).increment(1);
    let mut response = error_response(status, code, message);
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

/// The cheap checks allowed before the 101 (draining, Origin, global cap): the response that
/// turns this upgrade away, if any.
pub(super) fn refusal(state: &SharedState, headers: &HeaderMap) -> Option<Response> {
    if state.is_draining() {
        return Some(refuse(
            "draining",
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_RESTART",
            "server restarting, reconnect shortly",
            Some(2),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if !state.origin_allowed(origin) {
            return Some(refuse("origin", StatusCode::FORBIDDEN, "ORIGIN_NOT_ALLOWED", "this origin may not open PAM sockets", None));
        }
    }
    if state.live_sockets.load(Ordering::Acquire) >= state.settings.max_connections {
        return Some(refuse(
            "capacity",
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "too many connections on this server, retry shortly",
            Some(5),
        ));
    }
    None
}

/// The per-IP auth-failure throttle: 429 for a client address with too many recent failures —
/// unless this upgrade's `?token=` verifies (verifying is cheap), so a valid user is never turned
/// away because others at the same address failed. A v2 upgrade without `?token=` authenticates
/// by its first frame, so it cannot be judged here: it is let through, its `auth` frame is
/// verified like any other, and a bad one closes 4429 while the address is throttled (4501
/// otherwise; counted as a failure). Refusals are logged once per address per window.
async fn throttled(state: &SharedState, client: IpAddr, token: Option<&str>, dialect: Dialect) -> Option<Response> {
    let now = Instant::now();
    let wait = state.deps.auth_throttle.retry_after(client, now)?;
    match token.filter(|t| !t.is_empty()) {
        Some(token) if state.deps.authenticator.authenticate(token).await.is_ok() => {
            tracing::debug!(%client, "throttled address, but the token verifies: upgrading");
            return None;
        }
        None if dialect == Dialect::V2 => {
            tracing::debug!(%client, "throttled address, v2 upgrade without a token: its auth frame decides");
            return None;
        }
        _ => {}
    }
    if let Some(suppressed) = state.deps.auth_throttle.log_refusal(client, now) {
        tracing::info!(%client, suppressed, "upgrade refused: too many failed authentications from this address (further refusals within the window are counted, not logged)");
    }
    let message = "too many failed authentications from this address; check the token and retry later";
    Some(refuse("auth_throttle", StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", message, Some(wait.as_secs() + 1)))
}

/// Counts a socket in `live_sockets` for as long as it is served.
pub(super) struct LiveSocket(SharedState);

impl LiveSocket {
    pub(super) fn new(state: &SharedState) -> Self {
        state.live_sockets.fetch_add(1, Ordering::AcqRel);
        LiveSocket(state.clone())
    }
}

impl Drop for LiveSocket {
    fn drop(&mut self) {
        self.0.live_sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sets the socket up, then serves it on a task of its own. Not an `async fn`: its arguments
/// (the unsplit socket alone is 368 bytes) would stay in the future's state for the socket's
/// whole life, and axum's upgrade task wraps more around it; this way an idle socket's reader
/// task holds only what reading needs (~1.1 KiB less per socket).
fn serve_socket(state: SharedState, socket: WebSocket, path_user: Option<String>, token: Option<String>, dialect: Dialect, client: IpAddr) {
    let live = LiveSocket::new(&state);
    let (outbound, out_rx) = Outbound::channel(state.deps.settings.outbound_queue);
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, out_rx));
    let args = ConnectionArgs {
        conn_id: uuid::Uuid::new_v4().simple().to_string(),
        dialect,
        path_user,
        token,
        peer_ip: Some(client),
        outbound: outbound.clone(),
        deps: state.deps.clone(),
    };
    let inbound_queue = state.deps.settings.inbound_queue;
    let supervisor = state.supervisor.clone();
    // Boxed: the RPC's state is freed once it answers instead of sizing the task.
    let open = Box::pin(async move { ractor::call!(supervisor, SupervisorMsg::Open, args) });
    tokio::spawn(async move {
        let _live = live;
        let actor = match open.await {
            Ok(Ok(actor)) => actor,
            failure => {
                tracing::error!(?failure, "could not start a connection actor");
                outbound.close(CloseRequest::from_table(CloseCode::InternalError, "internal error: could not start the connection"));
                drop(outbound);
                let _ = writer.await;
                return;
            }
        };
        drop(outbound);
        read_loop(stream, actor, writer, inbound_queue).await;
    });
}

/// Feeds the actor until the peer closes or the writer has closed the socket.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    actor: ActorRef<ConnectionMsg>,
    mut writer: tokio::task::JoinHandle<()>,
    inbound_queue: usize,
) {
    let permits = Arc::new(Semaphore::new(inbound_queue.max(1)));
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut writer => {
                // The writer ended: a close the actor asked for, or a write that failed (the peer
                // reset the connection). The actor is told either way, or a socket whose write
                // failed would stay ready — holding one of its user's slots — until the pong timeout.
                let _ = actor.cast(ConnectionMsg::Inbound(Inbound::Broken("the socket could not be written".into()), None));
                return Box::pin(linger(stream)).await;
            }
            next = stream.next() => next,
        };
        let (frame, last) = match next {
            Some(Ok(Message::Text(text))) => (Inbound::Text(text.as_str().to_owned()), false),
            Some(Ok(Message::Binary(_))) => (Inbound::Binary, false),
            Some(Ok(Message::Ping(_))) => (Inbound::Control, false),
            Some(Ok(Message::Pong(payload))) => (Inbound::Pong(std::str::from_utf8(&payload).ok().and_then(|t| t.parse().ok())), false),
            Some(Ok(Message::Close(frame))) => (Inbound::Closed(frame.map(|f| f.code)), true),
            Some(Err(error)) => match classify(&error) {
                ReadFailure::TooBig => (Inbound::TooBig, true),
                ReadFailure::Violation(code, reason) => (Inbound::Violation(code, reason), true),
                ReadFailure::Transport => (Inbound::Broken(error.to_string()), true),
            },
            None => (Inbound::Broken("stream ended".into()), true),
        };
        // The waiting path is boxed so the task stays small while the actor keeps up.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match Box::pin(permits.clone().acquire_owned()).await {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        if actor.cast(ConnectionMsg::Inbound(frame, Some(permit))).is_err() || last {
            // The actor decides how to end; the writer finishes the close.
            let _ = Box::pin(timeout(CLOSE_BUDGET + CLOSE_LINGER, writer)).await;
            return;
        }
    }
}

/// After our close frame, give the peer a moment to answer with its own.
async fn linger(mut stream: SplitStream<WebSocket>) {
    let _ = timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut queue: OutboundReceiver) {
    loop {
        let event = queue.next().await;
        match event {
            // Boxed, like the closing paths: the task's size is its largest state, held while idle.
            WriterEvent::Frame(frame) => {
                if !Box::pin(send_frame(&mut sink, &mut queue, frame)).await {
                    return;
                }
            }
            WriterEvent::Close(request) => return Box::pin(close_socket(&mut sink, &mut queue, request)).await,
            WriterEvent::Ended => {
                // The actor always closes explicitly; reaching this means it vanished without a word.
                let reason = CloseCode::InternalError.reason_with("internal error: connection ended unexpectedly");
                return Box::pin(close_socket(
                    &mut sink,
                    &mut queue,
                    CloseRequest { error_frame: None, code: CloseCode::InternalError.code(), reason },
                ))
                .await;
            }
        }
    }
}

/// Sends one frame unless a close request overtakes it (then closes); false when the socket is done.
async fn send_frame(sink: &mut SplitSink<WebSocket, Message>, queue: &mut OutboundReceiver, frame: OutFrame) -> bool {
    tokio::select! {
        biased;
        close = queue.wait_close() => {
            close_socket(sink, queue, close).await;
            false
        }
        sent = sink.send(to_message(frame)) => sent.is_ok(),
    }
}

/// Flushes what is queued, then the error frame and the close frame, within one budget. When the
/// peer closed first, the flush sends tungstenite's queued echo of its close frame (RFC 6455
/// §5.5.1) and the sends after it fail: nothing may follow a close.
async fn close_socket(sink: &mut SplitSink<WebSocket, Message>, queue: &mut OutboundReceiver, request: CloseRequest) {
    let deadline = Instant::now() + CLOSE_BUDGET;
    let _ = tokio::time::timeout_at(deadline, async {
        sink.flush().await?;
        while let Some(frame) = queue.try_next_frame() {
            sink.send(to_message(frame)).await?;
        }
        if let Some(error_frame) = request.error_frame {
            sink.send(Message::Text(error_frame.into())).await?;
        }
        sink.send(Message::Close(Some(CloseFrame { code: request.code, reason: request.reason.into() }))).await?;
        sink.flush().await
    })
    .await;
}

fn to_message(frame: OutFrame) -> Message {
    match frame {
        OutFrame::Text(text) => Message::Text(text.into()),
        OutFrame::Ping(token) => Message::Ping(token.to_string().into_bytes().into()),
    }
}
