//! Timers and alarms: the domain limits every way of setting one shares (REST routes, the
//! models' `set_timer` tool, the builtin assistant's phrases), the scheduler that fires due
//! timers on every node (`scheduler.rs`), and timers set from chat (`tools.rs`).

use chrono::{DateTime, Duration, Timelike, Utc};

pub mod scheduler;
pub mod tools;

/// Pending (unfired) timers one user may have.
pub const MAX_PENDING_TIMERS: usize = 50;
/// How far ahead a timer may fire.
pub const MAX_TIMER_AHEAD: Duration = Duration::days(30);

/// A client's `fire_at`: RFC 3339 with its offset and seconds 0–59. chrono reads `:60` (a leap
/// second, at any minute) and would echo it back as `…:60.000Z`, which a browser's `Date` cannot
/// parse, so it is refused like any other out-of-range field.
pub fn parse_fire_at(text: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(text).ok()?;
    (at.nanosecond() < 1_000_000_000).then(|| at.with_timezone(&Utc))
}

/// Every time the gateway sends: RFC 3339 in UTC with milliseconds, which every browser's `Date`
/// parses (never a leap second: `parse_fire_at` refuses them and the database stores none).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_at_takes_seconds_0_to_59_only() {
        assert!(parse_fire_at("2026-12-07T18:30:59Z").is_some());
        assert!(parse_fire_at("2026-12-07T18:30:00+14:00").is_some());
        for bad in [
            "2026-12-07T18:30:60Z",
            "2026-12-31T23:59:60Z",
            "2026-12-07T18:30:60.5+02:00",
            "2026-12-07T18:60:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07 18:30",
        ] {
            assert_eq!(parse_fire_at(bad), None, "{bad}");
        }
    }

    #[test]
    fn sent_times_are_rfc3339_utc_with_milliseconds() {
        let at = parse_fire_at("2026-12-07T18:30:05.25-08:00").expect("valid");
        assert_eq!(rfc3339(at), "2026-12-08T02:30:05.250Z");
    }
}
