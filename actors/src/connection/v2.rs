//! The v2 half of `ConnectionActor`: `seq` on every frame (through the connection's resumable
//! stream), the welcome, `cancel`, `resume`, `auth_refresh`, and the `auth_expiring` / 4401
//! timers. A legacy socket never allocates any of this.
//! Part of the connection actor; imports the stream and the orchestrator's messages.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::{CloseCode, ErrorCode, ErrorFrame, ResumeFailure, SeqFrame, ServerFrame, UserId, V2Error, V2Frame, Welcome};
use ractor::ActorRef;
use tokio::time::Instant;

use super::{ConnectionState, auth::instant_of_exp};
use crate::messages::connection::ConnectionMsg;
use crate::messages::orchestrator::OrchestratorMsg;
use crate::metrics_names::{AUTH_FAILURES_TOTAL, count_frame};
use crate::outbound::{CloseRequest, OutFrame, SendError};
use crate::ports::AuthError;
use crate::stream::ResumableStream;

/// `auth_expiring` goes out this long before `exp`.
const EXPIRY_WARNING: Duration = Duration::from_secs(60);
/// `auth_refresh` frames closer together than this are refused (each verifies a token and
/// re-arms the expiry timers; a client refreshes once per token lifetime).
const AUTH_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A timer task of this connection; aborted when replaced and when the connection ends, so
/// nothing of a closed socket stays pinned until a far-off deadline.
type Timer = tokio::task::JoinHandle<Result<(), ractor::MessagingErr<ConnectionMsg>>>;

/// Per-connection v2 state (boxed, so a legacy socket pays one pointer).
#[derive(Default)]
pub(super) struct V2State {
    /// The resumable stream, from the welcome on.
    pub(super) stream: Option<Arc<ResumableStream>>,
    /// Frames sent before the welcome (errors, pongs) are numbered from here.
    pre_seq: u64,
    /// Bumped by every token; timers of an older token are ignored.
    auth_generation: u64,
    /// `auth_expiring` and the 4401 close of the current token.
    expiry_timers: Vec<Timer>,
    /// The `auth` frame deadline, until the socket authenticates.
    pub(super) auth_timer: Option<Timer>,
    /// When the last `auth_refresh` was taken.
    last_refresh: Option<Instant>,
    /// The user's stored pushes wait for the client's resume decision (see `STORED_AFTER_WELCOME`).
    pub(super) stored_waiting: bool,
}

impl V2State {
    fn cancel_expiry_timers(&mut self) {
        for timer in self.expiry_timers.drain(..) {
            timer.abort();
        }
    }
}

impl Drop for V2State {
    fn drop(&mut self) {
        self.cancel_expiry_timers();
        if let Some(timer) = self.auth_timer.take() {
            timer.abort();
        }
    }
}

impl ConnectionState {
    /// Sends a v2 frame: through the stream once there is one, numbered locally before.
    pub(super) fn send_v2(&mut self, myself: &ActorRef<ConnectionMsg>, frame: V2Frame) {
        self.send_v2_numbered(myself, frame);
    }

    /// [`send_v2`](Self::send_v2), returning the frame's `seq` (`None` on a legacy socket).
    pub(super) fn send_v2_numbered(&mut self, myself: &ActorRef<ConnectionMsg>, frame: V2Frame) -> Option<u64> {
        let v2 = self.v2.as_mut()?;
        if let Some(stream) = &v2.stream {
            return Some(stream.send(frame));
        }
        v2.pre_seq += 1;
        let seq = v2.pre_seq;
        let kind = frame.kind();
        match self.outbound.send(OutFrame::Text(SeqFrame { seq, frame }.to_text())) {
            Ok(()) => count_frame("out", kind),
            Err(SendError::Full) => self.close(myself, CloseCode::SlowConsumer, ""),
            Err(SendError::Closed) => {}
        }
        Some(seq)
    }

    /// Turns still running when the socket goes run to their end (legacy answers into the void,
    /// v2 into the stream for a `resume`): the orchestrator stops once its queue is done.
    pub(super) fn release_running_turns(&mut self) {
        if let Some(orchestrator) = self.orchestrator.take() {
            let _ = orchestrator.cast(OrchestratorMsg::Finish);
        }
    }

    /// The close's error frame, numbered like every other v2 frame.
    pub(super) fn stamp_close(&mut self, request: &mut CloseRequest, code: CloseCode) {
        let (Some(v2), Some(error_code)) = (self.v2.as_mut(), code.error_code()) else { return };
        let frame = V2Frame::error(None, error_code, request.reason.clone());
        request.error_frame = Some(match &v2.stream {
            Some(stream) => stream.stamp(frame),
            None => {
                v2.pre_seq += 1;
                SeqFrame { seq: v2.pre_seq, frame }.to_text()
            }
        });
    }

