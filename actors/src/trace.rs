//! The spans of a turn's trace, made with `tracing` only: the gateway decides whether they leave
//! the process (an OpenTelemetry layer listening to [`TARGET`]), so this crate needs no exporter
//! and costs nothing while traces are off. Every span of the trace is made here or in the
//! gateway's model chain under the same target; the attribute names are the ones the trace
//! tools (and the OpenTelemetry conventions) know. A leaf: imports nothing of the crate.

use tracing::Span;
use tracing::field::Empty;

/// The target of every span and event meant for traces; log output leaves it out.
pub const TARGET: &str = "pam_trace";

/// How a turn came in, as the turn span's `dialect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The legacy socket protocol.
    Legacy,
    /// Socket protocol v2.
    V2,
    /// `POST /api/v1/pam/chat`.
    Rest,
}

impl Dialect {
    /// The `dialect` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Legacy => "legacy",
            Dialect::V2 => "v2",
            Dialect::Rest => "rest",
        }
    }
}

/// The root span of one turn's trace, made when the server reads the turn. It is a root whatever
/// span is current (a socket's or an HTTP request's), so each turn is a trace of its own; a REST
/// caller's `traceparent` is set as its parent by the gateway before anything runs under it.
pub fn turn_span(dialect: Dialect, session: &str, client_msg_id: &str) -> Span {
    tracing::info_span!(target: TARGET, parent: None, "turn",
        otel.name = "chat turn", dialect = dialect.as_str(), session, client_msg_id, outcome = Empty)
}

/// One context load of `kind` under the current (turn) span; the loader records `cache`
/// (`hit`/`miss`) and `source` (`l1`, `redis`, `database`).
pub(crate) fn context_load_span(kind: &str) -> Span {
    tracing::info_span!(target: TARGET, "context_load", otel.name = format!("context {kind}"), kind, cache = Empty, source = Empty, outcome = Empty)
}

/// One write of the turn's conversation (`user_message` or `answer`); `outcome` says whether
/// it was stored, queued in the outbox or refused.
pub(crate) fn storage_span(write: &'static str) -> Span {
    tracing::info_span!(target: TARGET, "storage_write", otel.name = format!("store {write}"), write, outcome = Empty)
}
