//! `ConnectionActor`: one per accepted socket, linked under the `ConnectionSupervisor` and never
//! restarted. Authenticates after the upgrade, answers pings at once, validates and rate-limits
//! chats, starts the orchestrator lazily, runs keepalive from its state enum and ends every path
//! through one `close` that sends an error frame and a close code with a reason. The v2
//! dialect (ids, streaming, resume, token refresh) lives in `v2.rs`; authentication in `auth.rs`.
//! Imports the dependency bag, the messages, the outbound queue and the orchestrator; its
//! children (`auth`, `chat`, `keepalive`, `phase`, `push`, `resume`, `v2`) each add one concern.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use pam_protocol::{ClientFrame, CloseCode, Dialect, ErrorCode, ServerFrame, UserId, parse_client_frame};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::admission::UserSlot;
use crate::deps::ConnectionDeps;
use crate::messages::connection::{ConnectionMsg, Inbound};
use crate::messages::orchestrator::OrchestratorMsg;
use crate::metrics_names::{WS_CLOSED_TOTAL, WS_CONNECTIONS, WS_OPENED_TOTAL, count_frame};
use crate::outbound::{CloseRequest, OutFrame, Outbound, SendError};
use crate::ports::AuthError;
use crate::ws_monitor::ws_monitor;

mod auth;
mod chat;
mod keepalive;
mod phase;
mod push;
mod receipts;
mod resume;
mod v2;

use phase::ConnectionPhase;
use receipts::PongKind;

/// Invalid frames in a row that end the connection with 1008.
const MAX_INVALID_IN_ROW: u32 = 10;
/// Rate-limit violations within a minute that end the connection with 4429.
const MAX_VIOLATIONS: usize = 5;
/// Keys kept from `init`/`context_update` frames.
const MAX_CONTEXT_KEYS: usize = 64;

pub(crate) struct ConnectionActor;

/// What a `ConnectionActor` starts with, for one accepted socket.
pub struct ConnectionArgs {
    /// Names the connection in logs, frames and the stream's attachment.
    pub conn_id: String,
    /// Fixed at the upgrade: legacy or v2.
    pub dialect: Dialect,
    /// The raw `{user_id}` of the path, parsed after accept so a bad one still gets a reason;
    /// `None` on `/api/v2/pam/ws`.
    pub path_user: Option<String>,
    /// The `?token=` of the upgrade; `None` means a v2 `auth` frame must follow.
    pub token: Option<String>,
    /// The client's address (behind `PAM_TRUSTED_PROXIES`, the forwarded one), for the auth-failure
    /// throttle and the connection's logs.
    pub peer_ip: Option<std::net::IpAddr>,
    /// The bounded queue to the socket's writer task.
    pub outbound: Outbound,
    /// What every connection shares.
    pub deps: Arc<ConnectionDeps>,
}

struct InFlight {
    started: Instant,
    /// The v2 chat `id`.
    client_id: Option<String>,
    /// v2: a `cancel` for it went to the orchestrator already.
    cancelled: bool,
}

pub(crate) struct ConnectionState {
    conn_id: String,
    dialect: Dialect,
    path_user: Option<String>,
    token: Option<String>,
    peer_ip: Option<std::net::IpAddr>,
    user: Option<UserId>,
    _slot: Option<UserSlot>,
    expires_at: Option<Instant>,
    phase: ConnectionPhase,
    outbound: Outbound,
    deps: Arc<ConnectionDeps>,
    last_seen: Instant,
    last_ping: Instant,
    invalid_in_row: u32,
    violations: VecDeque<Instant>,
    client_context: Map<String, Value>,
    /// Started on the first chat; owns the connection's turns.
    orchestrator: Option<ActorRef<OrchestratorMsg>>,
    /// Chats read and not yet answered, by turn number (the dialect's bookkeeping: legacy
    /// pushes wait behind them, a drain waits for them).
    in_flight: HashMap<u64, InFlight>,
    next_turn: u64,
    /// v2 state; `None` on legacy sockets.
    v2: Option<Box<v2::V2State>>,
    /// Held-back and already-sent server pushes.
    pushes: push::PushState,
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: ConnectionArgs) -> Result<Self::State, ActorProcessingErr> {
        metrics::counter!(WS_OPENED_TOTAL).increment(1);
        ws_monitor().opened(Instant::now());
        let now = Instant::now();
        let state = ConnectionState {
            conn_id: args.conn_id,
            dialect: args.dialect,
            path_user: args.path_user,
            token: args.token,
            peer_ip: args.peer_ip,
            user: None,
            _slot: None,
            expires_at: None,
            phase: ConnectionPhase::Accepted,
            outbound: args.outbound,
            deps: args.deps,
            last_seen: now,
            last_ping: now,
            invalid_in_row: 0,
            violations: VecDeque::new(),
            client_context: Map::new(),
            orchestrator: None,
            in_flight: HashMap::new(),
            next_turn: 0,
            v2: (args.dialect == Dialect::V2).then(Box::default),
            pushes: push::PushState::default(),
        };
        metrics::gauge!(WS_CONNECTIONS, "state" => "accepted").increment(1.0);
        Ok(state)
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let outcome = Box::pin(AssertUnwindSafe(state.start(&myself)).catch_unwind()).await;
        state.contain(&myself, outcome)
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // Boxed: ractor keeps the largest handler future inline in every actor's boxed loop for
        // its whole life; a box per message keeps idle sockets small.
        let outcome = Box::pin(AssertUnwindSafe(state.on_message(&myself, message)).catch_unwind()).await;
        state.contain(&myself, outcome)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Orchestrators are not linked (their turns outlive the socket); nothing else is either.
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            tracing::error!(conn_id = %state.conn_id, actor = %cell.get_id(), %error, "a linked actor failed");
        }
        Ok(())
    }
}

