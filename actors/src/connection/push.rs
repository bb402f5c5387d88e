//! Server pushes on a socket: `timer_expired` and `proactive_alert` from the push bus, and the
//! stored ones a user gets on connect. v2 sockets get them numbered through the session stream
//! (replayable); legacy sockets get them as they are, but never while a chat is unanswered —
//! today's client would take the first frame with a truthy `message`/`content` for its answer —
//! so they wait and follow its `chat_response`. A push id is sent at most once per socket (the
//! bus and the stored copy may both bring it). A `proactive_alert` is marked delivered once a
//! socket has actually sent it (not when it was only held), so an alert held behind a chat on a
//! socket that then closes comes again on the next connect. A push from the bus is timed from
//! when it was due to when it is sent (`pam_push_delivery_seconds{kind}`, held time included).

use std::collections::VecDeque;

use pam_protocol::{CloseCode, ErrorCode, PushFrame, UserId, V2Frame};
use ractor::ActorRef;

use super::{ConnectionMsg, ConnectionState};
use crate::metrics_names::{PUSH_DELIVERY_SECONDS, count_frame};
use crate::notifications::push_frame;
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
                    // Into the session stream: sent now, or replayed on `resume`.
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

/// Work of the stored-push task: a connected socket whose user's stored pushes are to be sent,
/// or an alert a socket sent (to be marked delivered).
enum DeliveryJob {
    Read { user: UserId, socket: ActorRef<ConnectionMsg>, conn_id: String },
    Delivered { user: UserId, id: String, conn_id: String },
}

/// Marks written in one go at most.
const MAX_MARKS: usize = 512;

/// Reads the stored pushes of users who just connected on one task, a user at a time, and casts
/// them to their sockets. A connect storm queues small requests (~100 bytes each) instead of a
/// task and a database query per socket at once, which would pin memory in every idle socket's share.
///
/// The same task marks sent alerts delivered, in the order the jobs came: every mark queued
/// before a read is written before that read, so an alert sent on one socket is not sent again to
/// the same user's next socket on this node. Marks queued together are written concurrently.
#[derive(Clone)]
pub struct StoredPushDelivery {
    jobs: tokio::sync::mpsc::UnboundedSender<DeliveryJob>,
}

impl StoredPushDelivery {
    /// Starts the delivery task on `store`; it ends when every handle is dropped.
    pub fn spawn(store: std::sync::Arc<dyn crate::notifications::NotificationStore>) -> Self {
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<DeliveryJob>();
        tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                let mut marks = Vec::new();
                let mut read = None;
                let mut next = Some(job);
                while let Some(job) = next.take() {
                    match job {
                        DeliveryJob::Delivered { user, id, conn_id } => marks.push((user, id, conn_id)),
                        DeliveryJob::Read { user, socket, conn_id } => read = Some((user, socket, conn_id)),
                    }
                    if read.is_none() && marks.len() < MAX_MARKS {
                        next = queue.try_recv().ok();
                    }
                }
                write_marks(&*store, marks).await;
                if let Some((user, socket, conn_id)) = read {
                    send_stored(&*store, &user, &socket, &conn_id).await;
                }
            }
        });
        StoredPushDelivery { jobs }
    }

    /// Queues `user`'s stored pushes for the socket `socket`.
    pub fn request(&self, user: UserId, socket: ActorRef<ConnectionMsg>, conn_id: String) {
        if self.jobs.send(DeliveryJob::Read { user, socket, conn_id }).is_err() {
            tracing::warn!("the stored-push delivery task is gone; stored pushes wait for the next connect");
        }
    }

    /// Queues marking `user`'s alert `id` delivered.
    pub fn delivered(&self, user: UserId, id: String, conn_id: String) {
        if let Err(refused) = self.jobs.send(DeliveryJob::Delivered { user, id, conn_id }) {
            let DeliveryJob::Delivered { conn_id, .. } = refused.0 else { return };
            tracing::warn!(%conn_id, "the stored-push delivery task is gone; a sent alert comes once more on the next connect");
        }
    }
}

/// Writes the marks, a user's together, all users at once; each within the store timeout.
async fn write_marks(store: &dyn crate::notifications::NotificationStore, marks: Vec<(UserId, String, String)>) {
    let mut by_user: Vec<(UserId, Vec<String>, String)> = Vec::new();
    for (user, id, conn_id) in marks {
        match by_user.iter_mut().find(|(u, _, _)| *u == user) {
            Some((_, ids, _)) => ids.push(id),
            None => by_user.push((user, vec![id], conn_id)),
        }
    }
    let writes = by_user.iter().map(|(user, ids, conn_id)| async move {
        match tokio::time::timeout(crate::outbox::STORE_TIMEOUT, store.mark_delivered(user, ids)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%conn_id, %error, "a sent alert could not be marked delivered"),
            Err(_) => tracing::warn!(%conn_id, "marking a sent alert delivered took too long; it comes once more on the next connect"),
        }
    });
    futures_util::future::join_all(writes).await;
}

/// Reads `user`'s stored pushes and casts them to `socket`.
async fn send_stored(store: &dyn crate::notifications::NotificationStore, user: &UserId, socket: &ActorRef<ConnectionMsg>, conn_id: &str) {
    // A socket already gone needs nothing; a hung database must not stall the queue.
    if !matches!(socket.get_status(), ractor::ActorStatus::Running) {
        return;
    }
    let rows = match tokio::time::timeout(crate::outbox::STORE_TIMEOUT, store.undelivered(user)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => return tracing::warn!(%conn_id, %error, "stored pushes could not be read"),
        Err(_) => return tracing::warn!(%conn_id, "stored pushes took too long to read; they come on the next connect"),
    };
    for row in rows {
        match push_frame(&row) {
            Ok(frame) => {
                let text = serde_json::to_string(&frame).unwrap_or_default();
                if socket.cast(ConnectionMsg::StoredPush(text)).is_err() {
                    return;
                }
            }
            Err(error) => tracing::warn!(%conn_id, id = row.id, %error, "a stored push could not be built"),
        }
    }
}

fn push_id(frame: &PushFrame) -> &str {
    match frame {
        PushFrame::TimerExpired(timer) => &timer.id,
        PushFrame::ProactiveAlert(alert) => &alert.id,
    }
}
