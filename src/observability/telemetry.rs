//! Logging and metrics setup: tracing (pretty or JSON) and the one Prometheus recorder.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use super::traces::{TraceSetupError, Traces};
use crate::settings::LogFormat;
use crate::settings::traces::TraceSettings;

/// Latency buckets (seconds) for every `*_seconds` histogram: chat answers span 50 ms to 30 s.
const SECONDS_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0];

/// Installs the global tracing subscriber (level from `RUST_LOG`, default `info`). WARN and
/// ERROR events also reach the monitoring error log, whatever `RUST_LOG` says.
pub fn init_tracing(format: Option<LogFormat>) {
    install(format, None);
}

/// [`init_tracing`] plus the trace exporter `settings` ask for, returned so its last spans can
/// be flushed at exit. A trace setting that cannot work is logged in one line and the gateway
/// runs without traces (`None`); it never stops the start.
pub fn init_tracing_and_traces(format: Option<LogFormat>, settings: &TraceSettings) -> Option<Traces> {
    let (traces, problem) = match Traces::from_settings(settings) {
        Ok(traces) => (traces, None),
        Err(problem) => (None, Some(problem)),
    };
    install(format, traces.as_ref());
    // An endpoint that is not a URL refuses the whole start (the settings check says so in one
    // line); the other trace settings only turn traces off.
    if let Some(problem) = problem.filter(|p| !matches!(p, TraceSetupError::Endpoint { .. })) {
        tracing::warn!(%problem, "traces are off: {problem}");
    }
    if let Some(traces) = &traces {
        tracing::info!(endpoint = %crate::settings::secret::redact_url(traces.endpoint()), "exporting traces over OTLP/HTTP");
    }
    traces
}

