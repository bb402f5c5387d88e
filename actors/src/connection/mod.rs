//! `ConnectionActor`: one per accepted socket, linked under the `ConnectionSupervisor` and never
//! restarted. Authenticates after the upgrade, answers pings at once, validates and rate-limits
//! chats, starts the orchestrator lazily, runs keepalive from its state enum and ends every path
//! through one `close` that sends an error frame and a close code with a reason.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{ClientFrame, CloseCode, ConnectionFrame, Dialect, ErrorCode, ServerFrame, SessionId, UserId, parse_client_frame};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::{Map, Value};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::admission::UserSlot;
use crate::metrics_names::{AUTH_FAILURES_TOTAL, USER_CAP_HITS_TOTAL, WS_CLOSED_TOTAL, WS_CONNECTIONS, WS_OPENED_TOTAL, count_frame};
use crate::orchestrator::OrchestratorMsg;
use crate::outbound::{CloseRequest, OutFrame, Outbound, SendError};
use crate::ports::{AuthError, LlmReply};
use crate::state::ConnectionPhase;

mod chat;
use crate::supervisor::ConnectionDeps;

/// Invalid frames in a row that end the connection with 1008.
const MAX_INVALID_IN_ROW: u32 = 10;
/// Rate-limit violations within a minute that end the connection with 4429.
const MAX_VIOLATIONS: usize = 5;
/// Keys kept from `init`/`context_update` frames.
const MAX_CONTEXT_KEYS: usize = 64;

pub struct ConnectionActor;

pub struct ConnectionArgs {
    pub conn_id: String,
    pub dialect: Dialect,
    /// The raw `{user_id}` of the path, parsed after accept so a bad one still gets a reason;
    /// `None` on `/api/v2/pam/ws`.
    pub path_user: Option<String>,
    pub token: Option<String>,
    /// The client's address, for the auth-failure throttle.
    pub peer_ip: Option<std::net::IpAddr>,
    pub outbound: Outbound,
    pub deps: Arc<ConnectionDeps>,
}

/// What the reader task saw on the socket.
#[derive(Debug)]
pub enum Inbound {
    Text(String),
    Binary,
    /// RFC 6455 ping or pong (the ping is answered by the socket layer).
    Control,
    /// The client sent a close frame (code if any).
    Closed(Option<u16>),
    /// A frame over `PAM_MAX_FRAME_BYTES`.
    TooBig,
    /// The transport failed or ended without a close frame.
    Broken(String),
}

/// Why a turn produced no model answer.
#[derive(Debug, Clone)]
pub struct TurnFailure {
    pub code: ErrorCode,
    pub message: String,
}

/// The orchestrator's report for one turn.
#[derive(Debug)]
pub struct ChatOutcome {
    pub turn: u64,
    pub session: SessionId,
    pub latency: Duration,
    pub result: Result<LlmReply, TurnFailure>,
}

pub enum ConnectionMsg {
    /// A frame from the reader; the permit bounds how far the reader runs ahead.
    Inbound(Inbound, Option<OwnedSemaphorePermit>),
    Tick,
    ChatFinished(ChatOutcome),
    /// Graceful shutdown: finish running chats, then close with 1012.
    Drain,
    /// The drain grace period is over.
    DrainDeadline,
    /// v2: no `auth` frame came in time.
    AuthDeadline,
}

struct InFlight {
    session: SessionId,
    started: Instant,
}

