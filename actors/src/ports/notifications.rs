//! The `NotificationStore` port: server pushes (`proactive_alert`) and timers (`timer_expired`)
//! kept in `pam_notifications`, so a push outlives an offline user and a timer outlives a restart.
//!
//! A push is stored already fired (`fired_at` = now) and delivered afterwards; a timer is stored
//! unfired and claimed by exactly one node when due. What a user gets on connect is
//! [`NotificationStore::undelivered`]: two waiting lists, one per kind, each with its own bounds
//! ([`WAITING_ALERTS`], [`WAITING_TIMERS`], [`WAITING_BYTES_PER_KIND`]), put together by
//! [`waiting_batch`], so fired timers never crowd out an alert nor alerts a timer.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use pam_protocol::UserId;
use serde_json::Value;

use super::{BoxFuture, StoreError};

/// How long a fired timer is re-sent on every connect until it is dismissed.
pub const TIMER_REDELIVERY: chrono::Duration = chrono::Duration::hours(24);

/// Undelivered alerts (`proactive_alert`) one connect gets at most: the newest, newest first.
/// Older ones wait (within their `ttl_s`) and come on a later connect once these are delivered.
pub const WAITING_ALERTS: usize = 100;

/// Undismissed fired timers (`timer_expired`) one connect gets at most: the oldest fired first,
/// the order they rang. Timers past these come once earlier ones are dismissed (or 24 h old).
pub const WAITING_TIMERS: usize = 100;

/// Bytes of one kind one connect gets at most, counted as the payloads' compact JSON text (what
/// the gateway stored; a stand-in for the frames, which add the id, the times and, for a timer,
/// its notification). Each kind has its own share, so a connect sends at most twice this plus
/// the frames' framing, and neither kind can use the other's share. A kind's list stops before
/// the first row that would go past its share, except that its first row always goes.
pub const WAITING_BYTES_PER_KIND: usize = 128 * 1024;

/// How long a [`DueClaim`] may stay open: its holder gives the rows back when publishing them
/// took longer, and a store that holds claims open ends one itself (rows given back) at twice
/// this, should its holder stall without dying (a paused process, a hung runtime).
pub const CLAIM_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// Which frame a row becomes; stored as `kind` (`timer_expired` | `proactive_alert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// A fired timer or alarm.
    TimerExpired,
    /// An alert the server raised (e.g. a budget threshold).
    ProactiveAlert,
}

impl NotificationKind {
    /// The `kind` column value, which is also the frame's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::TimerExpired => "timer_expired",
            NotificationKind::ProactiveAlert => "proactive_alert",
        }
    }

    /// The inverse of [`NotificationKind::as_str`]; `None` for anything else.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "timer_expired" => Some(NotificationKind::TimerExpired),
            "proactive_alert" => Some(NotificationKind::ProactiveAlert),
            _ => None,
        }
    }
}

/// A row to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// Whose row.
    pub user: UserId,
    /// Which frame it becomes.
    pub kind: NotificationKind,
    /// The frame's own fields (`label`, `timer_type`, `message` / `content`), a JSON object.
    pub payload: Value,
    /// Timers: when to fire. Pushes: now.
    pub fire_at: DateTime<Utc>,
    /// `true` for a push (stored fired, delivered next); `false` for a timer (claimed when due).
    pub fired: bool,
    /// After this the row is never delivered (pushes: now + `ttl_s`); `None` = no limit.
    pub expires_at: Option<DateTime<Utc>>,
    /// Unique per user when set: a second row with the same key stores nothing.
    pub dedupe_key: Option<String>,
    /// Refuse the row when the user already has this many unfired rows (timers: 50).
    pub max_pending: Option<usize>,
}

/// What `insert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored under this id (a uuid; a timer's `timer_id`).
    New(String),
    /// A row with the same (user, `dedupe_key`) exists: nothing stored.
    Duplicate,
    /// The user has `max_pending` unfired rows already: nothing stored.
    TooManyPending,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// uuid text.
    pub id: String,
    /// Whose row.
    pub user: UserId,
    /// Which frame it becomes.
    pub kind: NotificationKind,
    /// The frame's own fields.
    pub payload: Value,
    /// When it fires (timers) or was raised (pushes).
    pub fire_at: DateTime<Utc>,
    /// When it fired; `None` for a timer still pending.
    pub fired_at: Option<DateTime<Utc>>,
    /// When a socket sent it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// After this it is never delivered.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// Due timers taken by [`NotificationStore::claim_due`]. A store shared by several nodes keeps
