//! OpenTelemetry traces over OTLP/HTTP protobuf, configured by the standard `OTEL_*` settings
//! (`settings::traces`). Off unless an endpoint is set. The spans themselves are plain `tracing`
//! spans under `pam_actors::trace::TARGET` (the turn, its context loads and storage writes, and
//! the model attempts of `models::chain`); this module only adds the layer that exports them.
//!
//! A setting that cannot work never stops the gateway: the users' first pain was observability
//! settings that crashed the start, so [`Traces::from_settings`] returns the problem and
//! `telemetry::init_tracing` logs it in one line and runs without traces.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::settings::traces::TraceSettings;

/// How long one export may take: a collector that hangs costs a batch, never the gateway.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why traces are off although an endpoint is set.
#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    #[error("OTEL_EXPORTER_OTLP_HEADERS is malformed ({0}); expected key=value pairs separated by commas")]
    Headers(String),
    #[error("{setting} is not an http(s) URL: {value}")]
    Endpoint { setting: &'static str, value: String },
    #[error("OTEL_TRACES_SAMPLER {0:?} is not a known sampler")]
    Sampler(String),
    #[error("OTEL_TRACES_SAMPLER_ARG {0:?} is not a ratio between 0 and 1")]
    SamplerArg(String),
    #[error("the trace exporter could not be built: {0}")]
    Exporter(String),
}

