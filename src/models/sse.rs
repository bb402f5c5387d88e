//! The part both streaming providers share: each describes its API as an `SseApi` (request and
//! event meaning) and gets `StreamingModel` from here — send the request, map a refused status,
//! parse the body as server-sent events (eventsource-stream, behind `line_ends`, which makes its
//! line endings unambiguous) and collect the text the provider's event handler finds, pushing
//! each piece into the deltas channel as it arrives.
//!
//! With timer tools (`Endpoint::tools`) the tools are offered and a streamed tool call is run
//! (`tools::run`), its result sent back in a new request, for at most `MAX_TOOL_ROUNDS` rounds;
//! the request after them still lists the tools (the conversation holds tool blocks) but forbids
//! calling them. While tools run, an empty delta tells the chain the provider is alive (the
//! first-token deadline is about a stall, not a tool round); it is never forwarded.

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::StreamExt;
use pam_actors::{BoxFuture, LlmRequest};
use reqwest::header::HeaderValue;
use tokio::sync::mpsc;

use super::tools::{self, MAX_CALLS_PER_ROUND, MAX_TOOL_ROUNDS, Read, ToolPiece, ToolRound, add_pieces, finished};
use super::{ProviderFailure, Streamed, StreamingModel, Usage, line_ends};
use crate::push::timers::tools::TimerTools;

/// Whether and how a request offers the tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// No timer tools on this gateway: a plain chat request.
    NoTools,
    /// The tools may be called.
    Tools,
    /// The tools are listed (earlier rounds used them) but may not be called: answer now.
    Answer,
}

impl Offer {
    /// The prompt for `request`, its system text telling the model about the tools when they are
    /// offered (callable or not).
    pub(super) fn prompt(self, request: &LlmRequest) -> super::prompt::Prompt {
        let mut prompt = super::prompt::build(request);
        if self != Offer::NoTools {
            prompt.system.push_str(tools::SYSTEM_NOTE);
        }
        prompt
    }
}

/// One server-sent-events chat API: how to build its request and what its events mean. Every
/// such API is a `StreamingModel` through the impl below.
pub(super) trait SseApi: Send + Sync + 'static {
    /// Provider name for metrics, logs and stored metadata.
    const NAME: &'static str;
    fn endpoint(&self) -> &Endpoint;
    /// The HTTP request for `model` (URL, auth header, body), after the tool `rounds` so far.
    fn request(
        &self,
        request: &LlmRequest,
        model: &str,
        rounds: &[ToolRound],
        offer: Offer,
    ) -> Result<reqwest::RequestBuilder, ProviderFailure>;
    /// What one event means.
    fn step(event: &Event) -> Result<Step, ProviderFailure>;
    /// What one event reports about the response (model, token counts), if anything.
    fn usage(_event: &Event) -> Option<Usage> {
        None
    }
}

/// Where and as whom a provider is called. `Debug` names the URL and model, never the key.
pub(super) struct Endpoint {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) api_key: String,
    pub(super) models: ModelPair,
    /// Timer tools offered to the model; `None` = plain chat.
    pub(super) tools: Option<TimerTools>,
}

impl Endpoint {
    /// `base_url` must be http(s) (`setting` names it in the error); `path` turns the trimmed
    /// base into the endpoint URL; `models` is (accurate, fast).
    pub(super) fn new(
        http: reqwest::Client,
        setting: &str,
        base_url: &str,
        path: impl FnOnce(&str) -> String,
        api_key: &str,
        models: (String, String),
    ) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/');
        anyhow::ensure!(base.starts_with("http://") || base.starts_with("https://"), "{setting} must be an http(s) URL");
        Ok(Endpoint {
            http,
            url: path(base),
            api_key: api_key.to_string(),
            models: ModelPair { accurate: models.0, fast: models.1 },
            tools: None,
        })
    }

    /// A streaming POST to the endpoint; the provider adds its auth header and body.
    pub(super) fn post(&self) -> reqwest::RequestBuilder {
        self.http.post(&self.url).header("accept", "text/event-stream")
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).field("model", &self.models.accurate).finish_non_exhaustive()
    }
}

/// A provider's two models: accurate, and fast for simple turns.
#[derive(Debug, Clone)]
pub(super) struct ModelPair {
    pub(super) accurate: String,
    pub(super) fast: String,
}

impl<T: SseApi> StreamingModel for T {
    fn name(&self) -> &str {
        T::NAME
    }

    fn model(&self, fast: bool) -> &str {
        let models = &self.endpoint().models;
        if fast { &models.fast } else { &models.accurate }
    }