/// the claim open until [`DueClaim::commit`]: dropped uncommitted (the node died, or gave up
/// before its publish returned), the rows are due again for the next claim, by any node, so a
/// timer is never marked fired by a node that did not live to publish it. A store of one node
/// only may make the claim final at once (its sockets die with it, and a fired timer is re-sent
/// on every connect); `commit` then does nothing.
pub trait DueClaim: Send {
    /// The claimed rows, oldest `fire_at` first.
    fn rows(&self) -> &[Notification];
    /// Makes the claim final: the rows stay fired.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// Pushes and timers on the gateway's database (Postgres or SQLite behind it).
///
/// Every write is a single statement or one transaction, so a dropped future leaves either the
/// whole change or none of it.
pub trait NotificationStore: Send + Sync + 'static {
    /// Stores one row (see [`Inserted`]); the pending limit and the dedupe key are checked in
    /// the same transaction as the insert.
    fn insert<'a>(&'a self, row: &'a NewNotification) -> BoxFuture<'a, Result<Inserted, StoreError>>;
    /// Claims up to `limit` due rows (`fired_at` unset, `fire_at` ≤ now), oldest `fire_at`
    /// first: they are marked fired, and concurrent callers (other nodes) never get the same row
    /// while the claim lives. See [`DueClaim`] for when the mark becomes final.
    fn claim_due<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Box<dyn DueClaim>, StoreError>>;
    /// What a connecting user should get, in the order to send it ([`waiting_batch`]): first the
    /// undelivered alerts, newest first, at most [`WAITING_ALERTS`]; then the timers fired less
    /// than [`TIMER_REDELIVERY`] ago, oldest fired first, at most [`WAITING_TIMERS`]; each kind
    /// within [`WAITING_BYTES_PER_KIND`]. Only fired, undismissed, unexpired rows.
    fn undelivered<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>>;
    /// The rows `ids` of `user` that still wait for them (as in [`NotificationStore::undelivered`]:
    /// fired, undismissed, unexpired; an alert not yet delivered, a timer fired less than
    /// [`TIMER_REDELIVERY`] ago), in the order of `ids`; the others are left out.
    fn waiting_by_ids<'a>(&'a self, user: &'a UserId, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>>;
    /// The user's timers that have not fired yet (and are not dismissed), soonest first.
    fn pending_timers<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>>;
    /// Sets `delivered_at` (once) on these rows of `user`.
    fn mark_delivered<'a>(&'a self, user: &'a UserId, ids: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Dismisses the user's own row `id`; `Ok(false)` when it does not exist, is another
    /// user's, or was dismissed before. A dismissed row is never delivered nor fired.
    fn dismiss<'a>(&'a self, user: &'a UserId, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Unfired, undismissed timers of all users (the pending-timers gauge).
    fn count_pending<'a>(&'a self) -> BoxFuture<'a, Result<u64, StoreError>>;
}

/// Puts a connect's rows together in the order they are to be sent: the alerts newest fired
/// first, then the timers oldest fired first (ties by `fire_at`, `created_at`, then `id`), each
/// kind cut to its count ([`WAITING_ALERTS`], [`WAITING_TIMERS`]) and to its byte share
/// ([`WAITING_BYTES_PER_KIND`], see [`payload_bytes`]). A store reads each kind's rows in that
/// order, up to its count, and hands them here, so every backend sends the same rows.
pub fn waiting_batch(rows: Vec<Notification>) -> Vec<Notification> {
    let (mut alerts, mut timers): (Vec<_>, Vec<_>) = rows.into_iter().partition(|row| row.kind == NotificationKind::ProactiveAlert);
    alerts.sort_by(|a, b| fired_order(b, a));
    timers.sort_by(fired_order);
    let mut batch = within_share(alerts, WAITING_ALERTS);
    batch.extend(within_share(timers, WAITING_TIMERS));
    batch
}

/// Oldest fired first; ties by `fire_at`, `created_at`, then `id` (the stores' `ORDER BY`).
fn fired_order(a: &Notification, b: &Notification) -> Ordering {
    (a.fired_at, a.fire_at, a.created_at, &a.id).cmp(&(b.fired_at, b.fire_at, b.created_at, &b.id))
}