impl Drop for ConnectionState {
    fn drop(&mut self) {
        self.count_unproven();
        ws_monitor().moved(self.phase.label(), None);
        if let Some(label) = self.phase.label() {
            metrics::gauge!(WS_CONNECTIONS, "state" => label).decrement(1.0);
        }
        if let Some(orchestrator) = self.orchestrator.take() {
            // Queued turns still run; the orchestrator stops after them.
            let _ = orchestrator.cast(OrchestratorMsg::Finish);
        }
        if let Some(stream) = self.v2.as_ref().and_then(|v2| v2.stream.as_ref()) {
            self.deps.resume.detach(stream, &self.conn_id);
        }
    }
}

impl ConnectionState {
    /// What `post_start` does: authenticate the query token, or wait for a v2 `auth` frame.
    async fn start(&mut self, myself: &ActorRef<ConnectionMsg>) -> Result<(), ActorProcessingErr> {
        self.set_phase(ConnectionPhase::Authenticating);
        match self.token.take() {
            Some(token) => self.authenticate(myself, &token).await,
            None if self.dialect == Dialect::V2 => {
                let timer = myself.send_after(self.deps.settings.auth_timeout, || ConnectionMsg::AuthDeadline);
                if let Some(v2) = self.v2.as_mut() {
                    v2.auth_timer = Some(timer);
                }
            }
            None => self.refuse(myself, AuthError::Missing),
        }
        Ok(())
    }

    async fn on_message(&mut self, myself: &ActorRef<ConnectionMsg>, message: ConnectionMsg) -> Result<(), ActorProcessingErr> {
        if self.phase.is_closed() {
            return Ok(());
        }
        match message {
            ConnectionMsg::Inbound(frame, _permit) => self.on_inbound(myself, frame).await,
            ConnectionMsg::Tick => self.on_tick(myself),
            ConnectionMsg::ChatFinished(outcome) => self.on_chat_finished(myself, outcome),
            ConnectionMsg::Drain => self.on_drain(myself),
            ConnectionMsg::DrainDeadline => self.close(myself, CloseCode::ServiceRestart, ""),
            ConnectionMsg::AuthDeadline if self.user.is_none() => self.close(myself, CloseCode::AuthTimeout, ""),
            ConnectionMsg::AuthDeadline => {}
            ConnectionMsg::StreamedFinished(turn) => self.on_streamed_finished(myself, turn),
            ConnectionMsg::SlowConsumer => self.close(myself, CloseCode::SlowConsumer, ""),
            ConnectionMsg::StreamTaken => self.close(myself, CloseCode::Normal, "session resumed on another connection"),
            ConnectionMsg::TokenExpiring(generation) => self.on_token_expiring(myself, generation),
            ConnectionMsg::TokenExpired(generation) => self.on_token_expired(myself, generation),
            ConnectionMsg::Push(text) => self.on_push(myself, text, true),
            ConnectionMsg::ProofPing => self.on_proof_ping(myself),
            ConnectionMsg::StoredDue => self.release_stored(myself),
            ConnectionMsg::HeldFromStore(texts) => self.on_held_from_store(myself, texts),
            ConnectionMsg::StoredPush(text) => self.on_push(myself, text, false),
        }
        Ok(())
    }

