//! `builtin`: the offline assistant. Answers greetings, help and capability questions
//! deterministically, the user's money, where to save (and a bare "yes" to the over-budget
//! alert's "Want me to look for savings?"), friends and events from loaded context
//! (`context/`), and sets, lists and cancels timers, alarms and reminders (`timers/`); times
//! name whose clock they are on and distances come in the user's units (`spoken.rs`). It is the
//! last fallback that always answers, and never offers what it cannot do. Streams its answer
//! word by word so it behaves like a real provider. Its "what can you do" answer lists exactly
//! these.

use pam_actors::{BoxFuture, LlmError, LlmProvider, LlmReply, LlmRequest};
use tokio::sync::mpsc;

mod context;
mod spoken;
mod timers;

use crate::push::timers::tools::TimerTools;

pub const BUILTIN: &str = "builtin";

/// The offline assistant; without timer storage (`Default`) a timer phrase is answered with
/// "I can't set timers here".
#[derive(Debug, Default, Clone)]
pub struct BuiltinAssistant {
    timers: Option<TimerTools>,
}

impl BuiltinAssistant {
    /// The assistant that sets timers through `timers`.
    pub fn with_timers(timers: TimerTools) -> Self {
        BuiltinAssistant { timers: Some(timers) }
    }
}

/// What the user seems to want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Greeting,
    Capabilities,
    Help,
    Thanks,
    /// A bare "yes" / "sure" / "ok, go ahead": an answer to a question PAM asked.
    Yes,
    Other,
}

/// Words of a bare affirmative ("yes please", "sure, go ahead", "ok thanks PAM").
const AFFIRMATIVE: [&str; 7] = ["yes", "yeah", "yep", "yup", "sure", "ok", "okay"];
const AFFIRMATIVE_FILLERS: [&str; 9] = ["please", "do", "it", "go", "ahead", "pam", "thanks", "thank", "you"];

fn is_yes(words: &[&str]) -> bool {
    words.len() <= 5
        && words.iter().any(|w| AFFIRMATIVE.contains(w))
        && words.iter().all(|w| AFFIRMATIVE.contains(w) || AFFIRMATIVE_FILLERS.contains(w))
}

fn intent_of(message: &str) -> Intent {
    let text = message.trim().to_lowercase();
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).collect();
    let has = |w: &str| words.contains(&w);
    let phrase = |p: &str| text.contains(p);
    if phrase("what can you do") || phrase("what do you do") || phrase("who are you") || phrase("what are you") {
        Intent::Capabilities
    } else if has("help") || phrase("how do i use") || phrase("how does this work") {
        Intent::Help
    } else if is_yes(&words) {
        Intent::Yes
    } else if has("thanks") || has("thank") || has("thx") || has("cheers") {
        Intent::Thanks
    } else if words.len() <= 4 && ["hi", "hello", "hey", "howdy", "g'day", "morning", "evening", "yo"].iter().any(|g| has(g)) {
        Intent::Greeting
    } else {
        Intent::Other
    }
}

/// The deterministic answer for a request: from loaded context where the question is about the
/// user's money, friends or events (or a "yes" to the over-budget alert's offer); otherwise by
/// intent.
pub fn answer(request: &LlmRequest) -> String {
    answer_at(request, chrono::Utc::now())
}

fn answer_at(request: &LlmRequest, now: chrono::DateTime<chrono::Utc>) -> String {
    let intent = intent_of(&request.message);
    if intent == Intent::Other {
        if let Some(answer) = context::answer_from_context(&request.message.to_lowercase(), &request.context, now) {
            return answer;
        }
    }
    match intent {
        Intent::Yes => context::yes_answer(&request.context),
        Intent::Greeting => "Hi there! I'm PAM, your RV travel assistant. Ask me about your budget and spending, friends and events \
                             along the road, or to set a timer or a reminder."
            .into(),
        Intent::Capabilities => "I'm PAM, your RV travel assistant. Right now I can:\n\
             • tell you what you've spent this month, in total or by category (\"How much have I spent on fuel?\")\n\
             • tell you how much budget is left, category by category (\"How much budget is left?\")\n\
             • show where you're over budget and where to cut back (\"Where can I save?\")\n\
             • show where your friends are, and how far away when your app shares your location (\"Which friends are nearby?\")\n\
             • list events coming up in the next 90 days, in your timezone (\"Any events coming up?\")\n\
             • set timers, alarms and reminders (\"set a timer for 10 minutes\", \"set an alarm for 6:30 am\", \
             \"remind me in 20 minutes to check the tyres\"), tell you which are set (\"what timers do I have?\") \
             and cancel them (\"cancel my timers\").\n\
             I can't answer open-ended questions, plan routes or look things up while I'm in offline mode."
            .into(),
        Intent::Help => "Just type a question in plain words. For example: \"How much budget is left?\", \
                         \"Which friends are nearby?\", \"Any events coming up?\" or \"set a timer for 10 minutes\". \
                         Say \"what can you do\" to see everything I can help with."
            .into(),
        Intent::Thanks => "You're welcome! Safe travels, and ask me anytime.".into(),
        Intent::Other => "I'm running in offline mode right now, so I can help with your budget, spending, friends nearby, \
                          upcoming events and timers, but not open-ended questions. Say \"what can you do\" for ideas."
            .into(),
    }
}

