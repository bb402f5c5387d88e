//! The builtin assistant's timer phrases: "remind me in 20 minutes to check the tyres", "set a
//! timer for 10 minutes", "set an alarm for 6:30 am" (12 h with am/pm, else 24 h), "what timers
//! do I have?", "cancel my timers". Parsing is plain word matching (no model); the actions go
//! through [`TimerTools`], so they share the REST limits, and the answer says what was done and
//! when the timer fires in the user's timezone.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use pam_actors::LlmRequest;

use super::spoken;
use crate::push::timers::tools::{SetTimer, TimerSpec, TimerTools, When, label_of, spoken_duration};

/// What a timer phrase asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimerCommand {
    Set(TimerSpec),
    List,
    Cancel(CancelTarget),
    /// A timer was asked for without a time we understood.
    Unclear,
}

/// Which pending timers a cancel names: "cancel my timers" (all), "turn off my 6:30 alarm" (that
/// one), "turn off the alarm" (the one alarm, or a question back when there are several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CancelTarget {
    /// The noun's kind; `None`: any kind (the plural "timers" means every timer, alarm and reminder).
    pub(super) kind: Option<Kind>,
    /// A plural noun or "all"/"every"/"both": everything that matches, never a question back.
    pub(super) all: bool,
    /// A clock time the message names, and whether it said am/pm (else either half of the day).
    pub(super) at: Option<(NaiveTime, bool)>,
}

/// The three nouns, as kinds of stored timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Timer,
    Alarm,
    Reminder,
}

impl Kind {
    fn of_noun(word: &str) -> Option<Kind> {
        match word.strip_suffix('s').unwrap_or(word) {
            "timer" => Some(Kind::Timer),
            "alarm" => Some(Kind::Alarm),
            "reminder" => Some(Kind::Reminder),
            _ => None,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Timer => "timer",
            Kind::Alarm => "alarm",
            Kind::Reminder => "reminder",
        }
    }

    /// Whether a stored timer is of this kind (reminders are timers whose message says so).
    fn holds(self, timer: &pam_actors::Notification) -> bool {
        let reminder = timer.payload["message"].as_str().is_some_and(|m| m.starts_with("Reminder"));
        match self {
            Kind::Alarm => timer.payload["timer_type"] == "alarm",
            Kind::Reminder => reminder,
            Kind::Timer => timer.payload["timer_type"] != "alarm" && !reminder,
        }
    }
}

impl CancelTarget {
    fn of(words: &[Word]) -> CancelTarget {
        let noun = words.iter().find(|w| is_noun(&w.low)).map(|w| w.low.as_str()).unwrap_or("timers");
        let plural = noun.ends_with('s');
        let all = plural || words.iter().any(|w| ["all", "every", "both", "everything"].contains(&w.low.as_str()));
        // "timers" in the plural is the general word: every timer, alarm and reminder.
        let kind = if plural && noun == "timers" { None } else { Kind::of_noun(noun) };
        let meridiem = words.iter().any(|w| {
            matches!(w.low.as_str(), "am" | "pm" | "a.m" | "p.m")
                || ((w.low.ends_with("am") || w.low.ends_with("pm")) && w.low.starts_with(|c: char| c.is_ascii_digit()))
        });
        let at = match time_in(words, true) {
            Some((When::At(time), _)) => Some((time, meridiem)),
            _ => None,
        };
        CancelTarget { kind, all, at }
    }

    /// The pending timers this target names, by the user's wall clock for a named time.
    fn pick<'a>(&self, pending: &'a [pam_actors::Notification], tz: chrono_tz::Tz) -> Vec<&'a pam_actors::Notification> {
        pending
            .iter()
            .filter(|t| self.kind.is_none_or(|kind| kind.holds(t)))
            .filter(|t| {
                self.at.is_none_or(|(time, meridiem)| {
                    let local = t.fire_at.with_timezone(&tz).time();
                    let same = |a: NaiveTime| (a.hour(), a.minute()) == (local.hour(), local.minute());
                    same(time) || (!meridiem && same(time + Duration::hours(12)))
                })
            })
            .collect()
    }
}

const NOUNS: [&str; 3] = ["timer", "alarm", "reminder"];
const CANCEL_VERBS: [&str; 6] = ["cancel", "delete", "remove", "clear", "stop", "dismiss"];
/// Words that make a message a question: "when does my alarm go off?" asks, it does not cancel.
const QUESTION_WORDS: [&str; 9] = ["what", "when", "which", "how", "does", "do", "is", "are", "will"];
const SET_VERBS: [&str; 5] = ["set", "start", "create", "add", "make"];
const LIST_WORDS: [&str; 9] = ["what", "which", "list", "show", "any", "have", "many", "pending", "my"];
const CONNECTORS: [&str; 5] = ["in", "at", "for", "after", "by"];