/// Aborts the keepalive timer task with the actor.
struct TimerGuard(tokio::task::JoinHandle<()>);

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct ConnectionState {
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
    orchestrator: Option<ActorRef<OrchestratorMsg>>,
    in_flight: HashMap<u64, InFlight>,
    next_turn: u64,
    _timer: Option<TimerGuard>,
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: ConnectionArgs) -> Result<Self::State, ActorProcessingErr> {
        metrics::counter!(WS_OPENED_TOTAL).increment(1);
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
            _timer: None,
        };
        metrics::gauge!(WS_CONNECTIONS, "state" => "accepted").increment(1.0);
        Ok(state)
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.set_phase(ConnectionPhase::Authenticating);
        let period = state.deps.settings.tick_period();
        state._timer = Some(TimerGuard(myself.send_interval(period, || ConnectionMsg::Tick)));
        match state.token.take() {
            Some(token) => state.authenticate(&myself, &token).await,
            None if state.dialect == Dialect::V2 => {
                myself.send_after(state.deps.settings.auth_timeout, || ConnectionMsg::AuthDeadline);
            }
            None => state.refuse(&myself, AuthError::Missing),
        }
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if state.phase.is_closed() {
            return Ok(());
        }
        match message {
            ConnectionMsg::Inbound(frame, _permit) => state.on_inbound(&myself, frame).await,
            ConnectionMsg::Tick => state.on_tick(&myself),
            ConnectionMsg::ChatFinished(outcome) => state.on_chat_finished(&myself, outcome),
            ConnectionMsg::Drain => state.on_drain(&myself),
            ConnectionMsg::DrainDeadline => state.close(&myself, CloseCode::ServiceRestart, ""),
            ConnectionMsg::AuthDeadline if state.user.is_none() => state.close(&myself, CloseCode::AuthTimeout, ""),
            ConnectionMsg::AuthDeadline => {}
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(conn_id = %state.conn_id, %error, "orchestrator failed; the connection stays open");
                state.orchestrator_gone(&myself, cell.get_id(), true);
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => state.orchestrator_gone(&myself, cell.get_id(), false),
            _ => {}
        }
        Ok(())
    }
}

impl Drop for ConnectionState {
    fn drop(&mut self) {
        if let Some(label) = self.phase.label() {
            metrics::gauge!(WS_CONNECTIONS, "state" => label).decrement(1.0);
        }
        if let Some(orchestrator) = self.orchestrator.take() {
            orchestrator.stop(None);
        }
    }
}

impl ConnectionState {
    fn set_phase(&mut self, phase: ConnectionPhase) {
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
        let request = CloseRequest::from_table(code, detail);
        tracing::info!(conn_id = %self.conn_id, code = code.code(), reason = request.reason, "closing connection");
        self.outbound.close(request);
        self.finish(myself, code.code());
    }

    /// Ends the actor after the peer (or the transport) ended the socket.
    fn finish(&mut self, myself: &ActorRef<ConnectionMsg>, code: u16) {
        metrics::counter!(WS_CLOSED_TOTAL, "code" => code.to_string()).increment(1);
        self.set_phase(ConnectionPhase::Closed { code });
        myself.stop(None);
    }

    async fn authenticate(&mut self, myself: &ActorRef<ConnectionMsg>, token: &str) {
        let path_user = match self.path_user.as_deref().map(UserId::parse).transpose() {
            Ok(path_user) => path_user,
            Err(_) => return self.refuse(myself, AuthError::Invalid("the user id in the path is not a uuid".into())),
        };
        let verdict = self.deps.authenticator.authenticate(token).await.and_then(|identity| {
            let user = match (path_user, identity.subject) {
                (Some(path), _) if identity.privileged => path,
                (Some(path), Some(subject)) if path == subject => subject,
                (Some(_), _) => return Err(AuthError::Forbidden),
                (None, Some(subject)) => subject,
                (None, None) => return Err(AuthError::Invalid("token has no sub".into())),
            };
            Ok((user, identity.expires_at))
        });
        match verdict {
            Ok((user, expires_at)) => self.ready(myself, user, expires_at),
            Err(error) => self.refuse(myself, error),
        }
    }