/// The running trace pipeline: its spans are exported in batches until [`Traces::shutdown`].
pub struct Traces {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Traces {
    /// The pipeline the settings ask for: `Ok(None)` when no endpoint is set (traces off).
    /// Must be called inside the Tokio runtime (exports run on it).
    pub fn from_settings(settings: &TraceSettings) -> Result<Option<Traces>, TraceSetupError> {
        let Some(endpoint) = endpoint(settings)? else { return Ok(None) };
        let headers = match settings.otel_exporter_otlp_headers.as_ref().and_then(|h| h.non_empty()) {
            Some(text) => parse_headers(text)?,
            None => HashMap::new(),
        };
        let sampler = sampler(settings.otel_traces_sampler.as_deref(), settings.otel_traces_sampler_arg.as_deref())?;
        rustls::crypto::ring::default_provider().install_default().ok();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TraceSetupError::Exporter(e.to_string()))?;
        let client = ExportClient { http, runtime: tokio::runtime::Handle::current() };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers)
            .with_http_client(client)
            .build()
            .map_err(|e| TraceSetupError::Exporter(e.to_string()))?;
        let resource = Resource::builder().with_service_name(settings.otel_service_name.clone()).build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_sampler(sampler).with_resource(resource).build();
        Ok(Some(Traces { provider, endpoint }))
    }

    /// Where the spans go (for the startup log line; never the headers).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The layer that exports the trace spans (only those: request and library spans stay logs).
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("pam-gateway");
        let only_traces = Targets::new().with_target(pam_actors::trace::TARGET, tracing::Level::INFO);
        tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_traces)
    }

    /// Exports what is still buffered; called once the gateway has stopped serving.
    pub async fn shutdown(self) {
        // The provider's shutdown blocks until its export thread is done, and that thread's
        // exports run on this runtime: it must not block a runtime thread.
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `/v1/traces` under
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the OTLP spec's rule); `None` when neither is set.
pub fn endpoint(settings: &TraceSettings) -> Result<Option<String>, TraceSetupError> {
    let set = |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let (setting, url) = match (set(&settings.otel_exporter_otlp_traces_endpoint), set(&settings.otel_exporter_otlp_endpoint)) {
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
        (None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/v1/traces", base.trim_end_matches('/'))),
        (None, None) => return Ok(None),
    };
    let valid = (url.starts_with("http://") || url.starts_with("https://")) && url.parse::<http::Uri>().is_ok();
    if !valid {
        return Err(TraceSetupError::Endpoint { setting, value: crate::settings::secret::redact_url(&url) });
    }
    Ok(Some(url))
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key2=value2`, values percent-encoded (W3C Baggage
/// format). The values are returned still encoded: the exporter decodes them. Never quotes a
/// value in its error (they are credentials).
pub fn parse_headers(text: &str) -> Result<HashMap<String, String>, TraceSetupError> {
    let mut headers = HashMap::new();
    for (index, pair) in text.split(',').enumerate().filter(|(_, pair)| !pair.trim().is_empty()) {
        let nth = index + 1;
        let Some((key, value)) = pair.split_once('=') else {
            return Err(TraceSetupError::Headers(format!("entry {nth} has no '='")));
        };
        let key = key.trim();
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
            return Err(TraceSetupError::Headers(format!("entry {nth} is not a valid header name")));
        }
        let value = value.trim();
        let decoded = percent_decode(value).ok_or_else(|| TraceSetupError::Headers(format!("the value of {key} has a bad %-escape")))?;
        if http::HeaderValue::from_str(&decoded).is_err() {
            return Err(TraceSetupError::Headers(format!("the value of {key} is not a valid header value")));
        }
        headers.insert(key.to_string(), value.to_string());
    }
    Ok(headers)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `OTEL_TRACES_SAMPLER` (and its argument) as the SDK's sampler; the default samples every
/// turn, or follows the caller's decision when it sent a `traceparent`.
pub fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, TraceSetupError> {
    let ratio = || match arg.map(str::trim).filter(|a| !a.is_empty()) {
        None => Ok(1.0),
        Some(text) => text.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or_else(|| TraceSetupError::SamplerArg(text.into())),
    };
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("parentbased_always_on");
    Ok(match name {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        other => return Err(TraceSetupError::Sampler(other.to_string())),
    })
}

/// The exporter's HTTP client: the gateway's reqwest. The batch processor exports from a
/// thread of its own, outside the runtime reqwest needs, so each request runs on the runtime.
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let call = self.runtime.spawn(async move {
            let response = http.execute(reqwest::Request::try_from(request)?).await?;
            let (status, headers) = (response.status(), response.headers().clone());
            let mut answer = http::Response::new(response.bytes().await?);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok::<_, opentelemetry_http::HttpError>(answer)
        });
        call.await?
    }
}

/// The W3C `traceparent` (and `tracestate`) of a request, as the parent for its turn's span.
pub fn remote_parent(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    headers.get("traceparent")?;
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    context.span().span_context().is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base: Option<&str>, traces: Option<&str>) -> TraceSettings {
        let mut settings = crate::settings::Settings::defaults().traces;
        settings.otel_exporter_otlp_endpoint = base.map(str::to_string);
        settings.otel_exporter_otlp_traces_endpoint = traces.map(str::to_string);
        settings
    }

    #[test]
    fn the_traces_url_follows_the_otlp_rules() {
        assert_eq!(endpoint(&settings(None, None)).unwrap(), None);
        assert_eq!(endpoint(&settings(Some("  "), None)).unwrap(), None, "a blank value is unset");
        assert_eq!(endpoint(&settings(Some("http://c:4318/"), None)).unwrap().as_deref(), Some("http://c:4318/v1/traces"));
        let both = settings(Some("http://c:4318"), Some("https://t/api/public/otel/v1/traces"));
        assert_eq!(endpoint(&both).unwrap().as_deref(), Some("https://t/api/public/otel/v1/traces"));
        assert!(matches!(endpoint(&settings(Some("c:4318"), None)), Err(TraceSetupError::Endpoint { .. })));
    }

    #[test]
    fn headers_parse_and_a_malformed_list_is_refused_without_quoting_values() {
        let parsed = parse_headers("Authorization=Basic%20cGs6c2s=, x-team = abc ,").unwrap();
        assert_eq!(parsed["Authorization"], "Basic%20cGs6c2s=");
        assert_eq!(parsed["x-team"], "abc");
        for bad in ["Authorization", "bad key=1", "a=%zz", "a=%0A"] {
            let error = parse_headers(bad).unwrap_err().to_string();
            assert!(!error.contains("%zz") && !error.contains("Basic"), "{error}");
        }
    }

    #[test]
    fn samplers_are_the_standard_names() {
        assert!(matches!(sampler(None, None).unwrap(), Sampler::ParentBased(_)));
        assert!(matches!(sampler(Some("traceidratio"), Some("0.25")).unwrap(), Sampler::TraceIdRatioBased(r) if r == 0.25));
        assert!(matches!(sampler(Some("traceidratio"), Some("2")), Err(TraceSetupError::SamplerArg(_))));
        assert!(matches!(sampler(Some("sometimes"), None), Err(TraceSetupError::Sampler(_))));
    }

    #[test]
    fn a_valid_traceparent_is_a_remote_parent_and_garbage_is_none() {
        let mut headers = http::HeaderMap::new();
        assert!(remote_parent(&headers).is_none());
        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let parent = remote_parent(&headers).expect("a valid traceparent");
        use opentelemetry::trace::TraceContextExt;
        assert_eq!(parent.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        headers.insert("traceparent", "00-nope-01".parse().unwrap());
        assert!(remote_parent(&headers).is_none());
    }
}