/// One word: as written (for labels) and lowercased without surrounding punctuation.
struct Word {
    raw: String,
    low: String,
}

fn words(message: &str) -> Vec<Word> {
    message
        .split(|c: char| c.is_whitespace() || c == '-' || c == ',')
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != ':'))
        .filter(|w| !w.is_empty())
        .map(|w| Word { raw: w.to_string(), low: w.to_lowercase() })
        .collect()
}

/// "timer", "alarms", "reminder", …: the noun itself or its plural, not "alarming".
fn is_noun(word: &str) -> bool {
    NOUNS.iter().any(|noun| word == *noun || word.strip_suffix('s') == Some(noun))
}

/// "turn" / "switch", as in "turn off the alarm" or "turn my alarm off".
fn is_switch(word: &str) -> bool {
    word == "turn" || word == "switch"
}

/// A cancel request: a cancel verb (or "turn/switch off") that comes before the first timer noun
/// and before any set verb, in a message that is not a question. Cancelling dismisses every
/// pending timer, so "set an alarm to go off at 6:30", "when does my alarm go off?" and "set a
/// timer to stop the engine" must never read as one.
fn cancels(message: &str, words: &[Word]) -> bool {
    if message.contains('?') || words.first().is_some_and(|w| QUESTION_WORDS.contains(&w.low.as_str())) {
        return false;
    }
    let first = |matches: &dyn Fn(usize) -> bool| (0..words.len()).find(|&i| matches(i));
    let verb = first(&|i| {
        CANCEL_VERBS.contains(&words[i].low.as_str())
            || (words[i].low == "off" && (i > 0 && is_switch(&words[i - 1].low) || i == words.len() - 1 && is_switch(&words[0].low)))
    });
    let noun = first(&|i| is_noun(&words[i].low));
    let setting = first(&|i| SET_VERBS.contains(&words[i].low.as_str()) || ["remind", "wake"].contains(&words[i].low.as_str()));
    let (Some(verb), Some(noun)) = (verb, noun) else { return false };
    let before_any_set = setting.is_none_or(|set| verb < set);
    // "cancel my timers" / "turn off the alarm", or "turn my alarm off" (the verb ends the message).
    before_any_set && (verb < noun || verb == words.len() - 1)
}

/// The timer command in `message`, if it is a timer phrase.
pub(super) fn parse(message: &str) -> Option<TimerCommand> {
    let words = words(message);
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.low.as_str()));
    let noun = words.iter().any(|w| is_noun(&w.low));
    let remind = words.iter().any(|w| w.low == "remind");
    let wake = words.windows(2).any(|p| p[0].low == "wake" && p[1].low == "me");
    if noun && cancels(message, &words) {
        return Some(TimerCommand::Cancel(CancelTarget::of(&words)));
    }
    let time = time_in(&words, noun && words.iter().any(|w| w.low.starts_with("alarm")));
    if remind || wake || (noun && (has(&SET_VERBS) || time.is_some())) {
        let Some((when, used)) = time else { return Some(TimerCommand::Unclear) };
        return Some(TimerCommand::Set(spec(&words, when, &used, remind)));
    }
    (noun && has(&LIST_WORDS)).then_some(TimerCommand::List)
}

fn spec(words: &[Word], when: When, used: &[usize], remind: bool) -> TimerSpec {
    let task = remind.then(|| task(words, used)).flatten();
    match (task, when) {
        (Some(task), _) => TimerSpec { message: format!("Reminder: {task}"), label: task, when },
        (None, When::After(d)) if remind => {
            TimerSpec { label: "Reminder".into(), message: format!("Reminder set {} ago", spoken_duration(d)), when }
        }
        (None, When::After(d)) => TimerSpec {
            label: format!("Timer ({})", spoken_duration(d)),
            message: format!("Your {} timer is up.", spoken_duration(d)),
            when,
        },
        (None, When::At(t)) => TimerSpec { label: "Alarm".into(), message: format!("Alarm for {}", t.format("%-I:%M %p")), when },
    }
}