/// The first `count` rows, stopping before the first one that would take their payloads past
/// [`WAITING_BYTES_PER_KIND`]; the first row always goes, however large.
fn within_share(rows: Vec<Notification>, count: usize) -> Vec<Notification> {
    let mut bytes = 0;
    let mut kept = Vec::new();
    for row in rows.into_iter().take(count) {
        let size = payload_bytes(&row.payload);
        if !kept.is_empty() && bytes + size > WAITING_BYTES_PER_KIND {
            break;
        }
        bytes += size;
        kept.push(row);
    }
    kept
}

/// The length of `payload` as compact JSON text, the form the gateway stores it in (Postgres's
/// `jsonb` prints it with spaces, so the size is taken from the value, the same on every backend).
pub fn payload_bytes(payload: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` fails only when the writer does, and this one never does.
    let _ = serde_json::to_writer(&mut count, payload);
    count.0
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;

    use super::*;

    fn row(kind: NotificationKind, fired_minutes_ago: i64, text_bytes: usize) -> Notification {
        let fired = Utc::now() - Duration::minutes(fired_minutes_ago);
        Notification {
            id: format!("{}-{fired_minutes_ago}", kind.as_str()),
            user: UserId::parse("8f1c2a8e-3f7b-4b7e-9a51-0c7d7e0b5a11").expect("a uuid"),
            kind,
            payload: json!({"message": "x".repeat(text_bytes)}),
            fire_at: fired,
            fired_at: Some(fired),
            delivered_at: None,
            expires_at: None,
            created_at: fired,
        }
    }

    fn ids(rows: &[Notification]) -> Vec<String> {
        rows.iter().map(|row| row.id.clone()).collect()
    }

    #[test]
    fn alerts_come_newest_first_then_timers_oldest_first() {
        let rows = vec![
            row(NotificationKind::TimerExpired, 5, 10),
            row(NotificationKind::ProactiveAlert, 30, 10),
            row(NotificationKind::TimerExpired, 50, 10),
            row(NotificationKind::ProactiveAlert, 1, 10),
        ];
        assert_eq!(
            ids(&waiting_batch(rows)),
            ["proactive_alert-1", "proactive_alert-30", "timer_expired-50", "timer_expired-5"].map(String::from)
        );
    }

    #[test]
    fn each_kind_is_cut_to_its_own_count() {
        let alerts = (0..150).map(|i| row(NotificationKind::ProactiveAlert, i, 10));
        let timers = (0..250).map(|i| row(NotificationKind::TimerExpired, i, 10));
        let batch = waiting_batch(alerts.chain(timers).collect());
        let (alerts, timers) = batch.split_at(WAITING_ALERTS);
        assert!(alerts.iter().all(|row| row.kind == NotificationKind::ProactiveAlert));
        assert_eq!((alerts[0].id.as_str(), alerts[WAITING_ALERTS - 1].id.as_str()), ("proactive_alert-0", "proactive_alert-99"));
        assert_eq!(timers.len(), WAITING_TIMERS);
        assert_eq!((timers[0].id.as_str(), timers[WAITING_TIMERS - 1].id.as_str()), ("timer_expired-249", "timer_expired-150"));
    }

    #[test]
    fn each_kind_stops_at_its_byte_share_and_keeps_its_first_row() {
        let size = payload_bytes(&row(NotificationKind::TimerExpired, 0, 4096).payload);
        assert_eq!(size, 4096 + r#"{"message":""}"#.len());
        let fit = WAITING_BYTES_PER_KIND / size;
        let timers = (0..100).map(|i| row(NotificationKind::TimerExpired, i, 4096));
        // One alert larger than a whole share still goes, alone of its kind.
        let alerts = [row(NotificationKind::ProactiveAlert, 1, WAITING_BYTES_PER_KIND), row(NotificationKind::ProactiveAlert, 2, 10)];
        let batch = waiting_batch(timers.chain(alerts).collect());
        assert_eq!(batch[0].id, "proactive_alert-1");
        assert_eq!(batch.len(), 1 + fit, "the big alert does not take the timers' share");
        assert!(batch[1..].iter().all(|row| row.kind == NotificationKind::TimerExpired));
        assert_eq!(batch[1].id, "timer_expired-99");
    }
}
