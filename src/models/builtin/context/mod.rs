//! The builtin assistant's answers from loaded context: spend per category, budget left, where
//! to save (also the answer to a bare "yes" after the over-budget alert's "Want me to look for
//! savings?"), friends with their distance from the user, and upcoming events. Figures come
//! straight from the loaders' JSON; times and distances are said by `spoken.rs`.

use chrono::{DateTime, Utc};
use pam_actors::{CategorySpend, FinancialContext, ProfileContext, SocialContext};
use serde_json::{Map, Value};

use super::spoken;

const DEGRADED: &str = "I can't see your data right now, so I can't answer that accurately. Please try again in a minute.";

/// A context-backed answer for `text` (lowercased), if the question is one we know.
pub(super) fn answer_from_context(text: &str, context: &Map<String, Value>, now: DateTime<Utc>) -> Option<String> {
    let asks = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let wants_savings = asks(&["saving", "save money", "save on", "where can i save", "cut back", "cut costs", "analyze", "analyse"]);
    let wants_events = asks(&["event", "meetup", "rally", "happening"]);
    let wants_friends = asks(&["friend", "nearby", "near me", "buddies"]);
    let wants_budget = asks(&["budget", "left to spend", "remaining", "over budget"]);
    let wants_spend = asks(&["spent", "spend", "spending", "cost me", "expenses"]);
    if !(wants_savings || wants_events || wants_friends || wants_budget || wants_spend) {
        return None;
    }
    let social_question = !wants_savings && (wants_events || wants_friends);
    if degraded(context, if social_question { "social" } else { "financial" }) {
        return Some(DEGRADED.into());
    }
    let profile: ProfileContext = parse(context, "profile").unwrap_or_default();
    let money = Money::for_profile(&profile);
    if wants_savings {
        return Some(savings_answer(&parse(context, "financial")?, &money));
    }
    if wants_events {
        return Some(events_answer(&parse::<SocialContext>(context, "social")?, spoken::known_timezone(context), now));
    }
    if wants_friends {
        return Some(friends_answer(&parse::<SocialContext>(context, "social")?, context));
    }
    let financial: FinancialContext = parse(context, "financial")?;
    if wants_spend && !wants_budget {
        return Some(spend_answer(text, &financial, &money));
    }
    Some(budget_answer(&financial, &money))
}

/// The answer to a bare "yes": the only question PAM asks unprompted is the over-budget alert's
/// "Want me to look for savings?", so with a category over budget "yes" gets the savings
/// answer; otherwise PAM says it does not know what the yes is to (never the offline refusal).
pub(super) fn yes_answer(context: &Map<String, Value>) -> String {
    let unsure = "I'm not sure what you're saying yes to. I can tell you how much budget is left, what you've spent, where your \
                  friends are, what events are coming up, or set a timer. Say \"what can you do\" for the full list.";
    if degraded(context, "financial") {
        return DEGRADED.into();
    }
    match parse::<FinancialContext>(context, "financial") {
        Some(financial) if financial.categories.iter().any(|c| c.over_budget) => {
            let money = Money::for_profile(&parse(context, "profile").unwrap_or_default());
            savings_answer(&financial, &money)
        }
        _ => unsure.into(),
    }
}

fn degraded(context: &Map<String, Value>, kind: &str) -> bool {
    context.get("context_degraded").and_then(Value::as_str).is_some_and(|problem| problem.contains(kind))
}

fn parse<T: serde::de::DeserializeOwned>(context: &Map<String, Value>, key: &str) -> Option<T> {
    context.get(key).filter(|v| !v.is_null()).and_then(|v| serde_json::from_value(v.clone()).ok())
}

struct Money {
    currency: String,
}

impl Money {
    fn for_profile(profile: &ProfileContext) -> Self {
        Money { currency: profile.currency.clone().unwrap_or_else(|| "USD".into()) }
    }

    fn format(&self, amount: f64) -> String {
        match self.currency.as_str() {
            "USD" | "AUD" | "CAD" | "NZD" => format!("${amount:.2}"),
            "EUR" => format!("€{amount:.2}"),
            "GBP" => format!("£{amount:.2}"),
            other => format!("{amount:.2} {other}"),
        }
    }
}

