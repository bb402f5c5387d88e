//! Admin monitoring endpoints (`/api/v1/monitoring/errors`, `/websockets`, `/slow-queries`):
//! admin-only, fed by in-process records, and answering 200 JSON under load and while Redis or
//! Postgres is down.

use std::time::Duration;

use crate::common::cluster::Cluster;
use crate::common::rest::*;
use crate::common::*;
use serde_json::{Value, json};

const ENDPOINTS: [&str; 3] = ["/api/v1/monitoring/errors", "/api/v1/monitoring/websockets", "/api/v1/monitoring/slow-queries"];

async fn admin_app(adjust: impl FnOnce(&mut pam_gateway::Settings)) -> TestApp {
    spawn_app_with(
        |s| {
            s.admin_token = Some(ADMIN_TOKEN.into());
            adjust(s);
        },
        Default::default(),
    )
    .await
}

async fn report(app: &TestApp, path: &str) -> Value {
    let response = client().get(app.http(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Polls `path` until `done` holds for its report (or `WAIT` passes), and returns that report.
async fn report_until(app: &TestApp, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    poll_until(WAIT, wait::POLL, what, async || {
        let body = report(app, path).await;
        if done(&body) { Ok(body) } else { Err(format!("report {body}")) }
    })
    .await
}

#[tokio::test]
async fn monitoring_needs_the_admin_token_or_an_admin_jwt() {
    let app = admin_app(|_| {}).await;
    let mut admin_claims = user_claims(USER);
    admin_claims["app_metadata"] = json!({"role": "admin"});
    let admin_jwt = sign_hs256(&admin_claims, TEST_SECRET);
    for path in ENDPOINTS {
        for (who, auth) in [("nobody", None), ("a user", Some(token_for(USER))), ("a wrong admin token", Some("admin-token".into()))] {
            let mut request = client().get(app.http(path));
            if let Some(auth) = auth {
                request = request.bearer_auth(auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{who} on {path}");
            assert_error_body(&response.json().await.unwrap(), "AUTH_INVALID");
        }
        for auth in [ADMIN_TOKEN.to_string(), admin_jwt.clone()] {
            let response = client().get(app.http(path)).bearer_auth(auth).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
        }
    }
    assert_eq!(report(&app, ENDPOINTS[2]).await["threshold_ms"], 1000.0, "the threshold is one second");
}

#[tokio::test]
async fn the_websocket_report_counts_states_opens_closes_by_code_and_cap_hits() {
    let app = admin_app(|s| s.max_connections_per_user = 1).await;
    let _ready = app.connect_ready().await;
    let mut second = WsClient::connect(&app.ws_url(USER, Some(&token_for(USER)))).await;
    assert_eq!(second.recv_close().await.0.code, 4504);
    let mut forged = WsClient::connect(&app.ws_url(OTHER_USER, Some("not-a-token"))).await;
    assert_eq!(forged.recv_close().await.0.code, 4501);
    let report_now = report_until(&app, ENDPOINTS[1], "both closes are reported", |r| r["last_5_minutes"]["closed"] == 2).await;
    let window = &report_now["last_5_minutes"];
    assert_eq!(window["opened"], 3, "{report_now}");
    assert_eq!(window["closes_by_code"], json!({"4501": 1, "4504": 1}), "{report_now}");
    assert_eq!(window["user_cap_hits"], 1);
    assert_eq!(report_now["connections"]["by_state"]["ready"], 1, "{report_now}");
    assert_eq!(report_now["connections"]["by_state"]["authenticating"], 0, "{report_now}");
    assert_eq!(report_now["window_seconds"], 300);
}

#[tokio::test]
async fn slow_queries_are_reported_by_name_with_duration_and_time() {
    // Every query counts as slow, so the test need not wait a second per query.
    pam_gateway::observability::slow_queries().set_threshold(Duration::ZERO);
    let app = admin_app(|_| {}).await;
    let (status, _) = post_chat(&app, &token_for(USER), &json!({"message": "how much budget is left?"}), None).await;
    assert_eq!(status, 200);
    let slow = report(&app, ENDPOINTS[2]).await;
    let names: Vec<&str> = slow["queries"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    for name in ["history", "save_user_message", "save_answer", "stored_turn_ids", "profile", "financial_spend"] {
        assert!(names.contains(&name), "{name} missing from {slow}");
    }
    let first = &slow["queries"][0];
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0 && first["at"].is_string(), "{first}");
    assert_eq!(slow["threshold_ms"], 0.0);
    assert!(slow["total"].as_u64().unwrap() >= names.len() as u64);
}

#[tokio::test]
async fn errors_are_reported_by_kind_without_secrets_while_redis_is_down() {
    pam_gateway::observability::telemetry::init_tracing(Some(pam_gateway::settings::LogFormat::Json));
    let app = admin_app(|s| s.redis_url = Some("redis://127.0.0.1:1".into())).await;
    let jwt = token_for(USER);
    tracing::error!(token = %jwt, "login failed for Bearer {jwt}");
    for _ in 0..2 {
        let (status, _) = post_chat(&app, &jwt, &json!({"message": "how much have I spent on fuel?"}), None).await;
        assert_eq!(status, 200, "chats answer without Redis");
    }
    let redis_reported =
        |r: &Value| r["kinds"].as_array().unwrap().iter().any(|k| k["message"].as_str().unwrap().starts_with("Redis unavailable"));
    let errors = report_until(&app, ENDPOINTS[0], "the Redis outage is reported", redis_reported).await;
    let redis =
        errors["kinds"].as_array().unwrap().iter().find(|k| k["message"].as_str().unwrap().starts_with("Redis unavailable")).unwrap();
    assert_eq!(redis["level"], "warn");
    assert!(redis["count"].as_u64().unwrap() >= 1 && redis["last_seen"].is_string(), "{redis}");
    let login = errors["kinds"].as_array().unwrap().iter().find(|k| k["message"].as_str().unwrap().starts_with("login failed")).unwrap();
    assert_eq!(login["message"], "login failed for Bearer [redacted]");
    assert!(!errors["recent"].as_array().unwrap().is_empty());
    let text = errors.to_string();
    assert!(!text.contains(&jwt) && !text.contains(jwt.split('.').nth(2).unwrap()), "a token reached the error report");
    for path in ENDPOINTS {
        report(&app, path).await;
    }
}

#[tokio::test]
async fn monitoring_answers_under_load() {
    let app = std::sync::Arc::new(
        admin_app(|s| {
            s.rate_limit_per_minute = 10_000;
            s.max_connections_per_user = 100;
        })
        .await,
    );
    let chats = (0..10).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut client = app.connect_ready().await;
            for _ in 0..3 {
                client.send_json(json!({"type": "chat", "message": "how much budget is left?"})).await;
                assert_eq!(client.recv_non_ping().await["type"], "chat_response");
            }
        })
    });
    let chats: Vec<_> = chats.collect();
    let reads: Vec<_> = (0..90)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { report(&app, ENDPOINTS[n % 3]).await })
        })
        .collect();
    for read in reads {
        assert!(read.await.unwrap().is_object());
    }
    for chat in chats {
        chat.await.unwrap();
    }
}

#[tokio::test]
async fn monitoring_answers_while_postgres_is_down() {
    pam_gateway::observability::slow_queries().set_threshold(Duration::ZERO);
    let cluster = Cluster::create();
    let app = admin_app(|s| s.database_url = cluster.url()).await;
    let (status, _) = post_chat(&app, &token_for(USER), &json!({"message": "hello"}), None).await;
    assert_eq!(status, 200);
    cluster.stop();
    let mut client = app.connect_ready().await;
    client.send_json(json!({"type": "chat", "message": "how much budget is left?"})).await;
    assert_eq!(client.recv_non_ping().await["type"], "chat_response", "chats still answer");
    for path in ENDPOINTS {
        assert!(report(&app, path).await.is_object());
    }
    let slow = report(&app, ENDPOINTS[2]).await;
    assert!(slow["queries"].as_array().unwrap().iter().any(|q| q["name"] == "save_user_message"), "{slow}");
}
