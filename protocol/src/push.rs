//! Server push frames: a fired timer or alarm and a proactive alert, in the shapes today's
//! browser client reads. Legacy sockets get them as they are; v2 sockets get them with `seq`
//! (see [`SeqPushFrame`]), replayable like `chat_end`.

use serde::{Deserialize, Serialize};

/// Whether a fired timer was a countdown or an alarm at a wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimerType {
    /// Set as a duration ("in 20 minutes").
    Timer,
    /// Set for a time of day ("at 6:30").
    Alarm,
}

/// What the browser shows as a system notification for a fired timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TimerNotification {
    /// Notification title.
    pub title: String,
    /// Notification text.
    pub body: String,
    /// Always `true`: the notification stays until the user acts on it.
    #[serde(rename = "requireInteraction")]
    pub require_interaction: bool,
    /// Collapses repeats of the same timer into one notification.
    pub tag: String,
}

/// A timer or alarm fired (`type: "timer_expired"`); sent again on every connect until dismissed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TimerExpired {
    /// The push notification's id (what a dismiss names).
    pub id: String,
    /// The timer's id.
    pub timer_id: String,
    /// What the user called the timer.
    pub label: String,
    /// Countdown or alarm.
    pub timer_type: TimerType,
    /// The text to show.
    pub message: String,
    /// When it fired (RFC 3339).
    pub fire_at: String,
    /// The system notification to raise.
    pub notification: TimerNotification,
}

/// How urgent a proactive alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
// Variant docs would become part of the generated JSON Schema (a doc turns its `enum` into a
// `oneOf`), which docs/schema/ commits; the names say enough.
#[allow(missing_docs)]
pub enum AlertPriority {
    Urgent,
    High,
    Normal,
    Low,
}

/// The body of a proactive alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AlertContent {
    /// The alert's kind as the client files it (e.g. `proactive_alert`).
    #[serde(rename = "type")]
    pub kind: String,
    /// e.g. `financial_guidance`.
    pub category: String,
    /// e.g. `budget_alert`.
    pub alert_type: String,
    /// The text to show.
    pub message: String,
    /// How urgent it is.
    pub priority: AlertPriority,
    /// Follow-up actions the client may offer, e.g. `analyze_expenses`.
    pub actions: Vec<String>,
}

/// An alert the server raises on its own (`type: "proactive_alert"`), e.g. a budget threshold crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProactiveAlert {
    /// The push notification's id (what a dismiss names).
    pub id: String,
    /// When it was raised (RFC 3339).
    pub timestamp: String,
    /// What to show.
    pub content: AlertContent,
}

/// Every push frame, tagged by `type`. Pushes carry no `message`/`content`/`response` at the top
/// level, so today's client never takes one for a chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
// Each variant is named for its payload type, documented there; a variant doc would become part
// of the generated JSON Schema, which docs/schema/ commits.
#[allow(missing_docs)]
pub enum PushFrame {
    TimerExpired(TimerExpired),
    ProactiveAlert(ProactiveAlert),
}

/// A push frame with its `seq`, as a v2 socket receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SeqPushFrame {
    /// The stream's sequence number, as on every v2 server frame.
    pub seq: u64,
    /// The push itself (its fields sit beside `seq`).
    #[serde(flatten)]
    pub frame: PushFrame,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer() -> PushFrame {
        PushFrame::TimerExpired(TimerExpired {
            id: "n-1".into(),
            timer_id: "t-1".into(),
            label: "tyre pressure".into(),
            timer_type: TimerType::Timer,
            message: "Check the tyre pressure".into(),
            fire_at: "2026-01-01T06:30:00Z".into(),
            notification: TimerNotification {
                title: "Timer".into(),
                body: "Check the tyre pressure".into(),
                require_interaction: true,
                tag: "t-1".into(),
            },
        })
    }

    #[test]
    fn a_fired_timer_has_the_shape_todays_client_reads() {
        let value = serde_json::to_value(timer()).unwrap();
        assert_eq!(value["type"], "timer_expired");
        assert_eq!(value["timer_type"], "timer");
        assert_eq!(value["notification"]["requireInteraction"], true);
        assert!(value.get("content").is_none() && value.get("response").is_none());
        assert_eq!(serde_json::from_value::<PushFrame>(value).unwrap(), timer());
    }

    #[test]
    fn a_proactive_alert_nests_its_text_under_content() {
        let alert = PushFrame::ProactiveAlert(ProactiveAlert {
            id: "n-2".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            content: AlertContent {
                kind: "proactive_alert".into(),
                category: "financial_guidance".into(),
                alert_type: "budget_alert".into(),
                message: "Fuel: 80 % of the budget".into(),
                priority: AlertPriority::Normal,
                actions: vec!["analyze_expenses".into()],
            },
        });
        let value = serde_json::to_value(&alert).unwrap();
        assert_eq!(value["type"], "proactive_alert");
        assert_eq!(value["content"]["type"], "proactive_alert");
        assert_eq!(value["content"]["priority"], "normal");
        assert!(value.get("message").is_none());
        assert_eq!(serde_json::from_value::<PushFrame>(value).unwrap(), alert);
    }

    #[test]
    fn a_v2_push_carries_its_seq_beside_the_frame() {
        let value = serde_json::to_value(SeqPushFrame { seq: 9, frame: timer() }).unwrap();
        assert_eq!(value["seq"], 9);
        assert_eq!(value["type"], "timer_expired");
        let back: SeqPushFrame = serde_json::from_value(value).unwrap();
        assert_eq!(back.frame, timer());
    }
}