    pub(super) fn welcome_v2(&mut self, myself: &ActorRef<ConnectionMsg>, user: UserId) {
        let Some(v2) = self.v2.as_mut() else { return };
        let stream = self.deps.resume.open(user, v2.pre_seq + 1);
        let _ = stream.attach(&self.conn_id, self.outbound.clone(), myself.clone(), None);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let heartbeat_ms = millis(self.deps.settings.ping_interval);
        let window_ms = millis(self.deps.resume.window());
        let welcome = Welcome::new(self.conn_id.clone(), stream.id(), &*stream.epoch(), heartbeat_ms, window_ms);
        stream.send(V2Frame::Welcome(welcome));
        v2.stream = Some(stream);
        self.schedule_expiry(myself);
    }

    /// Arms `auth_expiring` (60 s before `exp`) and the 4401 close (at `exp`) for the current token.
    fn schedule_expiry(&mut self, myself: &ActorRef<ConnectionMsg>) {
        let (Some(v2), Some(expires_at)) = (self.v2.as_mut(), self.expires_at) else { return };
        v2.auth_generation += 1;
        let generation = v2.auth_generation;
        let left = expires_at.saturating_duration_since(Instant::now());
        // Replaced, not added: a refreshed token's old timers end here.
        v2.cancel_expiry_timers();
        v2.expiry_timers.push(myself.send_after(left.saturating_sub(EXPIRY_WARNING), move || ConnectionMsg::TokenExpiring(generation)));
        v2.expiry_timers.push(myself.send_after(left, move || ConnectionMsg::TokenExpired(generation)));
    }

    pub(super) fn on_token_expiring(&mut self, myself: &ActorRef<ConnectionMsg>, generation: u64) {
        if self.v2.as_ref().is_none_or(|v2| v2.auth_generation != generation) {
            return;
        }
        let Some(expires_at) = self.expires_at else { return };
        let left = expires_at.saturating_duration_since(Instant::now());
        let expires_in_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        self.send_v2(myself, V2Frame::AuthExpiring { expires_in_ms });
    }

    pub(super) fn on_token_expired(&mut self, myself: &ActorRef<ConnectionMsg>, generation: u64) {
        if self.v2.as_ref().is_some_and(|v2| v2.auth_generation == generation) {
            metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => "expired").increment(1);
            self.close(myself, CloseCode::TokenExpired, "token expired; send auth_refresh before exp or reconnect");
        }
    }

    /// `auth_refresh`: a valid token for the same user replaces the current one in place.
    pub(super) async fn on_auth_refresh(&mut self, myself: &ActorRef<ConnectionMsg>, token: &str) {
        let now = Instant::now();
        let Some(v2) = self.v2.as_mut() else { return };
        if v2.last_refresh.is_some_and(|last| now.duration_since(last) < AUTH_REFRESH_MIN_INTERVAL) {
            let every = AUTH_REFRESH_MIN_INTERVAL.as_secs();
            return self.rate_limited(myself, &None, format!("auth_refresh at most once every {every} s; refresh once per token"));
        }
        v2.last_refresh = Some(now);
        match self.verify(token).await {
            Ok((user, expires_at)) if Some(&user) == self.user.as_ref() => {
                self.expires_at = expires_at.map(instant_of_exp);
                tracing::debug!(conn_id = %self.conn_id, "token refreshed");
                self.schedule_expiry(myself);
            }
            Ok(_) => self.refuse(myself, AuthError::Forbidden),
            Err(error) => self.refuse(myself, error),
        }
    }

    /// `cancel`: the orchestrator stops the running chat with this id (its partial answer is
    /// stored and sent); a second cancel of it, like one of an unknown id, gets an error frame.
    pub(super) fn on_cancel(&mut self, myself: &ActorRef<ConnectionMsg>, id: String) {
        let running = self.in_flight.values_mut().find(|f| !f.cancelled && f.client_id.as_ref() == Some(&id));
        match (running, &self.orchestrator) {
            (Some(in_flight), Some(orchestrator)) => {
                in_flight.cancelled = true;
                let _ = orchestrator.cast(OrchestratorMsg::Cancel(id));
            }
            _ => {
                let frame = V2Frame::error(Some(id), ErrorCode::ValidationError, "no running chat with this id");
                self.send_v2(myself, frame);
            }
        }
    }

    pub(super) fn resume_failed(&mut self, myself: &ActorRef<ConnectionMsg>, current: &ResumableStream, reason: ResumeFailure) {
        let frame = V2Frame::ResumeFailed { stream_id: current.id().to_string(), reason };
        self.send_v2(myself, frame);
    }
}

/// The v2 form of a frame built by the dialect-neutral code (errors, ping, pong).
pub(super) fn to_v2(frame: ServerFrame) -> Option<V2Frame> {
    match frame {
        ServerFrame::Error(ErrorFrame { error_code, message, id, retryable }) => {
            let retryable = retryable.unwrap_or_else(|| V2Error::default_retryable(error_code));
            Some(V2Frame::Error(V2Error { id, error_code, message, retryable }))
        }
        ServerFrame::Ping { timestamp } => Some(V2Frame::Ping { timestamp }),
        ServerFrame::Pong { timestamp } => Some(V2Frame::Pong { timestamp }),
        ServerFrame::Connection(_) | ServerFrame::ChatResponse(_) => None,
    }
}
