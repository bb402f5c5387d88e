//! Auth helpers: the fixture keys (ES256, RS256) and the JWKS that publishes them, tokens signed
//! with them, a local JWKS endpoint that counts its hits (and can be down), and the two outcomes
//! of a connect the auth tests check (refused with a close code, or welcomed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;

use super::{Closed, WsClient};

pub const ES_PRIVATE_PEM: &[u8] = include_bytes!("../fixtures/es256-private.pem");
pub const RS_PRIVATE_PEM: &[u8] = include_bytes!("../fixtures/rs256-private.pem");
pub const RS_PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/rs256-public.pem");
/// The public halves of the fixture keys, as kids `es-1` and `rs-1`.
pub const JWKS_JSON: &str = include_str!("../fixtures/jwks.json");

/// A token over `claims` signed with the fixture key of `alg`, naming `kid`.
pub fn sign_with(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(ES_PRIVATE_PEM).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RS_PRIVATE_PEM).unwrap(),
        other => panic!("no fixture key for {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

/// Connects and expects the server to refuse: exactly one `error` frame with `error_code`, then a
/// close with `code` and a non-empty reason of at most 123 bytes.
pub async fn expect_refused(url: &str, code: u16, error_code: &str) -> Closed {
    let mut client = WsClient::connect(url).await;
    let (closed, frames) = client.recv_close().await;
    assert_eq!(closed.code, code, "close code for {url}: {closed:?}, frames {frames:?}");
    assert!(!closed.reason.is_empty(), "close {code} must carry a reason");
    assert!(closed.reason.len() <= 123, "reason too long: {}", closed.reason);
    assert_eq!(frames.len(), 1, "a refused socket gets only the error frame before the close: {frames:?}");
    let error = &frames[0];
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error_code"], error_code, "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    closed
}

/// Connects and expects the legacy welcome (`type: connection`).
pub async fn expect_welcome(url: &str) -> WsClient {
    let mut client = WsClient::connect(url).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection", "{welcome}");
    assert_eq!(welcome["status"], "connected", "{welcome}");
    client
}

/// A local JWKS endpoint serving `fixtures/jwks.json` while `up` (503 otherwise), counting every
/// request; stopped on drop.
pub struct JwksServer {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    pub up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(up: bool) -> Self {
        let (hits, up) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(up)));
        let document: Value = serde_json::from_str(JWKS_JSON).expect("the fixture is JSON");
        let (counter, serving) = (hits.clone(), up.clone());
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = if serving.load(Ordering::SeqCst) {
                    axum::Json(document.clone()).into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "key server down").into_response()
                };
                std::future::ready(response)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer { url: format!("http://{addr}/jwks.json"), hits, up, task }
    }
}
