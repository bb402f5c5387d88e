//! The trace settings: the standard `OTEL_*` variables (so the collectors' own instructions
//! apply as written) and whether message text may be put in spans. The OTEL values are kept as
//! text and read by `observability::traces`: a malformed header list or sampler turns traces off
//! with one log line; an endpoint that is not an http(s) URL is refused by the settings check,
//! like every URL setting.

use clap::Args;

use super::heading;
use super::secret::Secret;

/// `OTEL_SERVICE_NAME` when unset.
pub const DEFAULT_SERVICE_NAME: &str = "pam-gateway";

#[derive(Clone, Debug, Args)]
pub struct TraceSettings {
    /// OTLP/HTTP base URL of the trace collector (`/v1/traces` is appended), e.g.
    /// `http://localhost:4318`; traces are off unless this or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", help_heading = heading::TRACES)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Full OTLP/HTTP URL for traces (used as is; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", help_heading = heading::TRACES)]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// Headers sent with every export, `key=value` pairs separated by commas, values
    /// percent-encoded (e.g. `Authorization=Basic%20…` for Langfuse, `x-honeycomb-team=…`). A
    /// malformed list turns traces off with one log line.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true, help_heading = heading::TRACES)]
    pub otel_exporter_otlp_headers: Option<Secret>,
    /// The `service.name` of every span.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = DEFAULT_SERVICE_NAME, help_heading = heading::TRACES)]
    pub otel_service_name: String,
    /// Which turns are traced: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`
    /// (the default), `parentbased_always_off` or `parentbased_traceidratio`; an unknown value
    /// turns traces off with one log line.
    #[arg(long, env = "OTEL_TRACES_SAMPLER", help_heading = heading::TRACES)]
    pub otel_traces_sampler: Option<String>,
    /// The ratio (0 to 1) of the `*traceidratio` samplers (default 1).
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", help_heading = heading::TRACES)]
    pub otel_traces_sampler_arg: Option<String>,
    /// Put the user's message and the answer in the model spans (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`); off, spans carry no message text.
    #[arg(long = "trace-content", env = "PAM_TRACE_CONTENT", default_value_t = false, action = clap::ArgAction::Set, help_heading = heading::TRACES)]
    pub trace_content: bool,
}
