//! Server pushes as the actors see them: the frame a stored notification becomes
//! ([`push_frame`]), and `StoredPushDelivery`, the one task that sends connecting users their
//! stored pushes and marks the pushes clients proved they received as delivered. Imports the ports and the
//! connection's messages.

use std::sync::Arc;

use pam_protocol::{AlertContent, ProactiveAlert, PushFrame, TimerExpired, TimerNotification, TimerType, UserId};
use ractor::ActorRef;
use serde_json::Value;

use crate::messages::connection::ConnectionMsg;
use crate::ports::{Notification, NotificationKind, NotificationStore, STORE_TIMEOUT};

/// The push frame a stored row becomes (the legacy shape; v2 adds `seq`), or why it cannot be
/// built (a payload this gateway did not write).
///
/// `timer_expired`: `id` and `timer_id` are the row id, `fire_at` the row's `fire_at` (RFC 3339,
/// milliseconds, UTC), the notification titled by the label and tagged `timer-{id}`.
/// `proactive_alert`: `timestamp` is the row's `fire_at`, `content` the payload's `content`.
pub fn push_frame(row: &Notification) -> Result<PushFrame, String> {
    let at = row.fire_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match row.kind {
        NotificationKind::TimerExpired => {
            let text = |key: &str| row.payload.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            let timer_type: TimerType = serde_json::from_value(row.payload.get("timer_type").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("timer_type: {e}"))?;
            let (label, message) = (text("label"), text("message"));
            let title =
                if label.is_empty() { if timer_type == TimerType::Alarm { "Alarm" } else { "Timer" }.to_string() } else { label.clone() };
            let body = if message.is_empty() { label.clone() } else { message.clone() };
            Ok(PushFrame::TimerExpired(TimerExpired {
                id: row.id.clone(),
                timer_id: row.id.clone(),
                label,
                timer_type,
                message,
                fire_at: at,
                notification: TimerNotification { title, body, require_interaction: true, tag: format!("timer-{}", row.id) },
            }))
        }
        NotificationKind::ProactiveAlert => {
            let content: AlertContent =
                serde_json::from_value(row.payload.get("content").cloned().unwrap_or(Value::Null)).map_err(|e| format!("content: {e}"))?;
            Ok(PushFrame::ProactiveAlert(ProactiveAlert { id: row.id.clone(), timestamp: at, content }))
        }
    }
}

/// Work of the stored-push task: a connected socket whose user's stored pushes are to be sent,
/// or a push a client proved it received (to be marked delivered).
enum DeliveryJob {
    /// `ids`: `None` for what waits for a connect; `Some` for exactly these rows, in this order
    /// (pushes a legacy socket could not hold behind a chat).
    Read {
        user: UserId,
        socket: ActorRef<ConnectionMsg>,
        conn_id: String,
        ids: Option<Vec<String>>,
    },
    Delivered {
        user: UserId,
        id: String,
        conn_id: String,
    },
}

/// Marks written in one go at most.
const MAX_MARKS: usize = 512;

/// Reads the stored pushes of users who just connected on one task, a user at a time, and casts
/// them to their sockets. A connect storm queues small requests (~100 bytes each) instead of a
/// task and a database query per socket at once, which would pin memory in every idle socket's share.
///
/// The same task marks proven pushes delivered, in the order the jobs came: every mark queued
/// before a read is written before that read, so a push proven on one socket is not sent again
/// to the same user's next socket on this node. Marks queued together are written concurrently.
#[derive(Clone)]
pub struct StoredPushDelivery {
    jobs: tokio::sync::mpsc::UnboundedSender<DeliveryJob>,
}

