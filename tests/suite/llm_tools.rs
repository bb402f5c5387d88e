//! Timer tools with a real model API (the local fake, Anthropic and OpenAI formats): the model
//! streams a `set_timer` call with its arguments in pieces, the gateway sets the timer (REST lists
//! it), sends the result back (`tool_result` / `role: "tool"`) and streams the model's final
//! answer; a call with arguments that are no JSON or naming an unknown tool gets an error result
//! and the turn still ends with the model's answer; a model that never stops calling tools is cut
//! off after three rounds with a plain answer; `cancel_timer` dismisses the named timer only (or all
//! of one kind when asked). An answer that set a timer is never served from the response cache.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::common::fake_llm::*;
use crate::common::v2::{connect_welcomed, frames_until, joined_deltas};
use crate::common::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Anthropic,
    OpenAi,
}

async fn app_with(format: Format, fake: &FakeLlm) -> TestApp {
    spawn_app_with(
        |s| match format {
            Format::Anthropic => use_anthropic(s, fake),
            Format::OpenAi => use_openai(s, fake),
        },
        Default::default(),
    )
    .await
}

async fn timers(app: &TestApp, user: &str) -> Vec<Value> {
    let response = rest::client().get(app.http("/api/v1/pam/timers")).bearer_auth(token_for(user)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["timers"].as_array().unwrap().clone()
}

/// The results the gateway sent back in `body` (the request after a tool round): (call id,
/// content JSON, is_error).
fn tool_results(format: Format, body: &Value) -> Vec<(String, Value, bool)> {
    let messages = body["messages"].as_array().unwrap();
    let parse = |text: &Value| serde_json::from_str::<Value>(text.as_str().unwrap()).unwrap();
    match format {
        Format::Anthropic => messages
            .iter()
            .filter(|m| m["role"] == "user" && m["content"].is_array())
            .flat_map(|m| m["content"].as_array().unwrap().clone())
            .filter(|block| block["type"] == "tool_result")
            .map(|b| (b["tool_use_id"].as_str().unwrap().to_string(), parse(&b["content"]), b["is_error"] == true))
            .collect(),
        Format::OpenAi => messages
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| {
                let content = parse(&m["content"]);
                let is_error = content.get("error").is_some();
                (m["tool_call_id"].as_str().unwrap().to_string(), content, is_error)
            })
            .collect(),
    }
}

fn tool_names(format: Format, body: &Value) -> Vec<String> {
    let name = |t: &Value| match format {
        Format::Anthropic => t["name"].as_str().unwrap().to_string(),
        Format::OpenAi => t["function"]["name"].as_str().unwrap().to_string(),
    };
    body["tools"].as_array().map(|tools| tools.iter().map(name).collect()).unwrap_or_default()
}

