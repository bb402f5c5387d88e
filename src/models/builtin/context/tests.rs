//! Unit tests of the builtin's answers from loaded context.

use super::*;
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T20:00:00Z").unwrap().with_timezone(&Utc)
}

fn context() -> Map<String, Value> {
    json!({
        "profile": {"currency": "USD", "travel_style": [], "interests": [], "timezone": "America/Los_Angeles"},
        "financial": {"month": "2026-11", "total_spent": 412.5, "total_budget": 900.0, "total_remaining": 500.0, "income_total": 2500.0,
            "categories": [
                {"category": "food", "spent": 150.0, "limit": 400.0, "remaining": 250.0, "utilisation_pct": 37.5, "over_budget": false},
                {"category": "fuel", "spent": 250.0, "limit": 500.0, "remaining": 250.0, "utilisation_pct": 50.0, "over_budget": false},
                {"category": "souvenirs", "spent": 12.5, "limit": null, "remaining": null, "utilisation_pct": null, "over_budget": false}]},
        "social": {"friends": [
                {"user_id": "a", "name": "Alex", "location_name": "Moab, UT", "latitude": 38.57, "longitude": -109.55, "status": "camped"},
                {"user_id": "b", "name": "Bea", "location_name": "Bend, OR", "latitude": 44.06, "longitude": -121.31, "status": "traveling"},
                {"user_id": "c", "name": "Cy"}],
            "events": [{"title": "Desert Rally", "start_date": "2026-12-03T17:00:00Z", "location": "Quartzsite, AZ"}]},
        "user_location": {"latitude": 45.52, "longitude": -122.68}
    })
    .as_object()
    .unwrap()
    .clone()
}

/// The same user with fuel over its budget and camping at 90 % of it.
fn over_budget() -> Map<String, Value> {
    let mut context = context();
    context["financial"] = json!({"month": "2026-11", "total_spent": 735.0, "total_budget": 1200.0, "total_remaining": 465.0,
        "income_total": 2500.0, "categories": [
            {"category": "food", "spent": 150.0, "limit": 400.0, "remaining": 250.0, "utilisation_pct": 37.5, "over_budget": false},
            {"category": "fuel", "spent": 450.0, "limit": 400.0, "remaining": -50.0, "utilisation_pct": 112.5, "over_budget": true},
            {"category": "camping", "spent": 135.0, "limit": 150.0, "remaining": 15.0, "utilisation_pct": 90.0, "over_budget": false}]});
    context
}

fn ask(question: &str, context: &Map<String, Value>) -> String {
    answer_from_context(question, context, now()).unwrap_or_else(|| panic!("no context answer for {question:?}"))
}

#[test]
fn fuel_spend_comes_from_the_financial_context() {
    assert_eq!(
        ask("how much have i spent on fuel this month?", &context()),
        "You've spent $250.00 on fuel so far this month (2026-11). That's 50% of your $500.00 budget, with $250.00 left."
    );
    assert!(ask("what did diesel cost me", &context()).contains("$250.00 on fuel"));
}

#[test]
fn budget_left_lists_each_budgeted_category() {
    let answer = ask("how much budget is left?", &context());
    assert!(answer.starts_with("You have $500.00 left of your $900.00 budget this month (2026-11)."), "{answer}");
    assert!(answer.contains("• fuel: $250.00 left ($250.00 of $500.00 spent)"));
    assert!(!answer.contains("souvenirs"), "unbudgeted categories are not budget lines");
}

#[test]
fn friends_are_sorted_by_distance_from_the_user_with_the_distance() {
    let answer = ask("which friends are travelling nearby?", &context());
    assert!(answer.starts_with("Your friends, nearest first:\n"), "{answer}");
    let bea = answer.find("• Bea is in Bend, OR (121 miles away, traveling)").expect(&answer);
    let alex = answer.find("• Alex is in Moab, UT (").expect(&answer);
    assert!(bea < alex, "{answer}");
    assert!(answer.ends_with("(1 other friend isn't sharing a location.)"), "{answer}");
}

#[test]
fn friends_distances_come_in_kilometres_for_metric_users() {
    let mut metric = context();
    metric["profile"]["units"] = json!("metric");
    let answer = ask("any friends nearby?", &metric);
    assert!(answer.contains("• Bea is in Bend, OR (195 km away, traveling)"), "{answer}");
}

#[test]
fn without_the_users_location_friends_are_listed_without_promising_distances() {
    let mut unknown = context();
    unknown.remove("user_location");
    let answer = ask("which friends are nearby?", &unknown);
    assert!(
        answer.starts_with("Here's where your friends are (share your location and I'll tell you how far away each one is):"),
        "{answer}"
    );
    assert!(answer.contains("• Alex is in Moab, UT (camped)") && !answer.contains("miles"), "{answer}");
}

#[test]
fn events_say_when_they_start_on_the_users_clock() {
    let answer = ask("any events coming up?", &context());
    assert!(answer.contains("• Desert Rally: 9:00 am on Thu 3 Dec (your time, America/Los_Angeles), at Quartzsite, AZ"), "{answer}");
    let mut no_timezone = context();
    no_timezone["profile"]["timezone"] = Value::Null;
    let answer = ask("any events coming up?", &no_timezone);
    assert!(answer.contains("• Desert Rally: 5:00 pm on Thu 3 Dec UTC (your timezone isn't set, so this is UTC)"), "{answer}");
}

#[test]
fn looking_for_savings_names_what_is_over_budget_and_what_it_cost() {
    let answer = ask("look for savings", &over_budget());
    assert!(
        answer.starts_with("Here's where you're over budget this month (2026-11):\n• fuel: $450.00 spent of $400.00 — $50.00 over"),
        "{answer}"
    );
    assert!(answer.contains("Close to the limit:\n• camping: 90% of $150.00 spent, $15.00 left"), "{answer}");
    assert!(answer.contains("Your biggest spending so far: fuel $450.00, food $150.00, camping $135.00."), "{answer}");
    assert!(answer.contains("fuel is the place to cut back"), "{answer}");
    assert!(answer.contains("I can't look up cheaper prices while I'm in offline mode"), "it says what it cannot do: {answer}");
    let calm = ask("where can i save?", &context());
    assert!(calm.starts_with("Nothing is over budget this month (2026-11)."), "{calm}");
}

#[test]
fn yes_after_the_over_budget_alert_gets_the_savings_not_the_offline_refusal() {
    let answer = yes_answer(&over_budget());
    assert!(answer.starts_with("Here's where you're over budget this month"), "{answer}");
    let unsure = yes_answer(&context());
    assert!(unsure.starts_with("I'm not sure what you're saying yes to."), "nothing is over budget: {unsure}");
    assert!(!unsure.contains("offline mode"), "{unsure}");
}

#[test]
fn missing_context_says_so_and_unrelated_questions_are_not_answered_here() {
    let mut degraded = context();
    degraded.remove("financial");
    degraded.insert("context_degraded".into(), json!("financial: storage unavailable"));
    assert!(ask("how much budget is left", &degraded).starts_with("I can't see your data right now"));
    assert!(yes_answer(&degraded).starts_with("I can't see your data right now"));
    assert_eq!(answer_from_context("tell me a joke", &context(), now()), None);
}