impl StoredPushDelivery {
    /// Starts the delivery task on `store`; it ends when every handle is dropped.
    pub fn spawn(store: Arc<dyn NotificationStore>) -> Self {
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<DeliveryJob>();
        tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                let mut marks = Vec::new();
                let mut read = None;
                let mut next = Some(job);
                while let Some(job) = next.take() {
                    match job {
                        DeliveryJob::Delivered { user, id, conn_id } => marks.push((user, id, conn_id)),
                        DeliveryJob::Read { user, socket, conn_id, ids } => read = Some((user, socket, conn_id, ids)),
                    }
                    if read.is_none() && marks.len() < MAX_MARKS {
                        next = queue.try_recv().ok();
                    }
                }
                write_marks(&*store, marks).await;
                match read {
                    Some((user, socket, conn_id, None)) => send_stored(&*store, &user, &socket, &conn_id).await,
                    Some((user, socket, conn_id, Some(ids))) => send_by_ids(&*store, &user, &socket, &conn_id, &ids).await,
                    None => {}
                }
            }
        });
        StoredPushDelivery { jobs }
    }

    /// Queues `user`'s stored pushes for the socket `socket`.
    pub fn request(&self, user: UserId, socket: ActorRef<ConnectionMsg>, conn_id: String) {
        if self.jobs.send(DeliveryJob::Read { user, socket, conn_id, ids: None }).is_err() {
            tracing::warn!("the stored-push delivery task is gone; stored pushes wait for the next connect");
        }
    }

    /// Queues reading `user`'s pushes `ids` for `socket`, which gets them in that order as one
    /// [`ConnectionMsg::HeldFromStore`] (empty when they cannot be read).
    pub fn request_ids(&self, user: UserId, socket: ActorRef<ConnectionMsg>, conn_id: String, ids: Vec<String>) {
        if let Err(refused) = self.jobs.send(DeliveryJob::Read { user, socket, conn_id, ids: Some(ids) }) {
            tracing::warn!("the stored-push delivery task is gone; held pushes wait for the next connect");
            if let DeliveryJob::Read { socket, .. } = refused.0 {
                let _ = socket.cast(ConnectionMsg::HeldFromStore(Vec::new()));
            }
        }
    }

    /// Queues marking `user`'s push `id` delivered (the client proved it has it).
    pub fn delivered(&self, user: UserId, id: String, conn_id: String) {
        if let Err(refused) = self.jobs.send(DeliveryJob::Delivered { user, id, conn_id }) {
            let DeliveryJob::Delivered { conn_id, .. } = refused.0 else { return };
            tracing::warn!(%conn_id, "the stored-push delivery task is gone; a received push comes once more on the next connect");
        }
    }
}

/// Writes the marks, a user's together, all users at once; each within the store timeout.
async fn write_marks(store: &dyn NotificationStore, marks: Vec<(UserId, String, String)>) {
    let mut by_user: Vec<(UserId, Vec<String>, String)> = Vec::new();
    for (user, id, conn_id) in marks {
        match by_user.iter_mut().find(|(u, _, _)| *u == user) {
            Some((_, ids, _)) => ids.push(id),
            None => by_user.push((user, vec![id], conn_id)),
        }
    }
    let writes = by_user.iter().map(|(user, ids, conn_id)| async move {
        match tokio::time::timeout(STORE_TIMEOUT, store.mark_delivered(user, ids)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%conn_id, %error, "a received push could not be marked delivered"),
            Err(_) => tracing::warn!(%conn_id, "marking a received push delivered took too long; it comes once more on the next connect"),
        }
    });
    futures_util::future::join_all(writes).await;
}

/// Reads `user`'s pushes `ids` and casts them to `socket` in that order, as one message (empty
/// when they cannot be read: the socket stops waiting for them, and they come on the next connect).
async fn send_by_ids(store: &dyn NotificationStore, user: &UserId, socket: &ActorRef<ConnectionMsg>, conn_id: &str, ids: &[String]) {
    let rows = match tokio::time::timeout(STORE_TIMEOUT, store.waiting_by_ids(user, ids)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => {
            tracing::warn!(%conn_id, %error, "held pushes could not be read; they come on the next connect");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(%conn_id, "held pushes took too long to read; they come on the next connect");
            Vec::new()
        }
    };
    let texts = rows
        .iter()
        .filter_map(|row| match push_frame(row) {
            Ok(frame) => serde_json::to_string(&frame).ok(),
            Err(error) => {
                tracing::warn!(%conn_id, id = row.id, %error, "a stored push could not be built");
                None
            }
        })
        .collect();
    let _ = socket.cast(ConnectionMsg::HeldFromStore(texts));
}

