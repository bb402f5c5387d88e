//! Unit tests of the fallback chain with scripted models and paused tokio time.

use std::sync::Mutex;

use pam_protocol::UserId;

use super::*;
use crate::models::builtin::BuiltinAssistant;

/// What a scripted model does.
#[derive(Clone)]
enum Behaviour {
    /// Streams these pieces, one per `gap`, then ends.
    Answer(Vec<&'static str>, Duration),
    /// Never sends anything.
    Stall,
    /// Streams these pieces, then fails.
    FailAfter(Vec<&'static str>, ProviderFailure),
}

struct Scripted {
    name: &'static str,
    behaviour: Mutex<Behaviour>,
    asked: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(name: &'static str, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Scripted { name, behaviour: Mutex::new(behaviour), asked: Mutex::new(Vec::new()) })
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn calls(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

impl StreamingModel for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn model(&self, fast: bool) -> &str {
        if fast { "fast-1" } else { "accurate-1" }
    }

    fn stream<'a>(
        &'a self,
        _request: &'a LlmRequest,
        model: &'a str,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<crate::models::Streamed, ProviderFailure>> {
        self.asked.lock().unwrap().push(model.to_string());
        let behaviour = self.behaviour.lock().unwrap().clone();
        Box::pin(async move {
            match behaviour {
                Behaviour::Stall => std::future::pending().await,
                Behaviour::Answer(pieces, gap) => {
                    for piece in &pieces {
                        tokio::time::sleep(gap).await;
                        let _ = deltas.send(piece.to_string()).await;
                    }
                    Ok(pieces.concat().into())
                }
                Behaviour::FailAfter(pieces, failure) => {
                    for piece in pieces {
                        let _ = deltas.send(piece.to_string()).await;
                    }
                    Err(failure)
                }
            }
        })
    }
}

fn request(message: &str, fast: bool) -> LlmRequest {
    LlmRequest {
        user_id: UserId::parse("5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1").unwrap(),
        session: pam_protocol::SessionId::default_session(),
        message: message.into(),
        context: Default::default(),
        history: Vec::new(),
        fast,
        turn_id: "t1".into(),
    }
}

fn chain(models: Vec<Arc<dyn StreamingModel>>) -> FallbackChain {
    let deadlines = ChainDeadlines { first_token: Duration::from_secs(10), total: Duration::from_secs(30) };
    FallbackChain::new(models, Arc::new(BuiltinAssistant::default()), deadlines)
}

async fn collect(mut rx: mpsc::Receiver<String>) -> String {
    let mut text = String::new();
    while let Some(piece) = rx.recv().await {
        text.push_str(&piece);
    }
    text
}

#[tokio::test(start_paused = true)]
async fn a_healthy_model_answers_and_streams_with_its_first_token_time() {
    let model = Scripted::new("anthropic", Behaviour::Answer(vec!["Hello ", "there"], Duration::from_millis(700)));
    let (tx, rx) = mpsc::channel(16);
    let reply = chain(vec![model]).generate(&request("hi", false), tx).await.unwrap();
    assert_eq!((reply.text.as_str(), reply.source.as_str(), reply.model.as_str()), ("Hello there", "anthropic", "accurate-1"));
    assert_eq!(reply.first_token, Some(Duration::from_millis(700)));
    assert_eq!(reply.fallback_reason, None);
    assert_eq!(collect(rx).await, "Hello there");
}

#[tokio::test(start_paused = true)]
async fn fast_turns_use_the_fast_model_and_others_the_accurate_one() {
    let model = Scripted::new("openai", Behaviour::Answer(vec!["ok"], Duration::ZERO));
    let chain = chain(vec![model.clone()]);
    assert_eq!(chain.generate(&request("hi", true), mpsc::channel(1).0).await.unwrap().model, "fast-1");
    assert_eq!(chain.generate(&request("plan my trip?", false), mpsc::channel(1).0).await.unwrap().model, "accurate-1");
    assert_eq!(*model.asked.lock().unwrap(), ["fast-1", "accurate-1"]);
}

#[tokio::test(start_paused = true)]
async fn stalled_models_fall_through_to_builtin_after_each_first_token_deadline() {
    let started = Instant::now();
    let models: Vec<Arc<dyn StreamingModel>> =
        vec![Scripted::new("anthropic", Behaviour::Stall), Scripted::new("openai", Behaviour::Stall)];
    let (tx, rx) = mpsc::channel(256);
    let reply = chain(models).generate(&request("hello", true), tx).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(20));
    assert_eq!(reply.source, "builtin");
    assert!(reply.text.starts_with("Hi there!"));
    assert_eq!(reply.fallback_reason.as_deref(), Some("anthropic: no first token within 10000 ms; openai: no first token within 10000 ms"));
    assert_eq!(reply.first_token, Some(Duration::from_secs(20)));
    assert_eq!(collect(rx).await, reply.text, "nothing was streamed before, so the builtin streams");
}

#[tokio::test(start_paused = true)]
async fn a_slow_stream_is_cut_at_the_total_budget_and_the_builtin_still_answers_in_time() {
    let slow = Scripted::new("anthropic", Behaviour::Answer(vec!["a "; 100], Duration::from_secs(1)));
    let started = Instant::now();
    let reply = chain(vec![slow]).generate(&request("hello", true), mpsc::channel(256).0).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "answers before the turn's outer deadline");
    assert_eq!(reply.source, "builtin");
    assert_eq!(reply.fallback_reason.as_deref(), Some("anthropic: no complete answer within 30000 ms"));
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_fails_mid_stream_leaves_no_fragment_and_stops_the_stream() {
    let broken = Scripted::new("anthropic", Behaviour::FailAfter(vec!["Half an ", "ans"], ProviderFailure::CutOff));
    let (tx, rx) = mpsc::channel(256);
    let reply = chain(vec![broken]).generate(&request("hello", true), tx).await.unwrap();
    assert!(reply.text.starts_with("Hi there!"), "the answer is the fallback's full text: {}", reply.text);
    assert_eq!(reply.fallback_reason.as_deref(), Some("anthropic: stream cut off before its end event"));
    assert_eq!(collect(rx).await, "Half an ans", "after a failed stream no further deltas are sent");
}

#[tokio::test(start_paused = true)]
async fn the_next_remote_model_answers_when_the_first_is_refused() {
    let models: Vec<Arc<dyn StreamingModel>> = vec![
        Scripted::new("anthropic", Behaviour::FailAfter(vec![], ProviderFailure::Status(429))),
        Scripted::new("openai", Behaviour::Answer(vec!["From openai"], Duration::ZERO)),
    ];
    let reply = chain(models).generate(&request("hello", false), mpsc::channel(1).0).await.unwrap();
    assert_eq!((reply.source.as_str(), reply.text.as_str()), ("openai", "From openai"));
    assert_eq!(reply.fallback_reason.as_deref(), Some("anthropic: HTTP 429"));
}

#[tokio::test(start_paused = true)]
async fn a_provider_failing_three_times_in_a_row_is_skipped_until_its_pause_is_over() {
    let primary = Scripted::new("anthropic", Behaviour::Stall);
    let chain = chain(vec![primary.clone()]);
    for _ in 0..3 {
        let reply = chain.generate(&request("hello", true), mpsc::channel(256).0).await.unwrap();
        assert_eq!(reply.fallback_reason.as_deref(), Some("anthropic: no first token within 10000 ms"));
    }
    let started = Instant::now();
    let reply = chain.generate(&request("hello", true), mpsc::channel(256).0).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "an open circuit costs the turn no timeout");
    assert_eq!(reply.source, "builtin");
    assert_eq!(reply.fallback_reason.as_deref(), Some("anthropic: skipped, circuit open after repeated failures"));
    assert_eq!(primary.calls(), 3);

    primary.set(Behaviour::Answer(vec!["Back"], Duration::ZERO));
    tokio::time::advance(OPEN_FOR).await;
    let reply = chain.generate(&request("hello", true), mpsc::channel(256).0).await.unwrap();
    assert_eq!((reply.source.as_str(), reply.text.as_str()), ("anthropic", "Back"));
    assert_eq!(chain.models[0].1.status(), "healthy");
}
