//! Refused upgrades and failed authentications are logged once per client address per window
//! (never once per attempt), and the per-address throttle never turns away a valid token —
//! whether it comes as `?token=` or in a v2 `auth` frame (a bad one from a throttled address is
//! closed 4429, like the upgrade it bypassed).

use crate::common::logs::{LogBuffer, capturing_subscriber};
use crate::common::v2::{connect_v2, v2_url};
use crate::common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Log lines written on this thread while the guard lives (the test runtime is single-threaded,
/// so that is every task of the server under test).
struct Captured {
    buffer: LogBuffer,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Captured {
    fn start() -> Self {
        let (subscriber, buffer) = capturing_subscriber(tracing::Level::INFO);
        Self { buffer, _guard: tracing::subscriber::set_default(subscriber) }
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.buffer.lock().unwrap()).to_string();
        text.lines().filter(|line| line.contains(needle)).map(str::to_string).collect()
    }
}

/// The HTTP status of an upgrade the server refused.
async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Ok(_) => panic!("the upgrade was accepted"),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn a_client_looping_on_a_bad_token_is_logged_once_per_window_not_per_attempt() {
    let logs = Captured::start();
    let app = spawn_app_with(|s| s.auth_failures_per_minute = 3, Default::default()).await;
    let bad = app.ws_url(USER, Some("not-a-token"));
    for _ in 0..3 {
        let mut client = WsClient::connect(&bad).await;
        assert_eq!(client.recv_close().await.0.code, 4501);
    }
    for _ in 0..7 {
        assert_eq!(refused_status(&bad).await, 429);
    }
    let refusals = [logs.lines_with("authentication refused"), logs.lines_with("upgrade refused")].concat();
    assert_eq!(refusals.len(), 1, "one line for ten refusals of one client: {refusals:#?}");
    assert!(refusals[0].contains("127.0.0.1"), "the line names the client: {}", refusals[0]);
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "pam_ws_rejected_total{reason=\"auth_throttle\"}"), Some(7.0), "every refusal is still counted");
    assert_eq!(metric(&metrics, "pam_auth_failures_total{reason=\"invalid\"}"), Some(3.0), "{metrics}");
}

#[tokio::test]
async fn a_throttled_address_still_lets_a_valid_token_in_by_query_or_by_auth_frame() {
    let app = spawn_app_with(|s| s.auth_failures_per_minute = 2, Default::default()).await;
    let bad = app.ws_url(USER, Some("not-a-token"));
    for _ in 0..2 {
        let mut client = WsClient::connect(&bad).await;
        assert_eq!(client.recv_close().await.0.code, 4501);
    }
    assert_eq!(refused_status(&bad).await, 429, "the address is throttled");
    assert_eq!(refused_status(&app.ws_url(USER, None)).await, 429, "a legacy upgrade without a token too");

    let mut by_query = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
    assert_eq!(by_query.recv_json().await["type"], "connection");

    // A v2 client that authenticates by frame has no token at upgrade time: its frame decides.
    let (mut by_frame, _) = connect_v2(&v2_url(&app, None)).await;
    by_frame.send_json(json!({"type":"auth","token": token_for(OTHER_USER)})).await;
    let welcome = by_frame.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    let (mut bad_frame, _) = connect_v2(&v2_url(&app, None)).await;
    bad_frame.send_json(json!({"type":"auth","token":"not-a-token"})).await;
    let (closed, frames) = bad_frame.recv_close().await;
    assert_eq!(closed.code, 4429, "a bad auth frame from a throttled address is refused like its upgrade would be: {frames:?}");
    assert!(closed.reason.contains("failed authentications"), "{}", closed.reason);
}
