//! The authentication half of `ConnectionActor`: verify the token (query, v2 `auth` frame or
//! v2 `auth_refresh`), refuse with the table's close code, and the welcome once ready.
//! Part of the connection actor; imports the ports, the phase and the WebSocket monitor.

use std::time::Duration;

use pam_protocol::{CloseCode, ConnectionFrame, Dialect, ServerFrame, UserId};
use ractor::ActorRef;
use tokio::time::Instant;

use super::phase::{ConnectionPhase, Keepalive};
use super::{ConnectionState, iso_now};
use crate::messages::connection::ConnectionMsg;
use crate::metrics_names::{AUTH_FAILURES_TOTAL, USER_CAP_HITS_TOTAL};
use crate::ports::AuthError;
use crate::ws_monitor::ws_monitor;

impl ConnectionState {
    pub(super) async fn authenticate(&mut self, myself: &ActorRef<ConnectionMsg>, token: &str) {
        match self.verify(token).await {
            Ok((user, expires_at)) => self.ready(myself, user, expires_at).await,
            Err(error) => self.refuse(myself, error),
        }
    }

    /// Checks a token against the path user (or takes the user from `sub` on `/api/v2/pam/ws`).
    pub(super) async fn verify(&self, token: &str) -> Result<(UserId, Option<u64>), AuthError> {
        let path_user = self
            .path_user
            .as_deref()
            .map(UserId::parse)
            .transpose()
            .map_err(|_| AuthError::Invalid("the user id in the path is not a uuid".into()))?;
        let identity = self.deps.authenticator.authenticate(token).await?;
        let user = match (path_user, identity.subject) {
            (Some(path), _) if identity.privileged => path,
            (Some(path), Some(subject)) if path == subject => subject,
            (Some(_), _) => return Err(AuthError::Forbidden),
            (None, Some(subject)) => subject,
            (None, None) => return Err(AuthError::Invalid("token has no sub".into())),
        };
        Ok((user, identity.expires_at))
    }

    pub(super) fn refuse(&mut self, myself: &ActorRef<ConnectionMsg>, error: AuthError) {
        metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => error.metric_reason()).increment(1);
        // A throttled address may still upgrade v2 without `?token=` (its auth frame decides, so a
        // valid user there is let in); a bad token from it is refused like the upgrade would have
        // been: 4429, whose reconnect class backs off, not 4501. Throttled before this failure.
        let throttled = self.peer_ip.and_then(|ip| self.deps.auth_throttle.retry_after(ip, Instant::now()));
        if let (Some(ip), false) = (self.peer_ip, matches!(error, AuthError::Unavailable(_))) {
            self.deps.auth_throttle.record_failure(ip, Instant::now());
        }
        // One line per client address per window (a client looping on a bad token would
        // otherwise write one per attempt); the metric above counts every refusal.
        let logged = self.peer_ip.map_or(Some(0), |ip| self.deps.auth_throttle.log_refusal(ip, Instant::now()));
        if let Some(suppressed) = logged {
            let client_ip = self.peer_ip.map(|ip| ip.to_string());
            tracing::info!(conn_id = %self.conn_id, reason = error.metric_reason(), client_ip, suppressed, "authentication refused (further refusals of this client within the window are counted, not logged)");
        }
        if let (Some(wait), AuthError::Missing | AuthError::Invalid(_)) = (throttled, &error) {
            let detail = format!("too many failed authentications from this address; retry in {} s", wait.as_secs() + 1);
            return self.close(myself, CloseCode::RateLimited, &detail);
        }
        let code = match error {
            AuthError::Missing | AuthError::Invalid(_) => CloseCode::AuthInvalid,
            AuthError::Expired => CloseCode::TokenExpired,
            AuthError::Forbidden => CloseCode::Forbidden,
            AuthError::Unavailable(_) => CloseCode::AuthUnavailable,
        };
        self.close(myself, code, &error.to_string());
    }

    async fn ready(&mut self, myself: &ActorRef<ConnectionMsg>, user: UserId, expires_at: Option<u64>) {
        let Some(slot) = self.deps.user_slots.acquire(&user, Some(myself.clone())).await else {
            metrics::counter!(USER_CAP_HITS_TOTAL).increment(1);
            ws_monitor().user_cap_hit(Instant::now());
            let detail = format!("more than {} connections for this user", self.deps.user_slots.cap());
            return self.close(myself, CloseCode::TooManyConnections, &detail);
        };
        self._slot = Some(slot);
        self.expires_at = expires_at.map(instant_of_exp);
        tracing::debug!(conn_id = %self.conn_id, %user, "authenticated");
        self.user = Some(user.clone());
        self.last_seen = Instant::now();
        self.set_phase(ConnectionPhase::Ready { keepalive: Keepalive::Alive });
        if self.dialect == Dialect::V2 {
            self.welcome_v2(myself, user);
            return self.hold_stored_for_resume(myself);
        }
        self.send(
            myself,
            ServerFrame::Connection(ConnectionFrame {
                status: "connected".into(),
                greeting: "Connected to PAM, your RV travel assistant".into(),
                timestamp: iso_now(),
                connection_id: self.conn_id.clone(),
                profile_integration: "enabled".into(),
            }),
        );
        self.deliver_stored(myself);
    }
}

/// `exp` (unix seconds) as a monotonic deadline, to the millisecond.
pub(super) fn instant_of_exp(exp: u64) -> Instant {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    Instant::now() + Duration::from_millis(exp.saturating_mul(1000).saturating_sub(now_ms))
}