async fn a_streamed_set_timer_call_sets_the_timer_and_the_model_answers(format: Format) {
    let fake = FakeLlm::start(Script::answer("unused")).await;
    let arguments = r#"{"label": "Check the tyres", "duration_seconds": 1200}"#;
    fake.queue(vec![
        Script::tool_call("Setting that up.", "call_tyres", "set_timer", arguments),
        Script::answer("Done! I'll remind you to check the tyres in 20 minutes."),
    ]);
    let app = app_with(format, &fake).await;
    let (mut client, _) = connect_welcomed(&app, &token_for(USER)).await;
    let before = Utc::now();
    client.send_json(json!({"type": "chat", "id": "tyres-1", "message": "remind me to check the tyres in 20 minutes"})).await;
    let frames = tokio::time::timeout(WAIT, frames_until(&mut client, "chat_end")).await.expect("the turn ends");
    let end = frames.last().unwrap();
    let answer = "Setting that up.\n\nDone! I'll remind you to check the tyres in 20 minutes.";
    assert_eq!(end["message"], answer, "{end}");
    assert_eq!(joined_deltas(&frames), answer, "the deltas are the same text, nothing from the tool round");

    let set = timers(&app, USER).await;
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0]["label"], "Check the tyres");
    let fire_at = DateTime::parse_from_rfc3339(set[0]["fire_at"].as_str().unwrap()).unwrap().with_timezone(&Utc);
    assert!(fire_at >= before + chrono::Duration::minutes(20) && fire_at <= Utc::now() + chrono::Duration::minutes(20));

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "one round of tools, then the answer");
    assert_eq!(tool_names(format, &requests[0].body), ["set_timer", "list_timers", "cancel_timer"]);
    let system = match format {
        Format::Anthropic => requests[0].body["system"].as_str().unwrap().to_string(),
        Format::OpenAi => requests[0].body["messages"][0]["content"].as_str().unwrap().to_string(),
    };
    assert!(system.contains("use the set_timer, list_timers and cancel_timer tools"), "{system}");
    let results = tool_results(format, &requests[1].body);
    assert_eq!(results.len(), 1, "{:?}", requests[1].body);
    let (id, content, is_error) = &results[0];
    assert_eq!((id.as_str(), *is_error), ("call_tyres", false));
    assert_eq!(content["timer_id"], set[0]["timer_id"], "the model is told which timer was set: {content}");
    assert!(content["fire_at_local"].as_str().unwrap().ends_with("(UTC)"), "{content}");

    // A retry of the same turn id is answered from storage: no model call, no second timer.
    client.send_json(json!({"type": "chat", "id": "tyres-1", "message": "remind me to check the tyres in 20 minutes"})).await;
    frames_until(&mut client, "chat_end").await;
    assert_eq!(timers(&app, USER).await.len(), 1);

    // Asking again (a new turn) is not a response-cache repeat: an answer that set a timer is
    // never replayed, so the second timer is set.
    fake.queue(vec![Script::tool_call("", "call_again", "set_timer", arguments), Script::answer("Done again.")]);
    client.send_json(json!({"type": "chat", "id": "tyres-2", "message": "remind me to check the tyres in 20 minutes"})).await;
    assert_eq!(frames_until(&mut client, "chat_end").await.pop().unwrap()["message"], "Done again.");
    assert_eq!(timers(&app, USER).await.len(), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn anthropic_tool_use_sets_a_timer_and_streams_the_final_answer() {
    a_streamed_set_timer_call_sets_the_timer_and_the_model_answers(Format::Anthropic).await;
}

#[tokio::test]
async fn openai_tool_calls_set_a_timer_and_stream_the_final_answer() {
    a_streamed_set_timer_call_sets_the_timer_and_the_model_answers(Format::OpenAi).await;
}

async fn malformed_tool_calls_get_error_results_and_the_turn_still_answers(format: Format) {
    let fake = FakeLlm::start(Script::answer("unused")).await;
    fake.queue(vec![
        Script::tool_call("", "call_bad", "set_timer", r#"{"label": "Tea", "duration_seconds": 6"#),
        Script::tool_call("", "call_rocket", "launch_rocket", "{}"),
        Script::answer("Sorry, I couldn't set that timer."),
    ]);
    let app = app_with(format, &fake).await;
    let mut client = app.connect_ready().await;
    let answer = tokio::time::timeout(WAIT, legacy_chat(&mut client, "set a tea timer")).await.expect("no hang");
    assert_eq!(answer["message"], "Sorry, I couldn't set that timer.", "{answer}");
    assert!(timers(&app, USER).await.is_empty(), "nothing was set");

    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let bad_json = tool_results(format, &requests[1].body);
    assert_eq!(bad_json.len(), 1);
    assert!(bad_json[0].2, "an error result: {:?}", bad_json[0]);
    assert!(bad_json[0].1["error"].as_str().unwrap().contains("not a JSON object"), "{:?}", bad_json[0]);
    let unknown = tool_results(format, &requests[2].body);
    assert_eq!(unknown.len(), 2, "both rounds are in the conversation");
    assert!(unknown[1].1["error"].as_str().unwrap().contains("no tool named 'launch_rocket'"), "{:?}", unknown[1]);
    app.shutdown().await;
}

#[tokio::test]
async fn anthropic_malformed_and_unknown_tool_calls_are_answered_not_crashed() {
    malformed_tool_calls_get_error_results_and_the_turn_still_answers(Format::Anthropic).await;
}

#[tokio::test]
async fn openai_malformed_and_unknown_tool_calls_are_answered_not_crashed() {
    malformed_tool_calls_get_error_results_and_the_turn_still_answers(Format::OpenAi).await;
}

#[tokio::test]
async fn a_model_that_keeps_calling_tools_is_stopped_after_three_rounds() {
    let fake = FakeLlm::start(Script::tool_call("", "call_list", "list_timers", "{}")).await;
    let app = app_with(Format::OpenAi, &fake).await;
    let mut client = app.connect_ready().await;
    let answer = tokio::time::timeout(Duration::from_secs(20), legacy_chat(&mut client, "what timers do I have?")).await.expect("no hang");
    assert_eq!(answer["message"], "Sorry, I couldn't finish that. Please try again.", "{answer}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "three rounds of tools, then one that may not call them");
    assert_eq!(requests[3].body["tool_choice"], "none");
    assert!(requests[..3].iter().all(|r| r.body["tool_choice"] == "auto"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_cancel_timer_call_dismisses_the_named_timer_and_only_that_one() {
    let fake = FakeLlm::start(Script::answer("unused")).await;
    let app = app_with(Format::Anthropic, &fake).await;
    let mut ids = Vec::new();
    for label in ["Tea", "Laundry"] {
        let response = rest::client()
            .post(app.http("/api/v1/pam/timers"))
            .bearer_auth(token_for(USER))
            .json(&json!({"label": label, "duration_s": 600}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.unwrap()["timer_id"].as_str().unwrap().to_string());
    }
    let arguments = json!({"timer_id": ids[0]}).to_string();
    fake.queue(vec![Script::tool_call("", "toolu_cancel", "cancel_timer", &arguments), Script::answer("Cancelled your tea timer.")]);
    let mut client = app.connect_ready().await;
    assert_eq!(legacy_chat(&mut client, "cancel the tea timer").await["message"], "Cancelled your tea timer.");
    let left = timers(&app, USER).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["label"], "Laundry");
    let results = tool_results(Format::Anthropic, &fake.requests()[1].body);
    assert_eq!(results[0].1["cancelled"][0]["label"], "Tea", "{:?}", results[0]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_cancel_timer_call_for_all_alarms_leaves_the_timers() {
    let fake = FakeLlm::start(Script::answer("unused")).await;
    let app = app_with(Format::Anthropic, &fake).await;
    for (label, timer_type) in [("Wake up", "alarm"), ("Tea", "timer"), ("Leave camp", "alarm")] {
        let response = rest::client()
            .post(app.http("/api/v1/pam/timers"))
            .bearer_auth(token_for(USER))
            .json(&json!({"label": label, "timer_type": timer_type, "duration_s": 600}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let arguments = json!({"all": true, "timer_type": "alarm"}).to_string();
    fake.queue(vec![Script::tool_call("", "toolu_cancel", "cancel_timer", &arguments), Script::answer("Both alarms are off.")]);
    let mut client = app.connect_ready().await;
    assert_eq!(legacy_chat(&mut client, "turn off my alarms").await["message"], "Both alarms are off.");
    let left = timers(&app, USER).await;
    assert_eq!(left.iter().map(|t| t["label"].as_str().unwrap()).collect::<Vec<_>>(), ["Tea"], "{left:?}");
    let results = tool_results(Format::Anthropic, &fake.requests()[1].body);
    assert_eq!(results[0].1["cancelled"].as_array().map(Vec::len), Some(2), "{:?}", results[0]);
    app.shutdown().await;
}