/// "remind me [in 5 minutes] to check the tyres [in 5 minutes]" → "check the tyres".
fn task(words: &[Word], used: &[usize]) -> Option<String> {
    let remind = words.iter().position(|w| w.low == "remind")?;
    let to = words.iter().skip(remind).position(|w| w.low == "to" || w.low == "about")? + remind;
    let connector = |i: usize| CONNECTORS.contains(&words[i].low.as_str()) && used.contains(&(i + 1));
    let kept: Vec<&str> = (to + 1..words.len()).filter(|i| !used.contains(i) && !connector(*i)).map(|i| words[i].raw.as_str()).collect();
    (!kept.is_empty()).then(|| kept.join(" "))
}

/// The first duration ("in 1 hour 30 minutes", "10 min", "half an hour") or clock time ("6:30",
/// "6:30 pm", "7am", "at 7") in the words, with the indices it used. `alarm`: a bare number
/// after "for" is a time of day ("an alarm for 6").
fn time_in(words: &[Word], alarm: bool) -> Option<(When, Vec<usize>)> {
    if let Some(found) = duration_in(words) {
        return Some(found);
    }
    for (i, w) in words.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| words[p].low.as_str());
        let next = words.get(i + 1).map(|n| n.low.as_str());
        let meridiem_next = matches!(next, Some("am" | "pm" | "a.m" | "p.m"));
        let (digits, fused) = match w.low.strip_suffix("am").or_else(|| w.low.strip_suffix("pm")) {
            Some(digits) if !digits.is_empty() => (digits, Some(&w.low[digits.len()..])),
            _ => (w.low.as_str(), None),
        };
        let meridiem = fused.or(if meridiem_next { next } else { None }).map(|m| m.starts_with('p'));
        let clock_like = digits.contains(':') || meridiem.is_some() || previous == Some("at") || (alarm && previous == Some("for"));
        if !clock_like {
            continue;
        }
        let Some(time) = clock(digits, meridiem) else { continue };
        let mut used = vec![i];
        if meridiem_next && fused.is_none() {
            used.push(i + 1);
        }
        return Some((When::At(time), used));
    }
    None
}

fn clock(digits: &str, pm: Option<bool>) -> Option<NaiveTime> {
    let (hour, minute) = match digits.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        Some(_) => return None,
        None => (digits.parse::<u32>().ok()?, 0),
    };
    let hour = match pm {
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some(true) => hour % 12 + 12,
        Some(false) => hour % 12,
        None => hour,
    };
    NaiveTime::from_hms_opt(hour, minute, 0)
}

fn unit_seconds(word: &str) -> Option<i64> {
    match word {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(3600),
        _ => None,
    }
}

fn number(word: &str) -> Option<f64> {
    const WORDS: [&str; 13] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];
    match word {
        "a" | "an" => Some(1.0),
        "half" => Some(0.5),
        "fifteen" => Some(15.0),
        "twenty" => Some(20.0),
        "thirty" => Some(30.0),
        "forty" => Some(40.0),
        "fifty" => Some(50.0),
        _ => WORDS.iter().position(|w| *w == word).map(|n| n as f64).or_else(|| word.parse::<f64>().ok().filter(|n| n.is_finite())),
    }
}

/// Sums "N unit" pairs that follow each other ("1 hour and 30 minutes", "an hour and a half").
fn duration_in(words: &[Word]) -> Option<(When, Vec<usize>)> {
    let mut seconds = 0.0;
    let mut used = Vec::new();
    let mut last_unit = 0.0;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].low.as_str();
        // "10min", "2h"
        let split = w.find(|c: char| c.is_alphabetic()).filter(|at| *at > 0);
        let fused = split.and_then(|at| Some((number(&w[..at])?, unit_seconds(&w[at..])? as f64)));
        let pair = || Some((number(w)?, unit_seconds(&words.get(i + 1)?.low)? as f64));
        let half_an = || w == "half" && words.get(i + 1).is_some_and(|a| a.low == "an");
        if let Some((n, unit)) = fused {
            (seconds, last_unit) = (seconds + n * unit, unit);
            used.push(i);
        } else if let Some((n, unit)) = pair() {
            (seconds, last_unit) = (seconds + n * unit, unit);
            used.extend([i, i + 1]);
            i += 1;
        } else if half_an() && words.get(i + 2).and_then(|u| unit_seconds(&u.low)).is_some() {
            let unit = unit_seconds(&words[i + 2].low).unwrap_or(0) as f64;
            (seconds, last_unit) = (seconds + unit / 2.0, unit);
            used.extend([i, i + 1, i + 2]);
            i += 2;
        } else if !used.is_empty()
            && w == "and"
            && words.get(i + 1).is_some_and(|a| a.low == "a")
            && words.get(i + 2).is_some_and(|h| h.low == "half")
        {
            seconds += last_unit / 2.0;
            used.extend([i, i + 1, i + 2]);
            i += 2;
        } else if !used.is_empty() && w != "and" {
            break;
        }
        i += 1;
    }
    (seconds > 0.0).then(|| (When::After(Duration::milliseconds((seconds * 1000.0).round() as i64)), used))
}