impl LlmProvider for BuiltinAssistant {
    fn name(&self) -> &str {
        BUILTIN
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, deltas: mpsc::Sender<String>) -> BoxFuture<'a, Result<LlmReply, LlmError>> {
        Box::pin(async move {
            let timer = timers::parse(&request.message);
            let text = match &timer {
                Some(command) => timers::answer(self.timers.as_ref(), request, command, chrono::Utc::now()).await,
                None => answer(request),
            };
            for piece in text.split_inclusive(' ') {
                if deltas.send(piece.to_string()).await.is_err() {
                    break;
                }
            }
            let mut reply = LlmReply::new(text, BUILTIN, BUILTIN);
            reply.acted = timer.is_some();
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_protocol::UserId;

    fn request(message: &str) -> LlmRequest {
        LlmRequest {
            user_id: UserId::parse("5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1").unwrap(),
            session: pam_protocol::SessionId::default_session(),
            message: message.into(),
            context: Default::default(),
            history: Vec::new(),
            fast: true,
            turn_id: "t1".into(),
        }
    }

    #[test]
    fn greetings_help_and_capabilities_have_their_own_answers() {
        assert!(answer(&request("Hi PAM")).starts_with("Hi there! I'm PAM"));
        assert!(answer(&request("hello!")).starts_with("Hi there!"));
        let abilities = answer(&request("What can you do?"));
        for ability in
            ["spent this month", "budget is left", "friends are", "events coming up", "set a timer for 10 minutes", "cancel my timers"]
        {
            assert!(abilities.contains(ability), "{ability}: {abilities}");
        }
        assert!(abilities.contains("can't answer open-ended questions"), "it says what it cannot do: {abilities}");
        assert!(answer(&request("help")).starts_with("Just type a question"));
        assert!(answer(&request("thanks a lot")).starts_with("You're welcome"));
        assert!(answer(&request("hi, what is the tallest bridge in Oregon and can my rig pass")).contains("offline mode"));
    }

    #[test]
    fn a_bare_yes_is_an_answer_to_pams_question_not_an_open_ended_one() {
        for yes in ["yes", "Yes!", "yes please", "Sure, go ahead", "ok thanks PAM", "yep"] {
            assert_eq!(intent_of(yes), Intent::Yes, "{yes}");
        }
        for other in ["yes, plan a route to Moab", "okay what's the weather", "thanks"] {
            assert_ne!(intent_of(other), Intent::Yes, "{other}");
        }
        let answer = answer(&request("Yes please"));
        assert!(answer.starts_with("I'm not sure what you're saying yes to."), "no context, nothing over budget: {answer}");
        assert!(!answer.contains("offline mode"), "{answer}");
    }

    #[test]
    fn yes_to_the_over_budget_alert_names_the_category_and_what_it_cost() {
        let mut request = request("yes");
        request.context = serde_json::json!({"financial": {"month": "2026-11", "total_spent": 450.0, "total_budget": 400.0,
            "total_remaining": -50.0, "income_total": 0.0, "categories": [
                {"category": "fuel", "spent": 450.0, "limit": 400.0, "remaining": -50.0, "utilisation_pct": 112.5, "over_budget": true}]}})
        .as_object()
        .unwrap()
        .clone();
        let answer = answer(&request);
        assert!(answer.contains("• fuel: $450.00 spent of $400.00 — $50.00 over"), "{answer}");
    }

    #[test]
    fn answers_are_deterministic() {
        assert_eq!(answer(&request("what can you do")), answer(&request("what can you do")));
    }

    #[tokio::test]
    async fn deltas_add_up_to_the_answer() {
        let (tx, mut rx) = mpsc::channel(256);
        let reply = BuiltinAssistant::default().generate(&request("help"), tx).await.unwrap();
        let mut streamed = String::new();
        while let Some(piece) = rx.recv().await {
            streamed.push_str(&piece);
        }
        assert_eq!(streamed, reply.text);
        assert_eq!(reply.source, "builtin");
    }
}
