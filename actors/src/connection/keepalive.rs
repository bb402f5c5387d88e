//! Keepalive and drain of `ConnectionActor`: server pings, the pong deadline (1001), token
//! expiry on the tick, and the graceful drain (1012 at once on v2; on legacy once running chats
//! are answered).
//! Part of the connection actor; imports the phase and the outbound queue.

use pam_protocol::CloseCode;
use ractor::ActorRef;
use tokio::time::Instant;

use super::ConnectionState;
use super::phase::ConnectionPhase;
use crate::messages::connection::ConnectionMsg;
use crate::metrics_names::AUTH_FAILURES_TOTAL;

impl ConnectionState {
    pub(super) fn on_tick(&mut self, myself: &ActorRef<ConnectionMsg>) {
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
            self.send_pings(myself, true);
        }
    }

    /// Graceful shutdown. A v2 socket gets 1012 at once, even mid-answer: its running turns
    /// finish into the stream (they belong to the pipeline, not the socket) and the client resumes
    /// elsewhere. A legacy socket cannot resume: it gets its running chats' `chat_response` first.
    pub(super) fn on_drain(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if self.in_flight.is_empty() || self.user.is_none() || self.v2.is_some() {
            return self.close(myself, CloseCode::ServiceRestart, "");
        }
        self.set_phase(ConnectionPhase::Draining);
        myself.send_after(self.deps.settings.shutdown_grace, || ConnectionMsg::DrainDeadline);
    }

    pub(super) fn close_if_drained(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if matches!(self.phase, ConnectionPhase::Draining) && self.in_flight.is_empty() {
            self.close(myself, CloseCode::ServiceRestart, "");
        }
    }
}
