//! How the builtin assistant says a time and a distance: every time names whose clock it is on
//! ("6:30 pm tomorrow (your time, America/Los_Angeles)", or UTC when the user has set no
//! timezone, saying so), and distances come in the user's units (miles unless `metric`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

/// The user's timezone from the loaded profile (`user_settings.regional_preferences.timezone`),
/// when it is set and known.
pub(super) fn known_timezone(context: &Map<String, Value>) -> Option<Tz> {
    context.get("profile")?.get("timezone")?.as_str()?.parse().ok()
}

/// `6:30 pm today (your time, America/Los_Angeles)`, `7:05 am tomorrow (…)`, `9:00 am on Thu
/// 3 Dec (…)`; without a timezone `2:30 pm today UTC (your timezone isn't set, so this is UTC)`.
pub(super) fn time(at: DateTime<Utc>, tz: Option<Tz>, now: DateTime<Utc>) -> String {
    let zone = tz.unwrap_or(Tz::UTC);
    let local = at.with_timezone(&zone);
    let days = (local.date_naive() - now.with_timezone(&zone).date_naive()).num_days();
    let day = match days {
        0 => "today".to_string(),
        1 => "tomorrow".to_string(),
        _ => local.format("on %a %-d %b").to_string(),
    };
    let clock = local.format("%-I:%M %P");
    match tz {
        Some(tz) => format!("{clock} {day} (your time, {})", tz.name()),
        None => format!("{clock} {day} UTC (your timezone isn't set, so this is UTC)"),
    }
}

/// Whether the user reads distances in kilometres (`regional_preferences.units` = `metric`).
pub(super) fn metric(context: &Map<String, Value>) -> bool {
    context.get("profile").and_then(|p| p.get("units")).and_then(Value::as_str).is_some_and(|u| u.eq_ignore_ascii_case("metric"))
}

/// `120 miles` / `193 km` (under 10: one decimal).
pub(super) fn distance(miles: f64, metric: bool) -> String {
    let value = if metric { miles * 1.609_344 } else { miles };
    let number = if value < 10.0 { format!("{value:.1}") } else { format!("{value:.0}") };
    let unit = match (metric, number.as_str()) {
        (true, _) => "km",
        (false, "1.0") => "mile",
        (false, _) => "miles",
    };
    format!("{number} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_name_the_users_timezone_and_say_today_or_tomorrow() {
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        let now = at("2026-12-01T20:00:00Z"); // 12:00 pm in Los Angeles
        assert_eq!(time(at("2026-12-02T02:30:00Z"), Some(la), now), "6:30 pm today (your time, America/Los_Angeles)");
        assert_eq!(time(at("2026-12-02T14:30:00Z"), Some(la), now), "6:30 am tomorrow (your time, America/Los_Angeles)");
        assert_eq!(time(at("2026-12-04T17:00:00Z"), Some(la), now), "9:00 am on Fri 4 Dec (your time, America/Los_Angeles)");
    }

    #[test]
    fn without_a_timezone_the_time_says_it_is_utc_and_why() {
        let now = at("2026-12-01T20:00:00Z");
        assert_eq!(time(at("2026-12-01T20:20:00Z"), None, now), "8:20 pm today UTC (your timezone isn't set, so this is UTC)");
    }

    #[test]
    fn the_timezone_comes_from_the_profile_only_when_it_is_a_real_one() {
        let context = |tz: Value| json!({"profile": {"timezone": tz}}).as_object().unwrap().clone();
        assert_eq!(known_timezone(&context(json!("Europe/Berlin"))), Some(chrono_tz::Europe::Berlin));
        assert_eq!(known_timezone(&context(json!("Mars/Olympus"))), None);
        assert_eq!(known_timezone(&context(Value::Null)), None);
        assert_eq!(known_timezone(&Map::new()), None);
    }

    #[test]
    fn distances_come_in_the_users_units() {
        assert_eq!(distance(120.4, false), "120 miles");
        assert_eq!(distance(1.0, false), "1.0 mile");
        assert_eq!(distance(3.26, false), "3.3 miles");
        assert_eq!(distance(120.0, true), "193 km");
        let metric_profile = json!({"profile": {"units": "metric"}}).as_object().unwrap().clone();
        assert!(metric(&metric_profile));
        assert!(!metric(&Map::new()));
    }
}
