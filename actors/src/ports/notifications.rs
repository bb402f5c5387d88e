//! The `NotificationStore` port: server pushes (`proactive_alert`) and timers (`timer_expired`)
//! kept in `pam_notifications`, so a push outlives an offline user and a timer outlives a restart.
//!
//! A push is stored already fired (`fired_at` = now) and delivered afterwards; a timer is stored
//! unfired and claimed by exactly one node when due. What a user gets on connect is
//! [`NotificationStore::undelivered`].

use chrono::{DateTime, Utc};
use pam_protocol::UserId;
use serde_json::Value;

use super::{BoxFuture, StoreError};

/// How long a fired timer is re-sent on every connect until it is dismissed.
pub const TIMER_REDELIVERY: chrono::Duration = chrono::Duration::hours(24);

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

/// Pushes and timers on the gateway's database (Postgres or SQLite behind it).
///
/// Every write is a single statement or one transaction, so a dropped future leaves either the
/// whole change or none of it.
pub trait NotificationStore: Send + Sync + 'static {
    /// Stores one row (see [`Inserted`]); the pending limit and the dedupe key are checked in
    /// the same transaction as the insert.
    fn insert<'a>(&'a self, row: &'a NewNotification) -> BoxFuture<'a, Result<Inserted, StoreError>>;
    /// Marks up to `limit` due rows (`fired_at` unset, `fire_at` ≤ now) fired and returns them,
    /// oldest `fire_at` first. Concurrent callers (other nodes) never get the same row.
    fn claim_due<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>>;
    /// What a connecting user should get, oldest first: fired, not dismissed, not expired, and
    /// either an undelivered push or a timer fired less than [`TIMER_REDELIVERY`] ago.
    fn undelivered<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>>;
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