/// Reads `user`'s stored pushes and casts them to `socket`.
async fn send_stored(store: &dyn NotificationStore, user: &UserId, socket: &ActorRef<ConnectionMsg>, conn_id: &str) {
    // A socket already gone needs nothing; a hung database must not stall the queue. One still
    // starting (a `?token=` connect authenticates in its `post_start`, which asked for this read)
    // gets its casts once it runs: skipping it left such a connect without its stored pushes.
    if !ractor::ACTIVE_STATES.contains(&socket.get_status()) {
        return;
    }
    let rows = match tokio::time::timeout(STORE_TIMEOUT, store.undelivered(user)).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{BoxFuture, DueClaim, Inserted, NewNotification, StoreError};
    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::{mpsc, oneshot};

    /// A store with one waiting alert; nothing else is asked of it here.
    struct OneAlert;

    impl NotificationStore for OneAlert {
        fn insert<'a>(&'a self, _: &'a NewNotification) -> BoxFuture<'a, Result<Inserted, StoreError>> {
            unreachable!()
        }
        fn claim_due<'a>(&'a self, _: usize) -> BoxFuture<'a, Result<Box<dyn DueClaim>, StoreError>> {
            unreachable!()
        }
        fn undelivered<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
            let now = chrono::Utc::now();
            let row = Notification {
                id: "n-1".into(),
                user: user.clone(),
                kind: NotificationKind::ProactiveAlert,
                payload: serde_json::json!({"content": {"type": "proactive_alert", "category": "travel", "alert_type": "fuel",
                    "message": "fuel is cheaper ahead", "priority": "low", "actions": []}}),
                fire_at: now,
                fired_at: Some(now),
                delivered_at: None,
                expires_at: None,
                created_at: now,
            };
            Box::pin(async move { Ok(vec![row]) })
        }
        fn waiting_by_ids<'a>(&'a self, _: &'a UserId, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
            unreachable!()
        }
        fn pending_timers<'a>(&'a self, _: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>> {
            unreachable!()
        }
        fn mark_delivered<'a>(&'a self, _: &'a UserId, _: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
            unreachable!()
        }
        fn dismiss<'a>(&'a self, _: &'a UserId, _: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
            unreachable!()
        }
        fn count_pending<'a>(&'a self) -> BoxFuture<'a, Result<u64, StoreError>> {
            unreachable!()
        }
    }

    /// A socket stand-in whose `post_start` waits for a signal, as a `?token=` connect waits in
    /// its authentication (the actor is `Starting` until `post_start` ends); it reports the
    /// stored pushes it is cast.
    struct SlowStart(std::sync::Mutex<Option<oneshot::Receiver<()>>>);

    impl Actor for SlowStart {
        type Msg = ConnectionMsg;
        type State = mpsc::UnboundedSender<String>;
        type Arguments = mpsc::UnboundedSender<String>;

        async fn pre_start(&self, _: ActorRef<ConnectionMsg>, got: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
            Ok(got)
        }

        async fn post_start(&self, _: ActorRef<ConnectionMsg>, _: &mut Self::State) -> Result<(), ActorProcessingErr> {
            let started = self.0.lock().expect("not poisoned").take();
            if let Some(started) = started {
                let _ = started.await;
            }
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<ConnectionMsg>,
            message: ConnectionMsg,
            got: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if let ConnectionMsg::StoredPush(text) = message {
                let _ = got.send(text);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_socket_still_starting_gets_its_stored_pushes_once_it_runs() {
        let (got_tx, mut got) = mpsc::unbounded_channel();
        let (release, started) = oneshot::channel::<()>();
        let (socket, handle) = Actor::spawn(None, SlowStart(std::sync::Mutex::new(Some(started))), got_tx).await.expect("spawned");
        assert_eq!(socket.get_status(), ractor::ActorStatus::Starting);
        let user = UserId::parse("7f9c2b0e-1d2a-4c3b-9e8f-0a1b2c3d4e5f").expect("a uuid");
        send_stored(&OneAlert, &user, &socket, "c-1").await;
        release.send(()).expect("still waiting");
        let text =
            tokio::time::timeout(std::time::Duration::from_secs(5), got.recv()).await.expect("the stored push arrives").expect("a push");
        assert!(text.contains("fuel is cheaper ahead"), "{text}");
        socket.stop(None);
        handle.await.expect("stopped");
    }
}