/// The answer to a timer command: what was done, with fire times in the user's timezone, saying
/// whose clock they are on.
/// `tools` is `None` where the gateway has no timer storage.
pub(super) async fn answer(tools: Option<&TimerTools>, request: &LlmRequest, command: &TimerCommand, now: DateTime<Utc>) -> String {
    let Some(tools) = tools else {
        return "I can't set timers here, sorry: timer storage isn't available.".into();
    };
    let tz = spoken::known_timezone(&request.context);
    let result = match command {
        TimerCommand::Unclear => {
            return "When should it go off? Say for example \"set a timer for 10 minutes\", \"remind me in 1 hour to check the tyres\" \
                    or \"set an alarm for 6:30 am\"."
                .into();
        }
        TimerCommand::Set(spec) => tools.set(request, 0, spec, now).await.map(|set| set_answer(&set, spec, tz, now)),
        TimerCommand::List => tools.list(&request.user_id).await.map(|timers| {
            if timers.is_empty() {
                return "You have no timers or alarms set.".to_string();
            }
            let lines: Vec<String> = timers.iter().map(|t| format!("• {}: {}", label_of(t), spoken::time(t.fire_at, tz, now))).collect();
            let noun = if timers.len() == 1 { "timer" } else { "timers" };
            format!("You have {} {noun}:\n{}", timers.len(), lines.join("\n"))
        }),
        TimerCommand::Cancel(target) => cancel(tools, request, target, tz, now).await,
    };
    result.unwrap_or_else(|error| error.to_string())
}

/// Cancels what `target` names; several timers for a singular name get a question back instead.
async fn cancel(
    tools: &TimerTools,
    request: &LlmRequest,
    target: &CancelTarget,
    tz: Option<chrono_tz::Tz>,
    now: DateTime<Utc>,
) -> Result<String, crate::push::timers::tools::TimerError> {
    let pending = tools.list(&request.user_id).await?;
    let chosen = target.pick(&pending, tz.unwrap_or(chrono_tz::Tz::UTC));
    let noun = target.kind.map_or("timer", Kind::noun);
    let line = |t: &pam_actors::Notification| format!("• {}, due {}", label_of(t), spoken::time(t.fire_at, tz, now));
    if chosen.is_empty() {
        return Ok(match (target.at, pending.is_empty()) {
            (_, true) => "You have no timers or alarms to cancel.".to_string(),
            (Some((time, _)), false) => format!("You have no {noun} at {} to cancel; nothing was changed.", time.format("%-I:%M %P")),
            (None, false) => format!("You have no {noun}s to cancel; nothing was changed."),
        });
    }
    if chosen.len() > 1 && !target.all {
        let lines: Vec<String> = chosen.iter().map(|t| line(t)).collect();
        return Ok(format!(
            "You have {} {noun}s:\n{}\nWhich one should I cancel? Name its time (e.g. \"turn off my {} {noun}\"), or say \"cancel all my {noun}s\".",
            chosen.len(),
            lines.join("\n"),
            chosen[0].fire_at.with_timezone(&tz.unwrap_or(chrono_tz::Tz::UTC)).format("%-I:%M"),
        ));
    }
    let mut cancelled = Vec::with_capacity(chosen.len());
    for timer in chosen {
        cancelled.extend(tools.cancel(&request.user_id, Some(&timer.id)).await?);
    }
    let lines: Vec<String> = cancelled.iter().map(line).collect();
    let noun = if cancelled.len() == 1 { "timer" } else { "timers" };
    Ok(format!("Cancelled {} {noun}:\n{}", cancelled.len(), lines.join("\n")))
}

fn set_answer(set: &SetTimer, spec: &TimerSpec, tz: Option<chrono_tz::Tz>, now: DateTime<Utc>) -> String {
    let when = spoken::time(set.fire_at, tz, now);
    match spec.when {
        _ if spec.message.starts_with("Reminder:") => format!("Done: I'll remind you to {} at {when}.", set.label),
        When::At(_) => format!("Done: alarm set for {when}."),
        When::After(d) => format!("Done: timer set for {}. It goes off at {when}.", spoken_duration(d)),
    }
}

#[cfg(test)]
mod tests;
