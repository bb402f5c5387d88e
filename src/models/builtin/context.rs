//! The builtin assistant's answers from loaded context: spend per category, budget left,
//! friends nearby and upcoming events. Figures come straight from the loaders' JSON.

use pam_actors::{FinancialContext, ProfileContext, SocialContext};
use serde_json::{Map, Value};

/// A context-backed answer for `text` (lowercased), if the question is one we know.
pub(super) fn answer_from_context(text: &str, context: &Map<String, Value>) -> Option<String> {
    let asks = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let wants_events = asks(&["event", "meetup", "rally", "happening"]);
    let wants_friends = asks(&["friend", "nearby", "near me", "buddies"]);
    let wants_budget = asks(&["budget", "left to spend", "remaining", "over budget"]);
    let wants_spend = asks(&["spent", "spend", "spending", "cost me", "expenses"]);
    if !(wants_events || wants_friends || wants_budget || wants_spend) {
        return None;
    }
    if let Some(problem) = context.get("context_degraded").and_then(Value::as_str) {
        let needed = if wants_events || wants_friends { "social" } else { "financial" };
        if problem.contains(needed) {
            return Some("I can't see your data right now, so I can't answer that accurately. Please try again in a minute.".into());
        }
    }
    let profile: ProfileContext = parse(context, "profile").unwrap_or_default();
    let money = Money::for_profile(&profile);
    if wants_events {
        return Some(events_answer(&parse::<SocialContext>(context, "social")?));
    }
    if wants_friends {
        return Some(friends_answer(&parse::<SocialContext>(context, "social")?, context.get("user_location")));
    }
    let financial: FinancialContext = parse(context, "financial")?;
    if wants_spend && !wants_budget {
        return Some(spend_answer(text, &financial, &money));
    }
    Some(budget_answer(&financial, &money))
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
fn category_in<'a>(text: &str, financial: &'a FinancialContext) -> Option<&'a pam_actors::CategorySpend> {
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

fn friends_answer(social: &SocialContext, user_location: Option<&Value>) -> String {
    if social.friends.is_empty() {
        return "You haven't connected with any friends on Wheels & Wins yet.".into();
    }
    let here = user_location.and_then(|l| Some((coordinate(l, &["latitude", "lat"])?, coordinate(l, &["longitude", "lng", "lon"])?)));
    let mut located: Vec<(f64, String)> = social
        .friends
        .iter()
        .filter_map(|f| {
            let place = f.location_name.clone()?;
            let status = f.status.as_deref().map(|s| format!(", {s}")).unwrap_or_default();
            let distance = match (here, f.latitude, f.longitude) {
                (Some(here), Some(lat), Some(lon)) => Some(miles_between(here, (lat, lon))),
                _ => None,
            };
            let line = match distance {
                Some(miles) => format!("{} is in {place} ({miles:.0} miles away{status})", f.name),
                None => format!("{} is in {place}{}", f.name, f.status.as_deref().map(|s| format!(" ({s})")).unwrap_or_default()),
            };
            Some((distance.unwrap_or(f64::MAX), line))
        })
        .collect();
    if located.is_empty() {
        return format!("None of your {} friends is sharing a location right now.", social.friends.len());
    }
    located.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lines: Vec<String> = located.into_iter().map(|(_, line)| format!("• {line}")).collect();
    format!("Here's where your friends are:\n{}", lines.join("\n"))
}

fn events_answer(social: &SocialContext) -> String {
    if social.events.is_empty() {
        return "There are no published events in the next 90 days.".into();
    }
    let lines: Vec<String> = social
        .events
        .iter()
        .take(5)
        .map(|e| {
            let day = e.start_date.get(..10).unwrap_or(&e.start_date);
            match &e.location {
                Some(place) => format!("• {} on {day} at {place}", e.title),
                None => format!("• {} on {day}", e.title),
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
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Map<String, Value> {
        json!({
            "profile": {"currency": "USD", "travel_style": [], "interests": []},
            "financial": {"month": "2026-11", "total_spent": 412.5, "total_budget": 900.0, "total_remaining": 500.0, "income_total": 2500.0,
                "categories": [
                    {"category": "food", "spent": 150.0, "limit": 400.0, "remaining": 250.0, "utilisation_pct": 37.5, "over_budget": false},
                    {"category": "fuel", "spent": 250.0, "limit": 500.0, "remaining": 250.0, "utilisation_pct": 50.0, "over_budget": false},
                    {"category": "souvenirs", "spent": 12.5, "limit": null, "remaining": null, "utilisation_pct": null, "over_budget": false}]},
            "social": {"friends": [
                    {"user_id": "a", "name": "Alex", "location_name": "Moab, UT", "latitude": 38.57, "longitude": -109.55, "status": "camped"},
                    {"user_id": "b", "name": "Bea", "location_name": "Bend, OR", "latitude": 44.06, "longitude": -121.31, "status": "traveling"}],
                "events": [{"title": "Desert Rally", "start_date": "2026-12-03T17:00:00Z", "location": "Quartzsite, AZ"}]},
            "user_location": {"latitude": 45.52, "longitude": -122.68}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn fuel_spend_comes_from_the_financial_context() {
        let answer = answer_from_context("how much have i spent on fuel this month?", &context()).unwrap();
        assert_eq!(
            answer,
            "You've spent $250.00 on fuel so far this month (2026-11). That's 50% of your $500.00 budget, with $250.00 left."
        );
        assert!(answer_from_context("what did diesel cost me", &context()).unwrap().contains("$250.00 on fuel"));
    }

    #[test]
    fn budget_left_lists_each_budgeted_category() {
        let answer = answer_from_context("how much budget is left?", &context()).unwrap();
        assert!(answer.starts_with("You have $500.00 left of your $900.00 budget this month (2026-11)."), "{answer}");
        assert!(answer.contains("• fuel: $250.00 left ($250.00 of $500.00 spent)"));
        assert!(!answer.contains("souvenirs"), "unbudgeted categories are not budget lines");
    }

    #[test]
    fn friends_are_sorted_by_distance_from_the_user() {
        let answer = answer_from_context("which friends are travelling nearby?", &context()).unwrap();
        let bea = answer.find("Bea is in Bend, OR").unwrap();
        let alex = answer.find("Alex is in Moab, UT").unwrap();
        assert!(bea < alex, "{answer}");
        assert!(answer.contains("miles away"));
    }

    #[test]
    fn events_list_title_date_and_place() {
        let answer = answer_from_context("any events coming up?", &context()).unwrap();
        assert!(answer.contains("• Desert Rally on 2026-12-03 at Quartzsite, AZ"));
    }

    #[test]
    fn missing_context_says_so_and_unrelated_questions_are_not_answered_here() {
        let mut degraded = context();
        degraded.remove("financial");
        degraded.insert("context_degraded".into(), json!("financial: storage unavailable"));
        assert!(answer_from_context("how much budget is left", &degraded).unwrap().starts_with("I can't see your data right now"));
        assert_eq!(answer_from_context("tell me a joke", &context()), None);
    }
}
