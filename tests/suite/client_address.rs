//! The client address the auth-failure throttle counts: the TCP peer, or — only when the peer is
//! in `PAM_TRUSTED_PROXIES` — the rightmost untrusted hop of `X-Forwarded-For` / `Forwarded`.
//! Over real sockets from 127.0.0.1, trusted or not.

use crate::common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http::HeaderValue};

/// Upgrades with `header` set; the socket, or the HTTP status that refused it.
async fn connect_via(url: &str, header: Option<(&'static str, &str)>) -> Result<WsClient, u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some((name, value)) = header {
        request.headers_mut().insert(name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(WsClient { ws }),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// Five bad tokens from `header`'s client, each refused with 4501 after the upgrade.
async fn fail_five_times(app: &TestApp, header: Option<(&'static str, &str)>) {
    for _ in 0..5 {
        let mut client = connect_via(&app.ws_url(USER, Some("not-a-token")), header).await.expect("not throttled yet");
        assert_eq!(client.recv_close().await.0.code, 4501);
    }
}

async fn app_trusting(proxies: &str) -> TestApp {
    let proxies = proxies.to_string();
    spawn_app_with(
        move |s| {
            s.auth_failures_per_minute = 5;
            s.trusted_proxies = Some(proxies);
        },
        Default::default(),
    )
    .await
}

#[tokio::test]
async fn behind_a_trusted_proxy_throttling_one_forwarded_client_does_not_throttle_another() {
    let app = app_trusting("10.0.0.0/8, 127.0.0.1/32").await;
    let bad = app.ws_url(USER, Some("not-a-token"));
    // The client wrote a fake first hop; the proxy appended the address it saw.
    fail_five_times(&app, Some(("x-forwarded-for", "6.6.6.6, 198.51.100.1"))).await;
    assert_eq!(connect_via(&bad, Some(("x-forwarded-for", "198.51.100.1"))).await.err(), Some(429));
    assert_eq!(connect_via(&bad, Some(("forwarded", "for=198.51.100.1;proto=https"))).await.err(), Some(429), "RFC 7239 names it too");
    let mut other = connect_via(&bad, Some(("x-forwarded-for", "6.6.6.6, 198.51.100.2"))).await.expect("another client is not throttled");
    assert_eq!(other.recv_close().await.0.code, 4501);
    let mut other = connect_via(&bad, Some(("forwarded", r#"for="[2001:db8::2]:4711""#))).await.expect("nor an IPv6 one");
    assert_eq!(other.recv_close().await.0.code, 4501);
}

#[tokio::test]
async fn from_an_untrusted_peer_forwarding_headers_are_ignored() {
    let app = app_trusting("10.0.0.0/8").await;
    // Each failure claims another address; all of them are 127.0.0.1's.
    for n in 1..=5 {
        let header = ("x-forwarded-for", format!("198.51.100.{n}"));
        let mut client = connect_via(&app.ws_url(USER, Some("not-a-token")), Some((header.0, &header.1))).await.expect("not throttled yet");
        assert_eq!(client.recv_close().await.0.code, 4501);
    }
    let fresh = Some(("x-forwarded-for", "203.0.113.99"));
    assert_eq!(connect_via(&app.ws_url(USER, Some("not-a-token")), fresh).await.err(), Some(429));
    assert_eq!(connect_via(&app.ws_url(USER, Some("not-a-token")), Some(("forwarded", "for=203.0.113.98"))).await.err(), Some(429));
}

#[tokio::test]
async fn a_valid_token_connects_from_a_throttled_forwarded_client() {
    let app = app_trusting("127.0.0.1").await;
    let header = Some(("x-forwarded-for", "198.51.100.1"));
    fail_five_times(&app, header).await;
    assert_eq!(connect_via(&app.ws_url(USER, Some("not-a-token")), header).await.err(), Some(429));
    let mut client = connect_via(&app.ws_url(USER, Some(&token_for(USER))), header).await.expect("a valid token passes the throttle");
    assert_eq!(client.recv_json().await["type"], "connection");
}