    /// A handler that failed or panicked closes its own socket with 1011 (on v2 the error frame is
    /// numbered like every other frame) before the actor fails and the supervisor counts it; the
    /// supervisor's own close stays the fallback for what cannot get this far.
    fn contain(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        outcome: std::thread::Result<Result<(), ActorProcessingErr>>,
    ) -> Result<(), ActorProcessingErr> {
        let error: ActorProcessingErr = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(panic) => panic_text(panic.as_ref()).into(),
        };
        self.close(myself, CloseCode::InternalError, "internal error: connection handler failed");
        Err(error)
    }

    fn set_phase(&mut self, phase: ConnectionPhase) {
        ws_monitor().moved(self.phase.label(), phase.label());
        if let Some(label) = self.phase.label() {
            metrics::gauge!(WS_CONNECTIONS, "state" => label).decrement(1.0);
        }
        if let Some(label) = phase.label() {
            metrics::gauge!(WS_CONNECTIONS, "state" => label).increment(1.0);
        }
        self.phase = phase;
    }

    /// The one exit: error frame (where the table has one), close code and reason, metrics, stop.
    pub(crate) fn close(&mut self, myself: &ActorRef<ConnectionMsg>, code: CloseCode, detail: &str) {
        if self.phase.is_closed() {
            return;
        }
        let mut request = CloseRequest::from_table(code, detail);
        self.stamp_close(&mut request, code);
        tracing::info!(conn_id = %self.conn_id, code = code.code(), reason = request.reason, "closing connection");
        self.outbound.close(request);
        self.finish(myself, code.code());
    }

    /// Ends the actor after the peer (or the transport) ended the socket.
    fn finish(&mut self, myself: &ActorRef<ConnectionMsg>, code: u16) {
        metrics::counter!(WS_CLOSED_TOTAL, "code" => CloseCode::label_for(code)).increment(1);
        ws_monitor().closed(code, Instant::now());
        self.set_phase(ConnectionPhase::Closed { code });
        self.release_running_turns();
        myself.stop(None);
    }

    fn send(&mut self, myself: &ActorRef<ConnectionMsg>, frame: ServerFrame) {
        if self.v2.is_some() {
            match v2::to_v2(frame) {
                Some(frame) => self.send_v2(myself, frame),
                None => tracing::error!(conn_id = %self.conn_id, "a legacy-only frame was about to go to a v2 socket"),
            }
            return;
        }
        let kind = frame.kind();
        match self.outbound.send(OutFrame::Text(frame.to_text())) {
            Ok(()) => count_frame("out", kind),
            Err(SendError::Full) => self.close(myself, CloseCode::SlowConsumer, ""),
            Err(SendError::Closed) => {}
        }
    }

    async fn on_inbound(&mut self, myself: &ActorRef<ConnectionMsg>, frame: Inbound) {
        self.last_seen = Instant::now();
        self.phase.saw_peer();
        match frame {
            Inbound::Text(text) => self.on_text(myself, &text).await,
            Inbound::Binary => {
                count_frame("in", "binary");
                self.invalid(myself, ErrorCode::ValidationError, "binary frames are not supported; send JSON text".into());
            }
            Inbound::Control => {}
            Inbound::Pong(token) => self.on_pong(token, PongKind::WebSocket),
            Inbound::Closed(code) => self.finish(myself, code.unwrap_or(1005)),
            Inbound::TooBig => self.close(myself, CloseCode::MessageTooBig, ""),
            Inbound::Violation(code, detail) => self.close(myself, code, detail),
            Inbound::Broken(why) => {
                tracing::debug!(conn_id = %self.conn_id, why, "transport ended");
                self.finish(myself, 1006);
            }
        }
    }

    async fn on_text(&mut self, myself: &ActorRef<ConnectionMsg>, text: &str) {
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(error) => {
                count_frame("in", "invalid");
                return self.invalid(myself, error.error_code(), error.message());
            }
        };
        count_frame("in", client_kind(&frame));
        self.invalid_in_row = 0;
        if self.user.is_none() {
            // Only a v2 socket waiting for its `auth` frame gets here.
            return match frame {
                ClientFrame::Auth { token } => self.authenticate(myself, &token).await,
                ClientFrame::Ping { timestamp } => self.pong(myself, timestamp),
                _ => self.close(myself, CloseCode::AuthInvalid, "the first frame must be auth"),
            };
        }
        if !matches!(frame, ClientFrame::Resume { .. } | ClientFrame::Ping { .. } | ClientFrame::Pong { .. } | ClientFrame::Ack { .. }) {
            // A client that does something else is not resuming first.
            self.release_stored(myself);
        }
        match frame {
            ClientFrame::Chat(chat) => self.on_chat(myself, chat).await,
            ClientFrame::Ping { timestamp } => self.pong(myself, timestamp),
            ClientFrame::Context(context) => self.merge_context(myself, context),
            ClientFrame::Pong { timestamp } => self.on_pong(timestamp, PongKind::Json),
            ClientFrame::Ack { seq } if self.v2.is_some() => self.on_ack(seq),
            ClientFrame::Ack { .. } | ClientFrame::Ignored | ClientFrame::Auth { .. } => {}
            ClientFrame::AuthRefresh { token } if self.v2.is_some() => self.on_auth_refresh(myself, &token).await,
            ClientFrame::Cancel { id } if self.v2.is_some() => self.on_cancel(myself, id),
            ClientFrame::Dismiss { id } if self.v2.is_some() => self.on_dismiss(myself, id).await,
            ClientFrame::Resume { stream_id, epoch, last_seq } if self.v2.is_some() => {
                self.on_resume(myself, &stream_id, epoch.as_deref(), last_seq).await;
                self.release_stored(myself);
            }
            ClientFrame::AuthRefresh { .. } | ClientFrame::Cancel { .. } | ClientFrame::Dismiss { .. } | ClientFrame::Resume { .. } => {
                self.invalid(myself, ErrorCode::UnknownType, format!("'{}' is not supported on this socket", client_kind(&frame)));
            }
        }
    }

    fn invalid(&mut self, myself: &ActorRef<ConnectionMsg>, code: ErrorCode, message: String) {
        self.invalid_in_row += 1;
        if self.invalid_in_row >= MAX_INVALID_IN_ROW {
            self.close(myself, CloseCode::PolicyViolation, "");
        } else {
            self.send(myself, ServerFrame::error(code, message));
        }
    }

    fn pong(&mut self, myself: &ActorRef<ConnectionMsg>, timestamp: Option<Value>) {
        let timestamp = timestamp.unwrap_or_else(|| Value::from(unix_millis()));
        self.send(myself, ServerFrame::Pong { timestamp });
    }

    /// `init` / `context_update`: merged into the connection's context, all or nothing, within
    /// `MAX_CONTEXT_KEYS` keys and `PAM_MAX_CONTEXT_BYTES` bytes of JSON (per-socket state is
    /// bounded by bytes: 64 keys of 60 KiB would otherwise hold ~4 MiB).
    fn merge_context(&mut self, myself: &ActorRef<ConnectionMsg>, context: Map<String, Value>) {
        let mut merged = self.client_context.clone();
        merged.extend(context);
        let max = self.deps.settings.max_context_bytes;
        if json_len(&merged) > max {
            let message = format!("context holds at most {max} bytes of JSON; it is unchanged");
            return self.send(myself, ServerFrame::error(ErrorCode::MessageTooLarge, message));
        }
        if merged.len() > MAX_CONTEXT_KEYS {
            let message = format!("context holds at most {MAX_CONTEXT_KEYS} keys; it is unchanged");
            return self.send(myself, ServerFrame::error(ErrorCode::ValidationError, message));
        }
        self.client_context = merged;
    }
}

/// The size of a context as JSON, in bytes.
pub(crate) fn json_len(context: &Map<String, Value>) -> usize {
    serde_json::to_vec(context).map_or(usize::MAX, |json| json.len())
}

fn client_kind(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Chat(_) => "chat",
        ClientFrame::Ping { .. } => "ping",
        ClientFrame::Pong { .. } => "pong",
        ClientFrame::Ack { .. } => "ack",
        ClientFrame::Context(_) => "context",
        ClientFrame::Auth { .. } => "auth",
        ClientFrame::AuthRefresh { .. } => "auth_refresh",
        ClientFrame::Cancel { .. } => "cancel",
        ClientFrame::Dismiss { .. } => "dismiss",
        ClientFrame::Resume { .. } => "resume",
        ClientFrame::Ignored => "ignored",
    }
}

fn unix_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// ISO-8601 UTC with milliseconds, as the legacy client expects.
pub fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A panic's message, when it has one.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => format!("panicked: {text}"),
        (_, Some(text)) => format!("panicked: {text}"),
        _ => "panicked".to_string(),
    }
}
