//! Server pushes on a socket: `timer_expired` and `proactive_alert` from the push bus, and the
//! stored ones a user gets on connect. v2 sockets get them numbered through the stream
//! (replayable); legacy sockets get them as they are, but never while a chat is unanswered —
//! today's client would take the first frame with a truthy `message`/`content` for its answer —
//! so they wait and follow its `chat_response`. A push id is sent at most once per socket (the
//! bus and the stored copy may both bring it). A `proactive_alert` is marked delivered once a
//! socket has actually sent it (not when it was only held), so an alert held behind a chat on a
//! socket that then closes comes again on the next connect. A push from the bus is timed from
//! when it was due to when it is sent (`pam_push_delivery_seconds{kind}`, held time included).
//! Part of the connection actor; imports the push frames' metrics and the outbound queue.

use std::collections::VecDeque;

use pam_protocol::{CloseCode, ErrorCode, PushFrame, V2Frame};
use ractor::ActorRef;

use super::ConnectionState;
use crate::messages::connection::ConnectionMsg;
use crate::metrics_names::{PUSH_DELIVERY_SECONDS, count_frame};
use crate::outbound::{OutFrame, SendError};

/// Pushes a legacy socket holds back behind an unanswered chat; the oldest goes when full.
const MAX_HELD: usize = 64;
/// Push ids remembered per socket to drop repeats.
const MAX_SEEN: usize = 256;

/// Per-socket push state.
#[derive(Default)]
pub(super) struct PushState {
    /// Legacy: pushes waiting for the running chat's `chat_response`.
    held: VecDeque<Held>,
    /// Ids sent on this socket, newest last.
    seen: VecDeque<String>,
}

/// A push a legacy socket holds back behind an unanswered chat.
struct Held {
    text: String,
    /// The id of an alert (marked delivered once sent).
    alert: Option<String>,
    timing: Option<Timing>,
}

/// What a push's delivery is timed by: its kind and when it was due.
type Timing = (&'static str, chrono::DateTime<chrono::Utc>);

/// When `frame` was due: an alert's `timestamp`, a timer's `fire_at`.
fn timing(frame: &PushFrame) -> Option<Timing> {
    let (kind, at) = match frame {
        PushFrame::TimerExpired(timer) => ("timer_expired", &timer.fire_at),
        PushFrame::ProactiveAlert(alert) => ("proactive_alert", &alert.timestamp),
    };
    let at = chrono::DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&chrono::Utc);
    Some((kind, at))
}

/// Records a sent push's delivery time (never negative: another node's clock may be ahead).
fn record_delivery(timing: Option<Timing>) {
    if let Some((kind, due)) = timing {
        let seconds = (chrono::Utc::now() - due).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        metrics::histogram!(PUSH_DELIVERY_SECONDS, "kind" => kind).record(seconds.max(0.0));
    }
}

impl ConnectionState {
    /// A push for this socket's user (one frame's JSON text); `live` when it came over the bus
    /// (timed), not from the store on connect.
    pub(super) fn on_push(&mut self, myself: &ActorRef<ConnectionMsg>, text: String, live: bool) {
        if self.user.is_none() {
            return;
        }
        let parsed = serde_json::from_str::<PushFrame>(&text).ok();
        let alert = match &parsed {
            Some(PushFrame::ProactiveAlert(alert)) => Some(alert.id.clone()),
            _ => None,
        };
        let timing = if live { parsed.as_ref().and_then(timing) } else { None };
        if let Some(id) = parsed.as_ref().map(push_id) {
            if self.pushes.seen.iter().any(|seen| seen == id) {
                return;
            }
            if self.pushes.seen.len() >= MAX_SEEN {
                self.pushes.seen.pop_front();
            }
            self.pushes.seen.push_back(id.to_string());
        }
        if self.v2.is_some() {
            match parsed {
                Some(frame) => {
                    // Into the stream: sent now, or replayed on `resume`.
                    self.send_v2(myself, V2Frame::from(frame));
                    record_delivery(timing);
                    self.mark_delivered(alert);
                }
                None => tracing::warn!(conn_id = %self.conn_id, "a push that is no push frame was not sent to a v2 socket"),
            }
            return;
        }
        if !self.in_flight.is_empty() {
            if self.pushes.held.len() >= MAX_HELD {
                tracing::warn!(conn_id = %self.conn_id, "too many pushes held behind a chat; the oldest is dropped");
                self.pushes.held.pop_front();
            }
            self.pushes.held.push_back(Held { text, alert, timing });
            return;
        }
        self.send_push_text(myself, Held { text, alert, timing });
    }

    /// Legacy: sends what waited for the chat that just got its answer.
    pub(super) fn release_held_pushes(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if !self.in_flight.is_empty() {
            return;
        }
        while let Some(held) = self.pushes.held.pop_front() {
            self.send_push_text(myself, held);
        }
    }

    fn send_push_text(&mut self, myself: &ActorRef<ConnectionMsg>, Held { text, alert, timing }: Held) {
        match self.outbound.send(OutFrame::Text(text)) {
            Ok(()) => {
                count_frame("out", "push");
                record_delivery(timing);
                self.mark_delivered(alert);
            }
            Err(SendError::Full) => self.close(myself, CloseCode::SlowConsumer, ""),
            Err(SendError::Closed) => {}
        }
    }

    /// Records that the alert `id` went out (a failure only means it comes once more on the next
    /// connect). Through the same queue as the stored-push reads, so a reconnect right after this
    /// send reads the alert as delivered.
    fn mark_delivered(&self, alert: Option<String>) {
        let (Some(id), Some(user)) = (alert, self.user.clone()) else { return };
        self.deps.stored_pushes.delivered(user, id, self.conn_id.clone());
    }

    /// v2 `dismiss`: the user's push `id` is dismissed (a fired timer stops being re-sent). No
    /// reply when it was; an error frame with the id when the user has no such push.
    pub(super) async fn on_dismiss(&mut self, myself: &ActorRef<ConnectionMsg>, id: String) {
        let Some(user) = self.user.clone() else { return };
        if id.len() > 64 {
            return self.send_v2(myself, V2Frame::error(None, ErrorCode::ValidationError, "'id' is at most 64 characters"));
        }
        match self.deps.notifications.dismiss(&user, &id).await {
            Ok(true) => {}
            Ok(false) => self.send_v2(myself, V2Frame::error(Some(id), ErrorCode::ValidationError, "no such push to dismiss")),
            Err(error) => {
                tracing::warn!(conn_id = %self.conn_id, %error, "dismiss failed");
                self.send_v2(myself, V2Frame::error(Some(id), ErrorCode::StorageUnavailable, "the dismissal could not be stored; retry"));
            }
        }
    }

    /// After authentication: what is stored for the user (undelivered alerts, fired timers not
    /// dismissed) comes as pushes (alerts are marked delivered as they go out). A failing
    /// database only delays them to the next connect.
    pub(super) fn deliver_stored(&self, myself: &ActorRef<ConnectionMsg>) {
        let Some(user) = self.user.clone() else { return };
        self.deps.stored_pushes.request(user, myself.clone(), self.conn_id.clone());
    }
}

fn push_id(frame: &PushFrame) -> &str {
    match frame {
        PushFrame::TimerExpired(timer) => &timer.id,
        PushFrame::ProactiveAlert(alert) => &alert.id,
    }
}
