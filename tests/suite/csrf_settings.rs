//! CSRF tokens and the PAM settings routes: `GET /api/v1/csrf-token`, `GET`/`POST
//! /api/v1/users/{user_id}/settings`. Every malformed `X-CSRF-Token` shape is 403 `CSRF_INVALID`
//! (one test per shape), settings are the bearer's own only, and a write evicts the cached
//! context so the next chat sees fresh data.

use crate::common::db::{postgres_url, require_postgres};
use crate::common::rest::*;
use crate::common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const CSRF_SECRET: &str = "csrf-test-secret";

async fn app() -> TestApp {
    spawn_app_with(|s| s.csrf_secret = Some(CSRF_SECRET.into()), Default::default()).await
}

/// A token computed here, independently of the gateway: `{ts}.{hex HMAC-SHA256(secret, "{user}:{ts}")}`.
fn token_at(user: &str, timestamp: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(CSRF_SECRET.as_bytes()).unwrap();
    mac.update(format!("{user}:{timestamp}").as_bytes());
    let tag: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("{timestamp}.{tag}")
}

async fn fetch_csrf(app: &TestApp, user: &str) -> String {
    let response = client().get(app.http("/api/v1/csrf-token")).bearer_auth(token_for(user)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["csrf_token"].as_str().unwrap().to_string()
}

async fn post_settings(app: &TestApp, user: &str, csrf: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = client()
        .post(app.http(&format!("/api/v1/users/{user}/settings")))
        .bearer_auth(token_for(user))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get_settings(app: &TestApp, user: &str, as_user: &str) -> (u16, Value) {
    let response = client().get(app.http(&format!("/api/v1/users/{user}/settings"))).bearer_auth(token_for(as_user)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Posts with `csrf` and expects the one CSRF refusal, with nothing stored.
async fn assert_csrf_refused(csrf: Option<&str>) {
    let app = app().await;
    let (status, body) = post_settings(&app, USER, csrf, &json!({"pam_preferences": {"tone": "brief"}})).await;
    assert_eq!(status, 403, "{body}");
    assert_error_body(&body, "CSRF_INVALID");
    let (_, stored) = get_settings(&app, USER, USER).await;
    assert_eq!(stored["pam_preferences"], json!({}), "nothing was written");
}

#[tokio::test]
async fn a_fresh_csrf_token_is_the_documented_hmac_and_lets_a_write_through() {
    let app = app().await;
    let before = unix_now();
    let csrf = fetch_csrf(&app, USER).await;
    let (timestamp, _) = csrf.split_once('.').unwrap();
    let timestamp: u64 = timestamp.parse().unwrap();
    assert!(timestamp >= before && timestamp <= unix_now());
    assert_eq!(csrf, token_at(USER, timestamp));
    let (status, body) = post_settings(&app, USER, Some(&csrf), &json!({"pam_preferences": {"tone": "brief", "voice": false}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pam_preferences"], json!({"tone": "brief", "voice": false}));
    let (status, stored) = get_settings(&app, USER, USER).await;
    assert_eq!(status, 200);
    assert_eq!(stored["pam_preferences"], json!({"tone": "brief", "voice": false}));
    assert!(stored["updated_at"].is_string());
}

#[tokio::test]
async fn csrf_missing_is_refused() {
    assert_csrf_refused(None).await;
}

#[tokio::test]
async fn csrf_empty_is_refused() {
    assert_csrf_refused(Some("")).await;
}

#[tokio::test]
async fn csrf_in_the_old_value_colon_timestamp_form_is_refused() {
    let good = token_at(USER, unix_now());
    let (timestamp, tag) = good.split_once('.').unwrap();
    assert_csrf_refused(Some(&format!("{tag}:{timestamp}"))).await;
}

#[tokio::test]
async fn csrf_without_a_separator_is_refused() {
    assert_csrf_refused(Some(&token_at(USER, unix_now()).replace('.', ""))).await;
}

#[tokio::test]
async fn csrf_with_a_non_hex_mac_is_refused() {
    assert_csrf_refused(Some(&format!("{}.{}", unix_now(), "zz".repeat(32)))).await;
}

#[tokio::test]
async fn csrf_10_kb_long_is_refused() {
    assert_csrf_refused(Some(&format!("{}.{}", unix_now(), "a".repeat(10 * 1024)))).await;
}

#[tokio::test]
async fn csrf_from_the_future_is_refused() {
    assert_csrf_refused(Some(&token_at(USER, unix_now() + 3600))).await;
}

#[tokio::test]
async fn csrf_older_than_an_hour_is_refused() {
    assert_csrf_refused(Some(&token_at(USER, unix_now() - 3601))).await;
}

#[tokio::test]
async fn csrf_with_a_tampered_mac_is_refused() {
    let good = token_at(USER, unix_now());
    let flipped = if good.ends_with('0') { '1' } else { '0' };
    assert_csrf_refused(Some(&format!("{}{flipped}", &good[..good.len() - 1]))).await;
}

#[tokio::test]
async fn csrf_with_a_moved_timestamp_is_refused() {
    let good = token_at(USER, unix_now());
    let (timestamp, tag) = good.split_once('.').unwrap();
    let earlier: u64 = timestamp.parse::<u64>().unwrap() - 1;
    assert_csrf_refused(Some(&format!("{earlier}.{tag}"))).await;
}

#[tokio::test]
async fn csrf_of_another_user_is_refused() {
    assert_csrf_refused(Some(&token_at(OTHER_USER, unix_now()))).await;
}

#[tokio::test]
async fn csrf_signed_with_another_secret_is_refused() {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"another-secret").unwrap();
    let now = unix_now();
    mac.update(format!("{USER}:{now}").as_bytes());
    let tag: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_csrf_refused(Some(&format!("{now}.{tag}"))).await;
}

#[tokio::test]
async fn settings_are_the_bearers_own_only() {
    let app = app().await;
    let (status, body) = get_settings(&app, OTHER_USER, USER).await;
    assert_eq!(status, 403, "{body}");
    assert_error_body(&body, "FORBIDDEN");
    let csrf = fetch_csrf(&app, USER).await;
    let response = client()
        .post(app.http(&format!("/api/v1/users/{OTHER_USER}/settings")))
        .bearer_auth(token_for(USER))
        .header("X-CSRF-Token", csrf)
        .json(&json!({"pam_preferences": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let unauthenticated = client().get(app.http("/api/v1/csrf-token")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let unauthenticated = client().get(app.http(&format!("/api/v1/users/{USER}/settings"))).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn a_settings_body_that_is_not_preferences_is_400() {
    let app = app().await;
    let csrf = fetch_csrf(&app, USER).await;
    for body in [json!([1]), json!({"pam_preferences": "loud"}), json!({"tone": "brief"}), json!({"pam_preferences": {"tone": "a\u{0}b"}})]
    {
        let (status, answer) = post_settings(&app, USER, Some(&csrf), &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_error_body(&answer, "VALIDATION_ERROR");
    }
}

async fn fuel_answer(app: &TestApp) -> String {
    let (status, answer) = post_chat(app, &token_for(USER), &json!({"message": "how much have I spent on fuel this month?"}), None).await;
    assert_eq!(status, 200, "{answer}");
    answer["response"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_settings_write_evicts_the_cached_profile_for_the_next_chat() {
    let app = app().await;
    let db = sqlite(&app).await;
    for statement in [
        "INSERT INTO profiles (id, full_name) VALUES (?1, 'Test Traveller')",
        "INSERT INTO user_settings (user_id, regional_preferences) VALUES (?1, '{\"currency\":\"USD\"}')",
        "INSERT INTO expenses (user_id, amount, category, date) VALUES (?1, 40.0, 'fuel', date('now'))",
    ] {
        sqlx::query(statement).bind(USER).execute(&db).await.unwrap();
    }
    assert!(fuel_answer(&app).await.contains("$40.00"));
    // Written behind the gateway's back: the cached profile (L1 lives 60 s) still says USD.
    sqlx::query("UPDATE user_settings SET regional_preferences = '{\"currency\":\"EUR\"}' WHERE user_id = ?1")
        .bind(USER)
        .execute(&db)
        .await
        .unwrap();
    assert!(fuel_answer(&app).await.contains("$40.00"), "the profile is cached");
    let csrf = fetch_csrf(&app, USER).await;
    let (status, _) = post_settings(&app, USER, Some(&csrf), &json!({"pam_preferences": {"tone": "brief"}})).await;
    assert_eq!(status, 200);
    let after = fuel_answer(&app).await;
    assert!(after.contains("€40.00"), "the write evicted the cached profile: {after}");
}

#[tokio::test]
async fn settings_round_trip_on_postgres() {
    let url = postgres_url();
    require_postgres(&url).await;
    let app = spawn_app_with(
        |s| {
            s.database_url = url.clone();
            s.csrf_secret = Some(CSRF_SECRET.into());
        },
        Default::default(),
    )
    .await;
    let user = uuid::Uuid::new_v4().to_string();
    let (status, empty) = get_settings(&app, &user, &user).await;
    assert_eq!((status, &empty["pam_preferences"]), (200, &json!({})), "{empty}");
    let csrf = fetch_csrf(&app, &user).await;
    for preferences in [json!({"tone": "brief"}), json!({"tone": "chatty", "units": "metric"})] {
        let (status, body) = post_settings(&app, &user, Some(&csrf), &json!({"pam_preferences": preferences})).await;
        assert_eq!(status, 200, "{body}");
        let (_, stored) = get_settings(&app, &user, &user).await;
        assert_eq!(stored["pam_preferences"], preferences);
    }
}