    fn stream<'a>(
        &'a self,
        request: &'a LlmRequest,
        model: &'a str,
        deltas: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Streamed, ProviderFailure>> {
        Box::pin(async move {
            let Some(timers) = self.endpoint().tools.as_ref() else {
                let read = collect_text(self.request(request, model, &[], Offer::NoTools)?, &deltas, T::step, T::usage).await?;
                return Ok(Streamed { text: read.text, acted: false, usage: read.usage });
            };
            let mut rounds: Vec<ToolRound> = Vec::new();
            let (mut answer, mut nth_timer, mut usage) = (String::new(), 0, Usage::default());
            loop {
                let offer = if rounds.len() < MAX_TOOL_ROUNDS { Offer::Tools } else { Offer::Answer };
                let read = collect_text(self.request(request, model, &rounds, offer)?, &deltas, T::step, T::usage).await?;
                answer.push_str(&read.text);
                usage.add(read.usage);
                if read.calls.is_empty() || offer == Offer::Answer {
                    if answer.trim().is_empty() && !rounds.is_empty() {
                        answer = "Sorry, I couldn't finish that. Please try again.".into();
                        let _ = deltas.send(answer.clone()).await;
                    }
                    return Ok(Streamed { text: answer, acted: !rounds.is_empty(), usage });
                }
                let _ = deltas.send(String::new()).await;
                let mut results = Vec::with_capacity(read.calls.len());
                for (i, call) in read.calls.iter().enumerate() {
                    results.push(if i < MAX_CALLS_PER_ROUND {
                        tools::run(timers, request, call, &mut nth_timer, chrono::Utc::now()).await
                    } else {
                        tools::ToolResult { content: r#"{"error":"too many tool calls at once; nothing was done"}"#.into(), is_error: true }
                    });
                    tracing::info!(provider = T::NAME, tool = %call.name.chars().take(64).collect::<String>(), error = results[i].is_error, "tool call");
                }
                if !read.text.is_empty() && !read.text.ends_with(char::is_whitespace) {
                    answer.push_str("\n\n");
                    let _ = deltas.send("\n\n".into()).await;
                }
                rounds.push(ToolRound { text: read.text, calls: read.calls, results });
            }
        })
    }
}

/// What one event means to the provider.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A piece of the answer.
    Text(String),
    /// The last piece of the answer: the event that carries it also ends it (an OpenAI chunk
    /// with content and a `finish_reason`).
    LastText(String),
    /// Pieces of tool calls; `last`: the event also ends the response.
    Tool { pieces: Vec<ToolPiece>, last: bool },
    /// The provider's end event: the answer is complete.
    End,
    /// Nothing for us (pings, bookkeeping events).
    Skip,
}

/// A header value that is never printed by reqwest/hyper debug output (API keys).
pub(super) fn secret_header(value: &str) -> Result<HeaderValue, ProviderFailure> {
    let mut header =
        HeaderValue::from_str(value).map_err(|_| ProviderFailure::Transport("the API key is not a valid header value".into()))?;
    header.set_sensitive(true);
    Ok(header)
}

/// Sends `request` and streams its events through `on_event` until the end event, gathering
/// what `usage_of` finds on the way.
pub(super) async fn collect_text(
    request: reqwest::RequestBuilder,
    deltas: &mpsc::Sender<String>,
    mut on_event: impl FnMut(&Event) -> Result<Step, ProviderFailure> + Send,
    usage_of: fn(&Event) -> Option<Usage>,
) -> Result<Read, ProviderFailure> {
    let response = request.send().await.map_err(|e| ProviderFailure::Transport(without_url(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderFailure::Status(status.as_u16()));
    }
    let mut usage = Usage::default();
    let on_event = |event: &Event| {
        if let Some(reported) = usage_of(event) {
            usage.update(reported);
        }
        on_event(event)
    };
    let mut read = read_text(Box::pin(response.bytes_stream()), deltas, on_event).await?;
    read.usage = usage;
    Ok(read)
}

/// Reads a response body as server-sent events until `on_event` says the answer ended; EOF
/// before that is `CutOff`. Text is forwarded as it comes; tool calls are gathered (bounded).
pub(super) async fn read_text<B: AsRef<[u8]>, E>(
    body: impl futures_util::Stream<Item = Result<B, E>> + Send + Unpin,
    deltas: &mpsc::Sender<String>,
    mut on_event: impl FnMut(&Event) -> Result<Step, ProviderFailure> + Send,
) -> Result<Read, ProviderFailure> {
    let mut events = std::pin::pin!(line_ends::normalized(body).eventsource());
    let mut text = String::new();
    let mut calls = std::collections::BTreeMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(_)) => return Err(ProviderFailure::CutOff),
            Err(EventStreamError::Utf8(_)) => return Err(ProviderFailure::Malformed("the stream is not UTF-8".into())),
            Err(EventStreamError::Parser(_)) => return Err(ProviderFailure::Malformed("not a server-sent event stream".into())),
        };
        let (piece, last) = match on_event(&event)? {
            Step::Text(piece) => (piece, false),
            Step::LastText(piece) => (piece, true),
            Step::Tool { pieces, last } => {
                add_pieces(&mut calls, pieces);
                if last {
                    return Ok(finished(text, calls));
                }
                continue;
            }
            Step::End => return Ok(finished(text, calls)),
            Step::Skip => continue,
        };
        if !piece.is_empty() {
            text.push_str(&piece);
            if !deltas.is_closed() {
                let _ = deltas.send(piece).await;
            }
        }
        if last {
            return Ok(finished(text, calls));
        }
    }
    Err(ProviderFailure::CutOff)
}