/// Words that name a category in a question, mapped to the stored category name.
fn category_in<'a>(text: &str, financial: &'a FinancialContext) -> Option<&'a CategorySpend> {
    let synonyms: &[(&str, &[&str])] = &[
        ("fuel", &["fuel", "gas", "diesel", "petrol"]),
        ("food", &["food", "groceries", "grocery", "eating"]),
        ("camping", &["camping", "campground", "campsite", "rv park"]),
    ];
    financial.categories.iter().find(|c| {
        let name = c.category.to_lowercase();
        text.contains(&name) || synonyms.iter().any(|(canon, words)| name.contains(canon) && words.iter().any(|w| text.contains(w)))
    })
}

fn spend_answer(text: &str, financial: &FinancialContext, money: &Money) -> String {
    match category_in(text, financial) {
        Some(category) => {
            let mut answer =
                format!("You've spent {} on {} so far this month ({}).", money.format(category.spent), category.category, financial.month);
            if let (Some(limit), Some(remaining)) = (category.limit, category.remaining) {
                let pct = category.utilisation_pct.unwrap_or_default();
                if category.over_budget {
                    answer.push_str(&format!(" That's {pct}% of your {} budget: {} over.", money.format(limit), money.format(-remaining)));
                } else {
                    answer.push_str(&format!(
                        " That's {pct}% of your {} budget, with {} left.",
                        money.format(limit),
                        money.format(remaining)
                    ));
                }
            }
            answer
        }
        None => format!("You've spent {} in total so far this month ({}).", money.format(financial.total_spent), financial.month),
    }
}

fn budget_answer(financial: &FinancialContext, money: &Money) -> String {
    let budgeted: Vec<_> = financial.categories.iter().filter(|c| c.limit.is_some()).collect();
    if budgeted.is_empty() {
        return format!("You have no active budgets this month. You've spent {} so far.", money.format(financial.total_spent));
    }
    let mut answer = format!(
        "You have {} left of your {} budget this month ({}).",
        money.format(financial.total_remaining),
        money.format(financial.total_budget),
        financial.month
    );
    for c in budgeted {
        let (limit, remaining) = (c.limit.unwrap_or_default(), c.remaining.unwrap_or_default());
        if c.over_budget {
            answer.push_str(&format!(
                "\n• {}: {} spent of {} — over budget by {}",
                c.category,
                money.format(c.spent),
                money.format(limit),
                money.format(-remaining)
            ));
        } else {
            answer.push_str(&format!(
                "\n• {}: {} left ({} of {} spent)",
                c.category,
                money.format(remaining),
                money.format(c.spent),
                money.format(limit)
            ));
        }
    }
    answer
}

/// Where the money went this month and where it is over: categories over budget and what they
/// cost, those close to their limit, the biggest spends. Says what PAM cannot do offline.
fn savings_answer(financial: &FinancialContext, money: &Money) -> String {
    let budgeted = |c: &&CategorySpend| c.limit.is_some();
    let over: Vec<&CategorySpend> = financial.categories.iter().filter(|c| c.over_budget).collect();
    let close: Vec<&CategorySpend> =
        financial.categories.iter().filter(budgeted).filter(|c| !c.over_budget && c.utilisation_pct.unwrap_or_default() >= 80.0).collect();
    let mut answer = if over.is_empty() {
        format!("Nothing is over budget this month ({}).", financial.month)
    } else {
        let mut text = format!("Here's where you're over budget this month ({}):", financial.month);
        for c in &over {
            let (limit, remaining) = (c.limit.unwrap_or_default(), c.remaining.unwrap_or_default());
            let spent = (money.format(c.spent), money.format(limit), money.format(-remaining));
            text.push_str(&format!("\n• {}: {} spent of {} — {} over", c.category, spent.0, spent.1, spent.2));
        }
        text
    };
    if !close.is_empty() {
        answer.push_str("\nClose to the limit:");
        for c in &close {
            let (limit, remaining) = (c.limit.unwrap_or_default(), c.remaining.unwrap_or_default());
            let pct = c.utilisation_pct.unwrap_or_default().floor();
            answer.push_str(&format!("\n• {}: {pct}% of {} spent, {} left", c.category, money.format(limit), money.format(remaining)));
        }
    }
    let mut biggest: Vec<&CategorySpend> = financial.categories.iter().filter(|c| c.spent > 0.0).collect();
    biggest.sort_by(|a, b| b.spent.total_cmp(&a.spent));
    if !biggest.is_empty() {
        let top: Vec<String> = biggest.iter().take(3).map(|c| format!("{} {}", c.category, money.format(c.spent))).collect();
        answer.push_str(&format!("\nYour biggest spending so far: {}.", top.join(", ")));
    }
    if let Some(first) = over.first() {
        let names: Vec<&str> = over.iter().map(|c| c.category.as_str()).collect();
        let cut = if over.len() == 1 { format!("{} is", first.category) } else { format!("{} are", names.join(" and ")) };
        answer.push_str(&format!("\n{cut} the place to cut back for the rest of the month."));
    }
    answer
        .push_str("\nI can't look up cheaper prices while I'm in offline mode; ask \"how much budget is left?\" any time to check again.");
    answer
}