fn install(format: Option<LogFormat>, traces: Option<&Traces>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The trace spans are for the exporter only: log lines stay as they were.
    let filter = filter.add_directive(format!("{}=off", pam_actors::trace::TARGET).parse().expect("a valid directive"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json });
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match format {
        LogFormat::Pretty => output.boxed(),
        LogFormat::Json => output.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(crate::observability::ErrorLayer.with_filter(LevelFilter::WARN))
        .with(traces.map(Traces::layer))
        .try_init();
}

/// The process-wide Prometheus recorder (metrics macros are global, so there is one).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe_metrics();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}

fn describe_metrics() {
    use pam_actors::metrics_names::*;
    metrics::describe_gauge!(WS_CONNECTIONS, "Open WebSocket connections by state");
    metrics::describe_counter!(WS_OPENED_TOTAL, "WebSocket connections accepted");
    metrics::describe_counter!(WS_CLOSED_TOTAL, "WebSocket connections closed, by close code");
    metrics::describe_counter!(WS_FRAMES_TOTAL, "WebSocket frames by direction and type");
    metrics::describe_counter!(AUTH_FAILURES_TOTAL, "Refused authentications by reason");
    metrics::describe_histogram!(CHAT_SECONDS, metrics::Unit::Seconds, "Chat turn time, request to terminal frame");
    metrics::describe_histogram!(CHAT_FIRST_TOKEN_SECONDS, metrics::Unit::Seconds, "Time to the first model token");
    metrics::describe_counter!(LLM_REQUESTS_TOTAL, "Model requests by provider, model and outcome");
    metrics::describe_counter!(
        LLM_TOKENS_TOTAL,
        "Model tokens the providers reported, by provider, configured model and direction (input, output)"
    );
    metrics::describe_gauge!(crate::models::chain::LLM_CIRCUIT_OPEN, "1 while a model provider is skipped after repeated failures");
    metrics::describe_counter!(RATE_LIMITED_TOTAL, "Chat frames refused by the rate limit");
    metrics::describe_gauge!(ORCHESTRATORS_ACTIVE, "Running orchestrator actors");
    {
        metrics::describe_gauge!(TURNS_PENDING, "Conversation writes waiting in memory for the database");
        metrics::describe_counter!(
            TURNS_DROPPED_TOTAL,
            "Conversation writes not stored: refused by the database, or the outbox was full without a journal"
        );
        metrics::describe_counter!(
            OUTBOX_JOURNALED_TOTAL,
            "Conversation writes appended (fsync) to the outbox journal while the database could not take them"
        );
        metrics::describe_counter!(OUTBOX_SPILLED_TOTAL, "Outbox writes kept in the journal only because the in-memory queue was full");
        metrics::describe_counter!(OUTBOX_REPLAYED_TOTAL, "Journaled writes stored when the journal was replayed");
        metrics::describe_gauge!(STORAGE_DEGRADED, "1 while conversation writes have been failing for 5 s or more");
        metrics::describe_counter!(TURNS_ACCEPTED_TOTAL, "Chat turns the server has read (socket and REST)");
        metrics::describe_counter!(TURNS_ABANDONED_TOTAL, "Turns still running when the shutdown grace ended, recorded as unanswered");
        metrics::describe_gauge!(
            TURNS_ABANDONED_RECENT,
            "Turns abandoned across the gateway in the last 15 minutes, by cause (shutdown: a drain's grace ended; crash: a dead node's turn ended by another), read from the database at each scrape"
        );
        for cause in pam_actors::AbandonCause::ALL {
            metrics::gauge!(TURNS_ABANDONED_RECENT, "cause" => cause.as_str()).set(0.0);
        }
        metrics::describe_gauge!(TURNS_RUNNING, "Chat turns running on this node");
        for gauge in [TURNS_PENDING, STORAGE_DEGRADED, TURNS_RUNNING] {
            metrics::gauge!(gauge).set(0.0);
        }
        for counter in [
            TURNS_DROPPED_TOTAL,
            OUTBOX_JOURNALED_TOTAL,
            OUTBOX_SPILLED_TOTAL,
            OUTBOX_REPLAYED_TOTAL,
            TURNS_ACCEPTED_TOTAL,
            TURNS_ABANDONED_TOTAL,
        ] {
            metrics::counter!(counter).absolute(0);
        }
    }
    metrics::describe_counter!(crate::context::redis_cache::CACHE_ERRORS_TOTAL, "Redis cache operations that failed or timed out");
    {
        use crate::cluster::catch_up::CATCH_UP_SOCKETS_TOTAL;
        use crate::cluster::{NODE_UP, SHARED_ERRORS_TOTAL, SHARED_STATE_DEGRADED};
        use pam_actors::metrics_names::{PUSH_DELIVERED_TOTAL, PUSH_PUBLISHED_TOTAL, PUSH_RECEIVED_TOTAL};
        metrics::describe_gauge!(NODE_UP, "1 on a running node, labelled with its PAM_NODE_ID");
        metrics::describe_gauge!(
            SHARED_STATE_DEGRADED,
            "1 while Redis is unavailable and the per-user cap, rate limit and idempotency run per node"
        );
        metrics::describe_counter!(SHARED_ERRORS_TOTAL, "Shared cluster-state operations on Redis that failed or timed out, by op");
        metrics::describe_counter!(
            crate::push::timers::scheduler::PUSH_TOTAL,
            "Server pushes (timer_expired, proactive_alert) by kind and outcome (online, stored, failed)"
        );
        metrics::describe_gauge!(crate::push::timers::scheduler::TIMERS_PENDING, "Timers of all users not yet fired nor dismissed");
        metrics::describe_histogram!(
            pam_actors::metrics_names::PUSH_DELIVERY_SECONDS,
            metrics::Unit::Seconds,
            "Server push delivery, from when it was due (alert stored, timer fire_at) until a socket sent it, by kind"
        );
        metrics::describe_counter!(PUSH_PUBLISHED_TOTAL, "Pushes published on this node's push bus");
        metrics::describe_counter!(PUSH_RECEIVED_TOTAL, "Pushes that arrived from other nodes over the bus");
        metrics::describe_counter!(PUSH_DELIVERED_TOTAL, "Pushes handed to a socket on this node");
        metrics::describe_counter!(
            pam_actors::metrics_names::PUSH_PROVEN_TOTAL,
            "Pushes a client proved it received (pong to a later ping, v2 ack or resume position), by proof; each is then marked delivered"
        );
        metrics::describe_counter!(
            pam_actors::metrics_names::PUSH_UNPROVEN_TOTAL,
            "Pushes sent on a socket that ended (closed) or overflowed its list (overflow) before proving receipt; they stay undelivered"
        );
        metrics::describe_counter!(
            CATCH_UP_SOCKETS_TOTAL,
            "Sockets whose stored pushes were read again because the push bus may have lost some (subscription back, presence re-synced, another node's unpublished pushes)"
        );
        metrics::gauge!(SHARED_STATE_DEGRADED).set(0.0);
        for counter in [PUSH_PUBLISHED_TOTAL, PUSH_RECEIVED_TOTAL, PUSH_DELIVERED_TOTAL, CATCH_UP_SOCKETS_TOTAL] {
            metrics::counter!(counter).absolute(0);
        }
        for proof in ["pong", "ack", "resume"] {
            metrics::counter!(pam_actors::metrics_names::PUSH_PROVEN_TOTAL, "proof" => proof).absolute(0);
        }
        for reason in ["closed", "overflow"] {
            metrics::counter!(pam_actors::metrics_names::PUSH_UNPROVEN_TOTAL, "reason" => reason).absolute(0);
        }
    }
    metrics::describe_histogram!(
        crate::observability::DB_QUERY_SECONDS,
        metrics::Unit::Seconds,
        "Database query time by query (context, conversations, settings)"
    );
    metrics::describe_counter!(pam_actors::metrics_names::CACHE_REQUESTS_TOTAL, "Context cache lookups by kind and result (hit, miss)");
    metrics::describe_histogram!(
        pam_actors::metrics_names::CONTEXT_LOAD_SECONDS,
        metrics::Unit::Seconds,
        "Context load time by kind and source"
    );
    // Register the gauges and counters at zero so dashboards see them before the first event.
    metrics::gauge!(ORCHESTRATORS_ACTIVE).set(0.0);
    metrics::counter!(WS_OPENED_TOTAL).absolute(0);
    metrics::counter!(RATE_LIMITED_TOTAL).absolute(0);
}
