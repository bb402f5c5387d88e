//! Unit tests of the builtin's timer phrases (parsing only; the actions are tested over sockets).

use super::*;

fn set(message: &str) -> TimerSpec {
    match parse(message) {
        Some(TimerCommand::Set(spec)) => spec,
        other => panic!("{message:?} → {other:?}"),
    }
}

fn after(minutes: i64) -> When {
    When::After(Duration::minutes(minutes))
}

fn at(hour: u32, minute: u32) -> When {
    When::At(NaiveTime::from_hms_opt(hour, minute, 0).unwrap())
}

#[test]
fn reminders_keep_the_task_as_written_wherever_the_time_is() {
    let spec = set("Remind me in 20 minutes to check the tyres");
    assert_eq!((spec.label.as_str(), spec.when), ("check the tyres", after(20)));
    assert_eq!(spec.message, "Reminder: check the tyres");
    let spec = set("remind me to call Mum in 2 hours");
    assert_eq!((spec.label.as_str(), spec.when), ("call Mum", after(120)));
    let spec = set("remind me at 6pm to move the van");
    assert_eq!((spec.label.as_str(), spec.when), ("move the van", at(18, 0)));
}

#[test]
fn timers_take_any_common_way_of_saying_a_duration() {
    assert_eq!(set("set a timer for 10 minutes").when, after(10));
    assert_eq!(set("Set a timer for 10 minutes").label, "Timer (10 minutes)");
    assert_eq!(set("start a 15-minute timer").when, after(15));
    assert_eq!(set("timer for 1 hour and 30 minutes please").when, after(90));
    assert_eq!(set("set a timer for an hour and a half").when, after(90));
    assert_eq!(set("set a timer for half an hour").when, after(30));
    assert_eq!(set("set a timer for 5min").when, after(5));
    assert_eq!(set("set a timer for ten minutes").when, after(10));
    assert_eq!(set("set a timer for 45 seconds").when, When::After(Duration::seconds(45)));
}

#[test]
fn alarms_read_twelve_and_twenty_four_hour_times() {
    assert_eq!(set("set an alarm for 6:30").when, at(6, 30));
    assert_eq!(set("Set an alarm for 6:30 pm").when, at(18, 30));
    assert_eq!(set("set an alarm for 6:30pm").when, at(18, 30));
    assert_eq!(set("set an alarm for 12am").when, at(0, 0));
    assert_eq!(set("set an alarm for 12 pm").when, at(12, 0));
    assert_eq!(set("set an alarm for 18:45").when, at(18, 45));
    assert_eq!(set("set an alarm for 7").when, at(7, 0));
    assert_eq!(set("wake me up at 5:15 am").when, at(5, 15));
    assert_eq!(set("set an alarm for 6:30").label, "Alarm");
}

#[test]
fn listing_cancelling_and_unclear_requests_are_told_apart() {
    for list in ["what timers do I have?", "Do I have any alarms?", "list my reminders", "show my timers"] {
        assert_eq!(parse(list), Some(TimerCommand::List), "{list}");
    }
    for cancel in
        ["cancel my timers", "Cancel all alarms", "delete my reminders", "turn off my alarm", "turn my alarm off", "stop the timer"]
    {
        assert!(matches!(parse(cancel), Some(TimerCommand::Cancel(_))), "{cancel}");
    }
    // Cancelling dismisses every timer: nothing that merely mentions "off" or "stop" may do it.
    for not_cancel in [
        "set an alarm to go off at 6:30",
        "when does my alarm go off?",
        "set a timer to stop the engine in 10 minutes",
        "remind me in 5 minutes to stop the oven timer",
        "that's alarming, stop",
        "stop the timer?",
    ] {
        assert!(!matches!(parse(not_cancel), Some(TimerCommand::Cancel(_))), "{not_cancel}");
    }
    assert_eq!(parse("set a timer"), Some(TimerCommand::Unclear));
    assert_eq!(parse("set an alarm for 25:00"), Some(TimerCommand::Unclear));
    assert_eq!(parse("remind me to buy milk"), Some(TimerCommand::Unclear));
}

#[test]
fn other_questions_are_not_timer_phrases() {
    for other in ["how much have I spent on fuel?", "hi", "what can you do", "any events in 10 days?", "what time is it"] {
        assert_eq!(parse(other), None, "{other}");
    }
}

fn fired(label: &str, at: &str) -> SetTimer {
    SetTimer {
        timer_id: "t1".into(),
        label: label.into(),
        fire_at: DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc),
        timer_type: pam_protocol::TimerType::Alarm,
    }
}

#[test]
fn set_answers_say_whose_clock_the_time_is_on() {
    let la: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
    let now = DateTime::parse_from_rfc3339("2026-12-01T20:00:00Z").unwrap().with_timezone(&Utc); // noon in LA
    let alarm = set("set an alarm for 6:30 pm");
    assert_eq!(
        set_answer(&fired("Alarm", "2026-12-02T02:30:00Z"), &alarm, Some(la), now),
        "Done: alarm set for 6:30 pm today (your time, America/Los_Angeles)."
    );
    let timer = set("set a timer for 20 minutes");
    assert_eq!(
        set_answer(&fired("Timer (20 minutes)", "2026-12-01T20:20:00Z"), &timer, None, now),
        "Done: timer set for 20 minutes. It goes off at 8:20 pm today UTC (your timezone isn't set, so this is UTC)."
    );
    let reminder = set("remind me in 20 minutes to check the tyres");
    assert_eq!(
        set_answer(&fired("check the tyres", "2026-12-01T20:20:00Z"), &reminder, Some(la), now),
        "Done: I'll remind you to check the tyres at 12:20 pm today (your time, America/Los_Angeles)."
    );
}

fn target(message: &str) -> CancelTarget {
    match parse(message) {
        Some(TimerCommand::Cancel(target)) => target,
        other => panic!("{message:?} is no cancel: {other:?}"),
    }
}

#[test]
fn a_cancel_names_its_kind_its_time_or_everything() {
    let six_thirty = NaiveTime::from_hms_opt(6, 30, 0).unwrap();
    assert_eq!(target("turn off my 6:30 alarm"), CancelTarget { kind: Some(Kind::Alarm), all: false, at: Some((six_thirty, false)) });
    assert_eq!(target("cancel the 6:30 am alarm").at, Some((six_thirty, true)));
    assert_eq!(target("cancel my timers"), CancelTarget { kind: None, all: true, at: None });
    assert_eq!(target("Cancel all alarms"), CancelTarget { kind: Some(Kind::Alarm), all: true, at: None });
    assert_eq!(target("delete my reminders").kind, Some(Kind::Reminder));
    assert_eq!(target("turn off my alarm"), CancelTarget { kind: Some(Kind::Alarm), all: false, at: None });
    assert!(target("stop the timer").kind == Some(Kind::Timer) && !target("stop the timer").all);
}
