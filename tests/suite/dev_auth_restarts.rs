//! Dev auth across restarts: the signing key lives beside the SQLite file (0600), so a token
//! minted before a restart still opens a socket after it; token lifetimes on request; the
//! limits the demo page reads from `/dev/config`.

use crate::common::v2::connect_welcomed;
use crate::common::*;
use serde_json::{Value, json};

/// A dev-auth gateway on the SQLite file `db` (shared by the runs of one test).
async fn dev_app_on(db: &TempFile) -> TestApp {
    let path = db.0.display().to_string();
    spawn_app_with(
        |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
            s.database_url = format!("sqlite://{path}");
            s.outbox_journal = format!("{path}{OUTBOX_JOURNAL_SUFFIX}");
        },
        Default::default(),
    )
    .await
}

async fn mint(app: &TestApp, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(app.http("/dev/token")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn a_dev_token_from_before_a_restart_still_opens_a_socket_after_it() {
    let db = TempFile(std::env::temp_dir().join(format!("pam-test-dev-{}.db", uuid::Uuid::new_v4().simple())));
    let first = dev_app_on(&db).await;
    let token: Value = mint(&first, json!({})).await.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let (_socket, _) = connect_welcomed(&first, &token).await;
    first.shutdown().await;

    let key_file = format!("{}{DEV_KEY_SUFFIX}", db.0.display());
    let key = std::fs::read_to_string(&key_file).expect("the key is kept beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the gateway's user may read the key");
    }

    let second = dev_app_on(&db).await;
    let (mut socket, welcome) = connect_welcomed(&second, &token).await;
    assert_eq!(welcome["protocol"], "pam.v2");
    socket.send_json(json!({"type":"chat","id":"after-restart","message":"hello again"})).await;
    let end = crate::common::v2::frames_until(&mut socket, "chat_end").await;
    assert!(end.last().unwrap()["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key, "the restart reused the key, not replaced it");
}

#[tokio::test]
async fn a_gateway_with_a_different_database_file_does_not_accept_the_token() {
    let (one, two) = (test_db(), test_db());
    let first = dev_app_on(&one).await;
    let token: Value = mint(&first, json!({})).await.json().await.unwrap();
    let other = dev_app_on(&two).await;
    let url = crate::common::v2::v2_url(&other, token["token"].as_str());
    let (mut socket, _) = crate::common::v2::connect_v2(&url).await;
    assert_eq!(socket.recv_close().await.0.code, 4501, "each database has its own key");
}

fn test_db() -> TempFile {
    TempFile(std::env::temp_dir().join(format!("pam-test-dev-{}.db", uuid::Uuid::new_v4().simple())))
}

#[tokio::test]
async fn a_dev_token_lives_as_long_as_asked_within_bounds() {
    let db = test_db();
    let app = dev_app_on(&db).await;
    let short: Value = mint(&app, json!({"ttl_s": 90})).await.json().await.unwrap();
    let left = short["expires_at"].as_u64().unwrap() - unix_now();
    assert!((85..=90).contains(&left), "{left} s left");
    let default: Value = mint(&app, json!({})).await.json().await.unwrap();
    assert!(default["expires_at"].as_u64().unwrap() - unix_now() > 3500);
    for ttl in [0, 9, 86_401] {
        let refused = mint(&app, json!({"ttl_s": ttl})).await;
        assert_eq!(refused.status(), 422, "ttl_s {ttl}");
        assert_eq!(refused.json::<Value>().await.unwrap()["error"], "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn dev_config_tells_the_page_the_servers_message_limit() {
    let db = test_db();
    let path = db.0.display().to_string();
    let app = spawn_app_with(
        |s| {
            s.supabase_jwt_secret = None;
            s.dev_auth = None;
            s.max_message_chars = 321;
            s.database_url = format!("sqlite://{path}");
        },
        Default::default(),
    )
    .await;
    let config: Value = reqwest::get(app.http("/dev/config")).await.unwrap().json().await.unwrap();
    assert_eq!(config["max_message_chars"], 321);
    let without_dev = spawn_app().await;
    assert_eq!(reqwest::get(without_dev.http("/dev/config")).await.unwrap().status(), 404);
}
