//! Health documents, Prometheus names, and dev auth (token endpoint + demo page).

use crate::common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn pam_health_has_the_documented_shape_on_every_alias() {
    let app = spawn_app().await;
    for path in ["/api/v1/pam/health", "/health", "/api/health"] {
        let response = reqwest::get(app.http(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "healthy", "{path}");
        assert_eq!(body["service"], "PAM");
        assert!(body["version"].is_string() && body["timestamp"].is_string());
        assert_eq!(body["llm"]["provider"], "builtin");
        assert!(body["llm"]["model"].is_string() && body["llm"]["status"].is_string());
        assert_eq!(body["database"]["status"], "healthy");
        assert!(body["database"]["latency_ms"].is_number());
        assert!(body["cache"]["status"].is_string() && body["cache"].get("hit_rate").is_some());
        assert_eq!(body["connections"], 0);
    }
}

#[tokio::test]
async fn live_and_ready_answer_200_and_unknown_paths_answer_json_404() {
    let app = spawn_app().await;
    assert_eq!(reqwest::get(app.http("/health/live")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(app.http("/health/ready")).await.unwrap().status(), 200);
    let missing = reqwest::get(app.http("/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "NOT_FOUND");
}

#[tokio::test]
async fn health_counts_connections_and_metrics_use_the_design_names() {
    let app = spawn_app().await;
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type":"chat","message":"hi"})).await;
    client.recv_non_ping().await;
    let body: Value = reqwest::get(app.http("/api/v1/pam/health")).await.unwrap().json().await.unwrap();
    assert_eq!(body["connections"], 1);
    let text = app.metrics().await;
    assert_eq!(metric(&text, "pam_ws_connections{state=\"ready\"}"), Some(1.0));
    assert_eq!(metric(&text, "pam_ws_connections_opened_total"), Some(1.0));
    assert_eq!(metric(&text, "pam_ws_frames_total{direction=\"in\",type=\"chat\"}"), Some(1.0));
    assert_eq!(metric(&text, "pam_ws_frames_total{direction=\"out\",type=\"chat_response\"}"), Some(1.0));
    assert_eq!(metric(&text, "pam_llm_requests_total{provider=\"builtin\",model=\"builtin\",outcome=\"ok\"}"), Some(1.0));
    assert_eq!(metric(&text, "pam_chat_seconds_count"), Some(1.0));
    assert!(text.contains("pam_chat_seconds_bucket{le=\"0.5\"}"), "histograms export buckets");
    assert_eq!(metric(&text, "pam_orchestrators_active"), Some(1.0));
}

#[tokio::test]
async fn without_dev_auth_there_is_no_token_endpoint_or_demo_page() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    assert_eq!(client.post(app.http("/dev/token")).send().await.unwrap().status(), 404);
    assert_eq!(client.get(app.http("/")).send().await.unwrap().status(), 404);
}

async fn dev_app() -> TestApp {
    spawn_app_with(
        |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
        },
        Default::default(),
    )
    .await
}

#[tokio::test]
async fn dev_token_opens_a_socket_for_the_demo_traveller_or_a_given_user() {
    let app = dev_app().await;
    let client = reqwest::Client::new();
    let demo: Value = client.post(app.http("/dev/token")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let demo_user = demo["user_id"].as_str().unwrap().to_string();
    assert!(demo["expires_at"].as_u64().unwrap() > unix_now());
    let mut socket = WsClient::connect(&app.ws_url(&demo_user, demo["token"].as_str())).await;
    assert_eq!(socket.recv_json().await["type"], "connection");
    socket.send_json(json!({"type":"chat","message":"what can you do?"})).await;
    assert_eq!(socket.recv_non_ping().await["type"], "chat_response");

    let mine: Value = client.post(app.http("/dev/token")).json(&json!({"user_id": USER})).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["user_id"], USER);
    let mut socket = WsClient::connect(&app.ws_url(USER, mine["token"].as_str())).await;
    assert_eq!(socket.recv_json().await["type"], "connection");
    // A dev token for one user does not open another user's socket.
    let mut other = WsClient::connect(&app.ws_url(OTHER_USER, mine["token"].as_str())).await;
    assert_eq!(other.recv_close().await.0.code, 4503);
}

#[tokio::test]
async fn dev_token_refuses_bad_input_with_json_errors() {
    let app = dev_app().await;
    let client = reqwest::Client::new();
    let bad_user = client.post(app.http("/dev/token")).json(&json!({"user_id":"bob"})).send().await.unwrap();
    assert_eq!(bad_user.status(), 422);
    assert_eq!(bad_user.json::<Value>().await.unwrap()["error"], "VALIDATION_ERROR");
    let not_json = client.post(app.http("/dev/token")).body("{nope").send().await.unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(not_json.json::<Value>().await.unwrap()["error"], "INVALID_JSON");
}

#[tokio::test]
async fn the_demo_page_is_served_with_a_content_security_policy() {
    let app = dev_app().await;
    let page = reqwest::get(app.http("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/demo.js">"#) && html.contains(r#"href="/demo.css""#), "{html}");
    assert!(!html.contains("<script>") && !html.contains("<style>"), "nothing inline");
    let script = reqwest::get(app.http("/demo.js")).await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    let script = script.text().await.unwrap();
    assert!(script.contains("/dev/token") && script.contains("/dev/config") && script.contains("from '/pam-client.js'"));
    let sdk = reqwest::get(app.http("/pam-client.js")).await.unwrap();
    assert_eq!(sdk.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(sdk.text().await.unwrap().contains("PamClient"), "the SDK bundle exports PamClient");
    let styles = reqwest::get(app.http("/demo.css")).await.unwrap();
    assert_eq!(styles.headers()["content-type"], "text/css; charset=utf-8");
}
