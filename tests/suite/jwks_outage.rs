//! A key server outage is not the client's fault: while the JWKS cannot be fetched, tokens that
//! need it close with 1013 `AUTH_UNAVAILABLE` (REST: 503), none of it counts against the per-IP
//! auth-failure throttle, the key server is asked at most once per backoff step, and once it
//! answers again the same tokens connect without any client doing anything special.

use std::sync::atomic::Ordering;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::common::auth::{JwksServer, expect_refused, expect_welcome, sign_with};
use crate::common::rest::post_chat;
use crate::common::*;

#[tokio::test]
async fn a_jwks_outage_closes_1013_auth_unavailable_without_throttling_and_tokens_work_once_it_recovers() {
    let jwks = JwksServer::start(false).await;
    let url = jwks.url.clone();
    let app = spawn_app_with(
        move |s| {
            s.jwks_url = Some(url);
            s.auth_failures_per_minute = 5;
        },
        Default::default(),
    )
    .await;
    let hits = jwks.hits.clone();
    wait_until("the startup fetch was tried", || {
        let hits = hits.clone();
        async move { hits.load(Ordering::SeqCst) >= 1 }
    })
    .await;
    let es256 = sign_with(Algorithm::ES256, "es-1", &user_claims(USER));
    // Eight refusals from one address, above the throttle's five: each still gets its upgrade.
    for _ in 0..8 {
        expect_refused(&app.ws_url(USER, Some(&es256)), 1013, "AUTH_UNAVAILABLE").await;
    }
    let mut v2 = WsClient::connect(&format!("ws://{}/api/v2/pam/ws?token={es256}", app.addr)).await;
    let (closed, frames) = v2.recv_close().await;
    assert_eq!(
        (closed.code, frames[0]["error_code"].as_str(), frames[0]["retryable"].as_bool()),
        (1013, Some("AUTH_UNAVAILABLE"), Some(true))
    );
    let (status, body) = post_chat(&app, &es256, &json!({"message": "hello"}), None).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("AUTH_UNAVAILABLE")), "{body}");
    assert!(jwks.hits.load(Ordering::SeqCst) <= 4, "ten tokens in the outage caused {} fetches", jwks.hits.load(Ordering::SeqCst));
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "pam_auth_failures_total{reason=\"invalid\"}"), None, "nothing was blamed on the token");
    assert_eq!(metric(&metrics, "pam_ws_rejected_total{reason=\"auth_throttle\"}"), None);
    // HS256 tokens never needed the key server.
    expect_welcome(&app.ws_url(USER, Some(&token_for(USER)))).await;

    jwks.up.store(true, Ordering::SeqCst);
    wait_until("the retried fetch loads the keys and the same token connects", || {
        let url = app.ws_url(USER, Some(&es256));
        async move { WsClient::connect(&url).await.recv_json().await["type"] == "connection" }
    })
    .await;
}