/// Parses an event's JSON data, or says the stream is malformed.
pub(super) fn json_data(event: &Event) -> Result<serde_json::Value, ProviderFailure> {
    serde_json::from_str(&event.data).map_err(|e| {
        let kind = if event.event.is_empty() { "message" } else { event.event.as_str() };
        ProviderFailure::Malformed(format!("`{kind}` event data is not JSON ({e})"))
    })
}

/// A transport error's text without the URL (base URLs may embed credentials).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde_json::json;

    use super::*;
    use crate::models::{AnthropicProvider, OpenAiProvider};

    /// One event's lines (without line endings).
    type Lines = Vec<String>;
    /// A provider's `SseApi::step`.
    type StepFn = fn(&Event) -> Result<Step, ProviderFailure>;

    fn openai_stream(tokens: &[String], ending: u8) -> Vec<Lines> {
        let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
            vec![format!("data: {}", json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))]
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), json!(null))];
        let (body, last) = tokens.split_at(tokens.len() - 1);
        events.extend(body.iter().map(|t| chunk(json!({"content": t}), json!(null))));
        match ending {
            // Content and `finish_reason` in one chunk, then EOF without `[DONE]`.
            0 => events.push(chunk(json!({"content": last[0]}), json!("stop"))),
            1 => {
                events.push(chunk(json!({"content": last[0]}), json!(null)));
                events.push(chunk(json!({}), json!("stop")));
                events.push(vec!["data: [DONE]".into()]);
            }
            _ => {
                events.push(chunk(json!({"content": last[0]}), json!(null)));
                events.push(vec![": keep-alive".into(), "data: [DONE]".into()]);
            }
        }
        events
    }

    fn anthropic_stream(tokens: &[String]) -> Vec<Lines> {
        let event = |name: &str, data: serde_json::Value| vec![format!("event: {name}"), format!("data: {data}")];
        let mut events = vec![event("message_start", json!({"type": "message_start", "message": {}}))];
        for token in tokens {
            events.push(vec!["event: ping".into(), "data:".into()]);
            events
                .push(event("content_block_delta", json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": token}})));
        }
        events.push(event("message_stop", json!({"type": "message_stop"})));
        events
    }

    /// The wire bytes: each line ends with the next of `endings` (LF, CR, CRLF), each event with an
    /// empty line — except, when `no_final_blank`, the last one (EOF follows its last line). An LF
    /// right after a CR would merge with it into one CRLF, so there a CRLF is written instead.
    fn render(events: &[Lines], endings: &[u8], no_final_blank: bool) -> Vec<u8> {
        let mut endings = endings.iter().cycle().map(|e| ["\n", "\r", "\r\n"][usize::from(*e)]);
        let mut wire = String::new();
        let mut end_line = |wire: &mut String| {
            let ending = endings.next().unwrap();
            wire.push_str(if ending == "\n" && wire.ends_with('\r') { "\r\n" } else { ending });
        };
        for (i, lines) in events.iter().enumerate() {
            for line in lines {
                wire.push_str(line);
                end_line(&mut wire);
            }
            if !(no_final_blank && i == events.len() - 1) {
                end_line(&mut wire);
            }
        }
        wire.into_bytes()
    }

    fn read_chunked(wire: &[u8], cuts: &[Index], on_event: StepFn) -> Result<String, ProviderFailure> {
        read_calls(wire, cuts, on_event).map(|read| read.text)
    }

    fn read_calls(wire: &[u8], cuts: &[Index], on_event: StepFn) -> Result<Read, ProviderFailure> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.extend([0, wire.len()]);
        cuts.sort_unstable();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = cuts.windows(2).map(|w| Ok(wire[w[0]..w[1]].to_vec())).collect();
        let (deltas, _) = mpsc::channel(1);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(read_text(futures_util::stream::iter(chunks), &deltas, on_event))
    }

    proptest! {
        #[test]
        fn any_chunking_and_any_line_endings_of_a_valid_stream_yield_the_same_text(
            tokens in prop::collection::vec(any::<String>(), 1..6),
            anthropic in any::<bool>(),
            openai_ending in 0u8..3,
            endings in prop::collection::vec(0u8..3, 1..4),
            no_final_blank in any::<bool>(),
            cuts in prop::collection::vec(any::<Index>(), 0..16),
        ) {
            let expected: String = tokens.concat();
            let (events, on_event): (_, StepFn) = if anthropic {
                (anthropic_stream(&tokens), <AnthropicProvider as SseApi>::step)
            } else {
                (openai_stream(&tokens, openai_ending), <OpenAiProvider as SseApi>::step)
            };
            let wire = render(&events, &endings, no_final_blank);
            prop_assert_eq!(read_chunked(&wire, &cuts, on_event), Ok(expected));
        }
    }

    #[test]
    fn a_stream_that_stops_mid_line_is_cut_off_not_answered() {
        let wire = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"choi";
        assert_eq!(read_chunked(wire, &[], <OpenAiProvider as SseApi>::step), Err(ProviderFailure::CutOff));
    }
}
