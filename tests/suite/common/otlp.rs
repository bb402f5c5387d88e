//! A fake OTLP/HTTP trace collector: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, decoded and kept as flat spans for the test to read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// Attribute values as text (numbers in decimal).
    pub attributes: HashMap<String, String>,
    pub events: Vec<String>,
    /// The resource's `service.name`.
    pub service: String,
}

impl CollectedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Inner {
    spans: Mutex<Vec<CollectedSpan>>,
    /// The headers of every export.
    headers: Mutex<Vec<HeaderMap>>,
}

/// A running collector; stops when dropped.
pub struct FakeCollector {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCollector {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new().route("/v1/traces", post(export)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCollector { addr, inner, server }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.inner.spans.lock().unwrap().clone()
    }

    pub fn export_headers(&self) -> Vec<HeaderMap> {
        self.inner.headers.lock().unwrap().clone()
    }
}

async fn export(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else { return StatusCode::BAD_REQUEST };
    inner.headers.lock().unwrap().push(headers);
    let mut collected = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| flat(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            collected.push(CollectedSpan {
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent_span_id: hex::encode(&span.parent_span_id),
                name: span.name,
                attributes: flat(&span.attributes),
                events: span.events.into_iter().map(|e| e.name).collect(),
                service: service.clone(),
            });
        }
    }
    inner.spans.lock().unwrap().extend(collected);
    StatusCode::OK
}

fn flat(attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The gateway binary on a spare port with a temp SQLite file, `env` on top, its log in a file.
pub struct TracedGateway {
    child: super::process::KillOnDrop,
    pub port: u16,
    _files: [super::TempFile; 2],
}

impl TracedGateway {
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let port = super::process::free_port();
        let db = super::process::temp_db();
        let log = super::TempFile(std::env::temp_dir().join(format!("pam-traces-log-{}", uuid::Uuid::new_v4())));
        let file = std::fs::File::create(&log.0).unwrap();
        let mut command = super::process::gateway(port, &db, env);
        command.env("PAM_OUTBOX_JOURNAL", "").env("RUST_LOG", "info").stdout(file.try_clone().unwrap()).stderr(file);
        let mut child = super::process::KillOnDrop(command.spawn().expect("the binary starts"));
        super::process::wait_live(&mut child.0, port, &log.0).await;
        TracedGateway { child, port, _files: [db, log] }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, user: &str) -> String {
        format!("ws://127.0.0.1:{}/api/v1/pam/ws/{user}?token={}", self.port, super::token_for(user))
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self._files[1].0).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }
}
