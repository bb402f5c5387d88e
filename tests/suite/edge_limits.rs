//! Limits at the edge: Origin allow-list and global cap answer before the upgrade (403 / 503 with
//! Retry-After), the per-user cap closes with 4504 after auth, and an address that keeps failing
//! authentication is turned away with 429 before the upgrade — unless its token verifies.

use crate::common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http::HeaderValue};

/// The HTTP status of a refused upgrade, with its Retry-After.
async fn refused(url: &str, origin: Option<&str>) -> (u16, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => {
            (response.status().as_u16(), response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()))
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(other) => panic!("unexpected error {other}"),
    }
}

async fn connect_with_origin(url: &str, origin: &str) -> WsClient {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("origin", HeaderValue::from_str(origin).unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("the upgrade succeeds");
    WsClient { ws }
}

#[tokio::test]
async fn a_foreign_origin_gets_403_before_the_upgrade_and_allowed_ones_connect() {
    let app = spawn_app_with(
        |s| s.allowed_origins = Some("https://wheelsandwins.com, https://staging.wheelsandwins.com/".into()),
        Default::default(),
    )
    .await;
    let url = app.ws_url(USER, Some(&token_for(USER)));
    assert_eq!(refused(&url, Some("https://evil.example")).await.0, 403);
    let mut allowed = connect_with_origin(&url, "https://staging.wheelsandwins.com").await;
    assert_eq!(allowed.recv_json().await["type"], "connection");
    let mut no_origin = WsClient::connect(&url).await;
    assert_eq!(no_origin.recv_json().await["type"], "connection", "non-browser clients send no Origin");
    assert_eq!(metric(&app.metrics().await, "pam_ws_rejected_total{reason=\"origin\"}"), Some(1.0));
}

#[tokio::test]
async fn the_global_cap_answers_503_with_retry_after_until_a_socket_leaves() {
    let app = spawn_app_with(|s| s.max_connections = 2, Default::default()).await;
    let mut first = app.connect_ready().await;
    let _second = WsClient::connect(&app.ws_url(OTHER_USER, Some(&token_for(OTHER_USER)))).await;
    let (status, retry_after) = refused(&app.ws_url(USER, Some(&token_for(USER))), None).await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    first.ws.close(None).await.unwrap();
    wait_until("a slot frees up", || async {
        let url = app.ws_url(USER, Some(&token_for(USER)));
        tokio_tungstenite::connect_async(url).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_user_over_the_per_user_cap_is_closed_with_4504_and_others_are_not() {
    let app = spawn_app_with(|s| s.max_connections_per_user = 2, Default::default()).await;
    let mut first = app.connect_ready().await;
    let _second = app.connect_ready().await;
    let mut third = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
    let (closed, frames) = third.recv_close().await;
    assert_eq!(closed.code, 4504);
    assert!(closed.reason.contains("connections"), "{closed:?}");
    assert_eq!(frames.last().unwrap()["error_code"], "TOO_MANY_CONNECTIONS");
    let mut other = WsClient::connect(&app.ws_url(OTHER_USER, Some(&token_for(OTHER_USER)))).await;
    assert_eq!(other.recv_json().await["type"], "connection");
    first.ws.close(None).await.unwrap();
    wait_until("the user's slot is given back", || async {
        let mut again = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
        again.recv_json().await["type"] == "connection"
    })
    .await;
}

#[tokio::test]
async fn an_address_failing_auth_five_times_a_minute_gets_429_for_bad_tokens_but_a_valid_token_connects() {
    let app = spawn_app_with(|s| s.auth_failures_per_minute = 5, Default::default()).await;
    let bad = app.ws_url(USER, Some("not-a-token"));
    for _ in 0..5 {
        let mut client = WsClient::connect(&bad).await;
        assert_eq!(client.recv_close().await.0.code, 4501);
    }
    let (status, retry_after) = refused(&bad, None).await;
    assert_eq!(status, 429, "a sixth bad token waits out the throttle");
    assert!(retry_after.is_some_and(|s| (1..=61).contains(&s.parse::<u64>().unwrap())));
    let forged = sign_hs256(&user_claims(USER), "another-secret-that-is-long-enough-for-hs256-9876543210");
    assert_eq!(refused(&app.ws_url(USER, Some(&forged)), None).await.0, 429, "a well-formed but forged token too");
    // The next user at this address has a real token: other clients' failures are not theirs.
    let mut valid = WsClient::connect(&app.ws_url(OTHER_USER, Some(&token_for(OTHER_USER)))).await;
    assert_eq!(valid.recv_json().await["type"], "connection");
    assert_eq!(metric(&app.metrics().await, "pam_ws_rejected_total{reason=\"auth_throttle\"}"), Some(2.0));
}