/// Friends with their place and, when both the user's location (`user_location` in the chat's
/// context) and theirs are known, how far away they are, nearest first.
fn friends_answer(social: &SocialContext, context: &Map<String, Value>) -> String {
    if social.friends.is_empty() {
        return "You haven't connected with any friends on Wheels & Wins yet.".into();
    }
    let here = context
        .get("user_location")
        .and_then(|l| Some((coordinate(l, &["latitude", "lat"])?, coordinate(l, &["longitude", "lng", "lon"])?)));
    let metric = spoken::metric(context);
    let mut located: Vec<(f64, String)> = social
        .friends
        .iter()
        .filter_map(|f| {
            let coordinates = f.latitude.zip(f.longitude);
            let place = f.location_name.clone().or_else(|| coordinates.map(|(lat, lon)| format!("{lat:.2}, {lon:.2}")))?;
            let distance = here.zip(coordinates).map(|(here, there)| miles_between(here, there));
            let details: Vec<String> =
                distance.map(|miles| format!("{} away", spoken::distance(miles, metric))).into_iter().chain(f.status.clone()).collect();
            let line = if details.is_empty() {
                format!("{} is in {place}", f.name)
            } else {
                format!("{} is in {place} ({})", f.name, details.join(", "))
            };
            Some((distance.unwrap_or(f64::MAX), line))
        })
        .collect();
    if located.is_empty() {
        return format!("None of your {} friends is sharing a location right now.", social.friends.len());
    }
    let hidden = social.friends.len() - located.len();
    let measured = located.iter().any(|(d, _)| *d < f64::MAX);
    located.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lines: Vec<String> = located.into_iter().map(|(_, line)| format!("• {line}")).collect();
    let heading = match (here, measured) {
        (Some(_), true) => "Your friends, nearest first:",
        (Some(_), false) => "Here's where your friends are:",
        (None, _) => "Here's where your friends are (share your location and I'll tell you how far away each one is):",
    };
    let mut answer = format!("{heading}\n{}", lines.join("\n"));
    match hidden {
        0 => {}
        1 => answer.push_str("\n(1 other friend isn't sharing a location.)"),
        n => answer.push_str(&format!("\n({n} other friends aren't sharing a location.)")),
    }
    answer
}

/// Events with their start in the user's timezone (saying whose clock it is).
fn events_answer(social: &SocialContext, tz: Option<chrono_tz::Tz>, now: DateTime<Utc>) -> String {
    if social.events.is_empty() {
        return "There are no published events in the next 90 days.".into();
    }
    let lines: Vec<String> = social
        .events
        .iter()
        .take(5)
        .map(|e| {
            let when = match DateTime::parse_from_rfc3339(&e.start_date) {
                Ok(start) => spoken::time(start.with_timezone(&Utc), tz, now),
                Err(_) => format!("on {}", e.start_date.get(..10).unwrap_or(&e.start_date)),
            };
            match &e.location {
                Some(place) => format!("• {}: {when}, at {place}", e.title),
                None => format!("• {}: {when}", e.title),
            }
        })
        .collect();
    format!("Coming up in the next 90 days:\n{}", lines.join("\n"))
}

fn coordinate(location: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| location.get(*k).and_then(Value::as_f64))
}

/// Great-circle distance in miles.
fn miles_between((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    3958.8 * 2.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests;