    fn refuse(&mut self, myself: &ActorRef<ConnectionMsg>, error: AuthError) {
        metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => error.metric_reason()).increment(1);
        if let (Some(ip), false) = (self.peer_ip, matches!(error, AuthError::Unavailable(_))) {
            self.deps.auth_throttle.record_failure(ip, Instant::now());
        }
        tracing::info!(conn_id = %self.conn_id, reason = error.metric_reason(), "authentication refused");
        let code = match error {
            AuthError::Missing | AuthError::Invalid(_) => CloseCode::AuthInvalid,
            AuthError::Expired => CloseCode::TokenExpired,
            AuthError::Forbidden => CloseCode::Forbidden,
            AuthError::Unavailable(_) => CloseCode::TryAgainLater,
        };
        self.close(myself, code, &error.to_string());
    }

    fn ready(&mut self, myself: &ActorRef<ConnectionMsg>, user: UserId, expires_at: Option<u64>) {
        let Some(slot) = self.deps.user_slots.acquire(&user) else {
            metrics::counter!(USER_CAP_HITS_TOTAL).increment(1);
            let detail = format!("more than {} connections for this user", self.deps.user_slots.cap());
            return self.close(myself, CloseCode::TooManyConnections, &detail);
        };
        self._slot = Some(slot);
        self.expires_at = expires_at.map(|exp| Instant::now() + Duration::from_secs(exp.saturating_sub(unix_now())));
        tracing::debug!(conn_id = %self.conn_id, %user, "authenticated");
        self.user = Some(user);
        self.last_seen = Instant::now();
        self.set_phase(ConnectionPhase::Ready { keepalive: crate::state::Keepalive::Alive });
        self.send(
            myself,
            ServerFrame::Connection(ConnectionFrame {
                status: "connected".into(),
                message: "Connected to PAM, your RV travel assistant".into(),
                timestamp: iso_now(),
                connection_id: self.conn_id.clone(),
                profile_integration: "enabled".into(),
            }),
        );
    }

    fn send(&mut self, myself: &ActorRef<ConnectionMsg>, frame: ServerFrame) {
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
            Inbound::Closed(code) => self.finish(myself, code.unwrap_or(1005)),
            Inbound::TooBig => self.close(myself, CloseCode::MessageTooBig, ""),
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
        match frame {
            ClientFrame::Chat(chat) => self.on_chat(myself, chat).await,
            ClientFrame::Ping { timestamp } => self.pong(myself, timestamp),
            ClientFrame::Context(context) => self.merge_context(myself, context),
            ClientFrame::Pong | ClientFrame::Ignored | ClientFrame::Auth { .. } => {}
            ClientFrame::AuthRefresh { .. } | ClientFrame::Cancel { .. } | ClientFrame::Resume { .. } => {
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

    fn merge_context(&mut self, myself: &ActorRef<ConnectionMsg>, context: Map<String, Value>) {
        for (key, value) in context {
            if self.client_context.len() >= MAX_CONTEXT_KEYS && !self.client_context.contains_key(&key) {
                return self.send(
                    myself,
                    ServerFrame::error(ErrorCode::ValidationError, format!("context holds at most {MAX_CONTEXT_KEYS} keys")),
                );
            }
            self.client_context.insert(key, value);
        }
    }

    fn on_tick(&mut self, myself: &ActorRef<ConnectionMsg>) {
        let now = Instant::now();
        if self.expires_at.is_some_and(|exp| now >= exp) {
            metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => "expired").increment(1);
            return self.close(myself, CloseCode::TokenExpired, "token expired; reconnect with a fresh token");
        }
        let settings = &self.deps.settings;
        if !(self.phase.is_ready() || matches!(self.phase, ConnectionPhase::Draining)) {
            return;
        }
        if now.duration_since(self.last_seen) >= settings.pong_timeout {
            let detail = format!("no pong or frame received for {} ms", settings.pong_timeout.as_millis());
            return self.close(myself, CloseCode::GoingAway, &detail);
        }
        if now.duration_since(self.last_ping) >= settings.ping_interval {
            self.last_ping = now;
            self.phase.pinged(now);
            self.send(myself, ServerFrame::Ping { timestamp: unix_millis() });
            if self.outbound.send(OutFrame::Ping).is_ok() {
                count_frame("out", "ws_ping");
            }
        }
    }

    fn on_drain(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if self.in_flight.is_empty() || self.user.is_none() {
            return self.close(myself, CloseCode::ServiceRestart, "");
        }
        self.set_phase(ConnectionPhase::Draining);
        myself.send_after(self.deps.settings.shutdown_grace, || ConnectionMsg::DrainDeadline);
    }

    fn close_if_drained(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if matches!(self.phase, ConnectionPhase::Draining) && self.in_flight.is_empty() {
            self.close(myself, CloseCode::ServiceRestart, "");
        }
    }
}

fn client_kind(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Chat(_) => "chat",
        ClientFrame::Ping { .. } => "ping",
        ClientFrame::Pong => "pong",
        ClientFrame::Context(_) => "context",
        ClientFrame::Auth { .. } => "auth",
        ClientFrame::AuthRefresh { .. } => "auth_refresh",
        ClientFrame::Cancel { .. } => "cancel",
        ClientFrame::Resume { .. } => "resume",
        ClientFrame::Ignored => "ignored",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn unix_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// ISO-8601 UTC with milliseconds, as the legacy client expects.
pub fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
