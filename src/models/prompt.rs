//! The PAM prompt both remote providers send: a system prompt (who PAM is, how to answer, the
//! user's loaded context rendered compactly) and the conversation as alternating user/assistant
//! turns — the last 20 history messages, then the new message.

use std::fmt::Write;

use pam_actors::{FinancialContext, LlmRequest, ProfileContext, SocialContext};
use serde::Serialize;
use serde_json::{Map, Value};

/// History messages that reach the model.
const HISTORY_LIMIT: usize = 20;
/// Longest answer any provider is asked for (PAM answers briefly; it also caps the cost of a
/// runaway generation).
pub const MAX_ANSWER_TOKENS: u32 = 1_024;
/// Client-sent context beyond the loaded keys is passed on as JSON up to this many characters.
const EXTRA_CONTEXT_CHARS: usize = 1_500;
/// Friends and events listed in the prompt (the loaders cap events at 25 already).
const LIST_LIMIT: usize = 15;
/// Keys the loaders own; everything else in the context came from the client.
const LOADED_KEYS: [&str; 4] = ["profile", "financial", "social", "context_degraded"];

const SYSTEM_PROMPT: &str = "You are PAM, the personal AI travel assistant of Wheels & Wins, an app for people who travel and \
live in RVs, motorhomes and caravans. You help with trip and route planning, campgrounds and overnight stops, fuel, \
the traveller's budget and expenses, and friends and events along the road.\n\
Answer in plain, friendly language, briefly (a few sentences or a short list) unless asked for detail. Use the \
traveller's own figures and currency from the context below when the question is about their money, friends or events; \
never invent figures, names or bookings that are not in the context — say what you do not know. Safety first: \
mention vehicle height, weight and road restrictions when they matter for an RV.";

/// One turn of the conversation as both APIs take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptMessage {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

/// What a provider sends: the system text and the alternating turns (first and last are `user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub system: String,
    pub messages: Vec<PromptMessage>,
}

/// The prompt for one chat turn.
pub fn build(request: &LlmRequest) -> Prompt {
    let mut system = String::from(SYSTEM_PROMPT);
    let context = render_context(&request.context);
    if !context.is_empty() {
        system.push_str("\n\n## What PAM knows about this traveller\n");
        system.push_str(&context);
    }
    Prompt { system, messages: conversation(request) }
}

/// History (last 20) then the message, merged so roles alternate and the first turn is the user's.
fn conversation(request: &LlmRequest) -> Vec<PromptMessage> {
    let skip = request.history.len().saturating_sub(HISTORY_LIMIT);
    let earlier = request.history.iter().skip(skip).map(|m| (m.role.as_str(), m.content.as_str()));
    let mut messages: Vec<PromptMessage> = Vec::new();
    for (role, content) in earlier.chain([("user", request.message.as_str())]) {
        let role = if role == "assistant" { "assistant" } else { "user" };
        if content.trim().is_empty() || (messages.is_empty() && role == "assistant") {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(content);
            }
            _ => messages.push(PromptMessage { role, content: content.to_string() }),
        }
    }
    messages
}

