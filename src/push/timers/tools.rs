//! Timers set from chat: what the builtin assistant's timer phrases and the models' `set_timer`,
//! `list_timers` and `cancel_timer` tools do. They go through the same `NotificationStore` and
//! limits as `POST/GET/DELETE /api/v1/pam/timers` (50 pending per user, at most 30 days ahead),
//! and the scheduler fires them as `timer_expired` pushes.
//!
//! Cancel-safe and retry-safe: a timer set by a turn carries the dedupe key
//! `chat:{session}:{turn_id}:{n}` (n = the turn's n-th timer), so a retried turn, or the next
//! provider of the fallback chain answering the same turn, finds the timer already there instead
//! of setting a second one. Each store call is one statement or transaction under
//! [`STORE_TIMEOUT`]; cancelling dismisses row by row, and a repeat dismisses nothing twice.
//!
//! Times are shown in the user's timezone (`user_settings.regional_preferences.timezone`, which
//! the profile loader puts in the context as `profile.timezone`), UTC when none is set.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use pam_actors::{Inserted, LlmRequest, NewNotification, Notification, NotificationKind, NotificationStore, StoreError};
use pam_protocol::{TimerType, UserId};
use serde_json::{Map, Value, json};

use crate::push::timers::{MAX_PENDING_TIMERS, MAX_TIMER_AHEAD};

/// Longest wait for one store call before the timer action is reported as failed.
pub const STORE_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// Longest label kept (the REST limit).
pub const MAX_LABEL_CHARS: usize = 200;

/// When a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// After this long (a timer or a reminder).
    After(Duration),
    /// At the next occurrence of this time of day in the user's timezone (an alarm).
    At(NaiveTime),
}

/// One timer to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerSpec {
    /// The notification title (at most 200 characters).
    pub label: String,
    /// The notification body.
    pub message: String,
    pub when: When,
}

/// A timer that is set (now, or by an earlier try of the same turn).
#[derive(Debug, Clone, PartialEq)]
pub struct SetTimer {
    pub timer_id: String,
    pub label: String,
    pub fire_at: DateTime<Utc>,
    pub timer_type: TimerType,
}

/// Why a timer action did nothing; `Display` is the plain-words answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error(
        "You already have {MAX_PENDING_TIMERS} timers waiting, which is the most I can keep. Cancel some first (say \"cancel my timers\") and ask again."
    )]
    TooMany,
    #[error("I can only set timers and alarms up to 30 days ahead.")]
    TooFar,
    #[error("That time has already passed, so I didn't set anything.")]
    NotInFuture,
    #[error("I couldn't reach your timers just now, so nothing was changed. Please try again in a minute.")]
    Unavailable,
    #[error("I set that timer already for this message, and it has gone off or been cancelled since.")]
    AlreadyDone,
    #[error("I couldn't find that timer. Say \"what timers do I have?\" to see them.")]
    NoSuchTimer,
}

/// Timer actions on the gateway's notification store.
#[derive(Clone)]
pub struct TimerTools {
    store: Arc<dyn NotificationStore>,
}

impl std::fmt::Debug for TimerTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimerTools")
    }
}

async fn bounded<T>(call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, TimerError> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, "timer storage failed");
            Err(TimerError::Unavailable)
        }
        Err(_) => {
            tracing::warn!("timer storage gave no answer in time");
            Err(TimerError::Unavailable)
        }
    }
}

impl TimerTools {
    pub fn new(store: Arc<dyn NotificationStore>) -> Self {
        TimerTools { store }
    }

    /// Sets the turn's `nth` timer (0-based); when an earlier try of the same turn set it
    /// already, that timer is returned instead. `now` is the time the request is measured from.
    pub async fn set(&self, request: &LlmRequest, nth: usize, spec: &TimerSpec, now: DateTime<Utc>) -> Result<SetTimer, TimerError> {
        let tz = user_timezone(&request.context);
        let (fire_at, timer_type) = match spec.when {
            When::After(duration) if duration > MAX_TIMER_AHEAD => return Err(TimerError::TooFar),
            When::After(duration) if duration <= Duration::zero() => return Err(TimerError::NotInFuture),
            When::After(duration) => (now + duration, TimerType::Timer),
            When::At(time) => (next_occurrence(time, tz, now), TimerType::Alarm),
        };
        let dedupe_key = format!("chat:{}:{}:{nth}", request.session.as_str(), request.turn_id);
        let label: String = spec.label.chars().take(MAX_LABEL_CHARS).collect();
        let message: String = spec.message.chars().take(2000).collect();
        let kind = if timer_type == TimerType::Alarm { "alarm" } else { "timer" };
        let row = NewNotification {
            user: request.user_id.clone(),
            kind: NotificationKind::TimerExpired,
            payload: json!({"label": label, "timer_type": kind, "message": message, "set_by": dedupe_key}),
            fire_at,
            fired: false,
            expires_at: None,
            dedupe_key: Some(dedupe_key.clone()),
            max_pending: Some(MAX_PENDING_TIMERS),
        };
        match bounded(self.store.insert(&row)).await? {
            Inserted::New(timer_id) => Ok(SetTimer { timer_id, label, fire_at, timer_type }),
            Inserted::Duplicate => match self.earlier(&request.user_id, &dedupe_key).await? {
                Some(timer) => Ok(timer),
                None => Err(TimerError::AlreadyDone),
            },
            // The limit is checked before the key: a retry at the limit may find its own timer.
            Inserted::TooManyPending => self.earlier(&request.user_id, &dedupe_key).await?.ok_or(TimerError::TooMany),
        }
    }