/// The loaded context as short lines; unknown client keys as compact JSON.
pub fn render_context(context: &Map<String, Value>) -> String {
    let mut out = String::new();
    if let Some(profile) = parse::<ProfileContext>(context, "profile") {
        render_profile(&mut out, &profile);
    }
    let currency = parse::<ProfileContext>(context, "profile").and_then(|p| p.currency).unwrap_or_else(|| "USD".into());
    if let Some(financial) = parse::<FinancialContext>(context, "financial") {
        render_financial(&mut out, &financial, &currency);
    }
    if let Some(social) = parse::<SocialContext>(context, "social") {
        render_social(&mut out, &social);
    }
    if let Some(problem) = context.get("context_degraded").and_then(Value::as_str) {
        let _ = writeln!(out, "Note: some of the traveller's data could not be loaded just now ({problem}); say so if it matters.");
    }
    let extra: Map<String, Value> =
        context.iter().filter(|(k, _)| !LOADED_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !extra.is_empty() {
        let json = Value::Object(extra).to_string();
        let json: String = json.chars().take(EXTRA_CONTEXT_CHARS).collect();
        let _ = writeln!(out, "From the app: {json}");
    }
    out
}

fn parse<T: serde::de::DeserializeOwned>(context: &Map<String, Value>, key: &str) -> Option<T> {
    context.get(key).filter(|v| !v.is_null()).and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn render_profile(out: &mut String, profile: &ProfileContext) {
    let mut parts = Vec::new();
    if let Some(name) = profile.nickname.as_ref().or(profile.full_name.as_ref()) {
        parts.push(format!("name {name}"));
    }
    let vehicle: Vec<&str> = [&profile.vehicle_type, &profile.vehicle_make_model].into_iter().flatten().map(String::as_str).collect();
    if !vehicle.is_empty() {
        parts.push(format!("vehicle {}", vehicle.join(", ")));
    }
    for (label, value) in
        [("fuel", &profile.fuel_type), ("region", &profile.region), ("units", &profile.units), ("timezone", &profile.timezone)]
    {
        if let Some(value) = value {
            parts.push(format!("{label} {value}"));
        }
    }
    if !profile.travel_style.is_empty() {
        parts.push(format!("travel style {}", profile.travel_style.join(", ")));
    }
    if !profile.interests.is_empty() {
        parts.push(format!("interests {}", profile.interests.join(", ")));
    }
    if let Some(currency) = &profile.currency {
        parts.push(format!("currency {currency}"));
    }
    if !parts.is_empty() {
        let _ = writeln!(out, "Profile: {}.", parts.join("; "));
    }
}

fn render_financial(out: &mut String, financial: &FinancialContext, currency: &str) {
    let _ = writeln!(
        out,
        "Money this month ({}, {currency}): spent {:.2}, budget {:.2}, left {:.2}, income {:.2}.",
        financial.month, financial.total_spent, financial.total_budget, financial.total_remaining, financial.income_total
    );
    for category in &financial.categories {
        let mut line = format!("- {}: spent {:.2}", category.category, category.spent);
        if let (Some(limit), Some(remaining)) = (category.limit, category.remaining) {
            let _ = write!(line, " of {limit:.2} (left {remaining:.2}, {:.0}% used)", category.utilisation_pct.unwrap_or_default());
        }
        if category.over_budget {
            line.push_str(", OVER BUDGET");
        }
        let _ = writeln!(out, "{line}");
    }
}

fn render_social(out: &mut String, social: &SocialContext) {
    if !social.friends.is_empty() {
        let _ = writeln!(out, "Friends:");
        for friend in social.friends.iter().take(LIST_LIMIT) {
            let whereabouts = match (&friend.location_name, &friend.status) {
                (Some(place), Some(status)) => format!(" — {status} at {place}"),
                (Some(place), None) => format!(" — at {place}"),
                (None, Some(status)) => format!(" — {status}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(out, "- {}{whereabouts}", friend.name);
        }
    }
    if !social.events.is_empty() {
        let _ = writeln!(out, "Upcoming events:");
        for event in social.events.iter().take(LIST_LIMIT) {
            let place = event.location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default();
            let _ = writeln!(out, "- {} on {}{place}", event.title, event.start_date);
        }
    }
}

#[cfg(test)]
mod tests {
    use pam_actors::HistoryMessage;
    use pam_protocol::UserId;
    use serde_json::json;

    use super::*;

    fn request(history: Vec<(&str, &str)>, message: &str) -> LlmRequest {
        LlmRequest {
            user_id: UserId::parse("5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1").unwrap(),
            session: pam_protocol::SessionId::default_session(),
            message: message.into(),
            context: Map::new(),
            history: history.into_iter().map(|(role, content)| HistoryMessage { role: role.into(), content: content.into() }).collect(),
            fast: false,
            turn_id: "t1".into(),
        }
    }

    #[test]
    fn turns_alternate_start_with_the_user_and_end_with_the_message() {
        let prompt = build(&request(vec![("assistant", "welcome"), ("user", "a"), ("user", "b"), ("assistant", "c")], "d"));
        let roles: Vec<&str> = prompt.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(prompt.messages[0].content, "a\n\nb");
        assert_eq!(prompt.messages[2].content, "d");
    }

    #[test]
    fn only_the_last_twenty_history_messages_are_sent() {
        let history: Vec<(String, String)> =
            (0..30).map(|i| (if i % 2 == 0 { "user" } else { "assistant" }.to_string(), format!("m{i}"))).collect();
        let history = history.iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
        let prompt = build(&request(history, "now"));
        assert_eq!(prompt.messages.len(), 21);
        assert_eq!(prompt.messages[0].content, "m10");
    }

    #[test]
    fn loaded_context_is_rendered_compactly() {
        let mut request = request(vec![], "hi");
        request.context = json!({
            "profile": {"nickname": "Sam", "vehicle_type": "motorhome", "currency": "AUD", "travel_style": [], "interests": ["fishing"]},
            "financial": {"month": "2026-11", "total_spent": 120.5, "total_budget": 500.0, "total_remaining": 379.5, "income_total": 0.0,
                "categories": [{"category": "fuel", "spent": 120.5, "limit": 300.0, "remaining": 179.5, "utilisation_pct": 40.2, "over_budget": false}]},
            "social": {"friends": [{"user_id": "x", "name": "Jo", "location_name": "Byron Bay", "status": "camped"}], "events": []},
            "page": "budget"
        })
        .as_object()
        .unwrap()
        .clone();
        let system = build(&request).system;
        assert!(system.contains("You are PAM"));
        assert!(system.contains("Profile: name Sam; vehicle motorhome; interests fishing; currency AUD."), "{system}");
        assert!(system.contains("- fuel: spent 120.50 of 300.00 (left 179.50, 40% used)"), "{system}");
        assert!(system.contains("- Jo — camped at Byron Bay"), "{system}");
        assert!(system.contains(r#"From the app: {"page":"budget"}"#), "{system}");
    }
}