    /// The pending timer an earlier try of this turn set.
    async fn earlier(&self, user: &UserId, dedupe_key: &str) -> Result<Option<SetTimer>, TimerError> {
        Ok(self.list(user).await?.iter().find(|t| t.payload["set_by"] == dedupe_key).map(set_timer))
    }

    /// The user's pending timers, soonest first.
    pub async fn list(&self, user: &UserId) -> Result<Vec<Notification>, TimerError> {
        bounded(self.store.pending_timers(user)).await
    }

    /// Cancels the user's timer `timer_id`, or all their pending timers when `None`; returns the
    /// cancelled ones (none when there were none).
    pub async fn cancel(&self, user: &UserId, timer_id: Option<&str>) -> Result<Vec<Notification>, TimerError> {
        let pending = self.list(user).await?;
        let chosen: Vec<Notification> = match timer_id {
            Some(id) => {
                let one: Vec<Notification> = pending.into_iter().filter(|t| t.id == id).collect();
                if one.is_empty() {
                    return Err(TimerError::NoSuchTimer);
                }
                one
            }
            None => pending,
        };
        let mut cancelled = Vec::with_capacity(chosen.len());
        for timer in chosen {
            if bounded(self.store.dismiss(user, &timer.id)).await? {
                cancelled.push(timer);
            }
        }
        Ok(cancelled)
    }
}

/// A stored timer as a [`SetTimer`].
pub fn set_timer(timer: &Notification) -> SetTimer {
    let timer_type = if timer.payload["timer_type"] == "alarm" { TimerType::Alarm } else { TimerType::Timer };
    SetTimer { timer_id: timer.id.clone(), label: label_of(timer), fire_at: timer.fire_at, timer_type }
}

/// A stored timer's label (`Timer` / `Alarm` when it has none).
pub fn label_of(timer: &Notification) -> String {
    match timer.payload["label"].as_str() {
        Some(label) if !label.trim().is_empty() => label.to_string(),
        _ if timer.payload["timer_type"] == "alarm" => "Alarm".into(),
        _ => "Timer".into(),
    }
}

/// The user's timezone from the loaded profile (`profile.timezone`); UTC when unset or unknown.
pub fn user_timezone(context: &Map<String, Value>) -> Tz {
    context.get("profile").and_then(|p| p.get("timezone")).and_then(Value::as_str).and_then(|name| name.parse().ok()).unwrap_or(Tz::UTC)
}

/// The next time the wall clock of `tz` shows `time`, strictly after `now`. A time skipped by a
/// daylight-saving change fires an hour later that day; a repeated one at its first occurrence.
pub fn next_occurrence(time: NaiveTime, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    (0..=2)
        .filter_map(|days| {
            let local = (today + Duration::days(days)).and_time(time);
            tz.from_local_datetime(&local).earliest().or_else(|| tz.from_local_datetime(&(local + Duration::hours(1))).earliest())
        })
        .map(|at| at.with_timezone(&Utc))
        .find(|at| *at > now)
        .unwrap_or(now + Duration::days(1))
}

/// `6:30 AM on Tue 1 Dec (America/Los_Angeles)`: a time as the user reads it.
pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    format!("{} ({})", at.with_timezone(&tz).format("%-I:%M %p on %a %-d %b"), tz.name())
}

/// `10 minutes`, `1 hour 30 minutes`, `45 seconds`.
pub fn spoken_duration(duration: Duration) -> String {
    let total = duration.num_seconds().max(0);
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let unit = |n: i64, name: &str| format!("{n} {name}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(unit(hours, "hour"));
    }
    if minutes > 0 {
        parts.push(unit(minutes, "minute"));
    }
    if seconds > 0 || parts.is_empty() {
        parts.push(unit(seconds, "second"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_alarm_is_the_next_occurrence_in_the_users_timezone() {
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        let six_thirty = NaiveTime::from_hms_opt(6, 30, 0).unwrap();
        // 08:00 UTC on 30 Nov is 00:00 in Los Angeles: 6:30 the same local day.
        assert_eq!(next_occurrence(six_thirty, la, at("2026-11-30T08:00:00Z")), at("2026-11-30T14:30:00Z"));
        // 15:00 UTC is 07:00 there: 6:30 has passed, so tomorrow.
        assert_eq!(next_occurrence(six_thirty, la, at("2026-11-30T15:00:00Z")), at("2026-12-01T14:30:00Z"));
        assert_eq!(next_occurrence(six_thirty, Tz::UTC, at("2026-11-30T06:29:00Z")), at("2026-11-30T06:30:00Z"));
    }

    #[test]
    fn a_time_skipped_by_daylight_saving_fires_an_hour_later() {
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        // 8 Mar 2026: 02:00-03:00 does not exist in Los Angeles.
        let alarm = next_occurrence(NaiveTime::from_hms_opt(2, 30, 0).unwrap(), la, at("2026-03-08T09:00:00Z"));
        assert_eq!(alarm, at("2026-03-08T10:30:00Z"));
    }

    #[test]
    fn times_and_durations_read_naturally() {
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        assert_eq!(local_time(at("2026-12-01T14:30:00Z"), la), "6:30 AM on Tue 1 Dec (America/Los_Angeles)");
        assert_eq!(spoken_duration(Duration::minutes(90)), "1 hour 30 minutes");
        assert_eq!(spoken_duration(Duration::minutes(1)), "1 minute");
    }

    #[test]
    fn an_unknown_or_missing_timezone_is_utc() {
        let context = |tz: Value| json!({"profile": {"timezone": tz}}).as_object().unwrap().clone();
        assert_eq!(user_timezone(&context(json!("Mars/Olympus"))), Tz::UTC);
        assert_eq!(user_timezone(&context(Value::Null)), Tz::UTC);
        assert_eq!(user_timezone(&context(json!("Australia/Sydney"))).name(), "Australia/Sydney");
    }
}
