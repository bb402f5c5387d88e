//! Token verification over real sockets: HS256 and JWKS (ES256/RS256) tokens, every refusal
//! (error frame first, then the close code of protocol.md with a reason), expiry while
//! connected, the auth-failure metrics and that tokens never reach the logs.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::auth::{ES_PRIVATE_PEM, JwksServer, RS_PUBLIC_PEM, expect_refused, expect_welcome, sign_with};
use crate::common::process::{KillOnDrop, free_port, wait_exit, wait_live};
use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use pam_gateway::Overrides;
use serde_json::json;

const ISSUER: &str = "https://test.supabase.co/auth/v1";

// ---------------------------------------------------------------------------------------------
// helpers

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A gateway with both the HS256 secret and the JWKS (a key rotation in progress).
async fn spawn_app_with_jwks() -> (TestApp, JwksServer) {
    let jwks = JwksServer::start(true).await;
    let url = jwks.url.clone();
    let app = spawn_app_with(move |settings| settings.jwks_url = Some(url), Overrides::default()).await;
    (app, jwks)
}

fn counter(text: &str, reason: &str) -> f64 {
    metric(text, &format!("pam_auth_failures_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// refusals: 4501

#[tokio::test]
async fn missing_token_closes_with_auth_invalid_and_4501() {
    let app = spawn_app().await;
    expect_refused(&app.ws_url(USER, None), 4501, "AUTH_INVALID").await;
    expect_refused(&app.ws_url(USER, Some("")), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn garbage_and_malformed_tokens_close_with_4501() {
    let app = spawn_app().await;
    let valid = token_for(USER);
    let (header_and_claims, _) = valid.rsplit_once('.').unwrap();
    let two_parts = header_and_claims.to_string();
    let bad_base64 = format!("{header_and_claims}.!!!");
    let bad_header = format!("{}.{}", base64url(b"{not json"), base64url(b"{}"));
    for token in ["garbage", "a.b.c", "...", two_parts.as_str(), bad_base64.as_str(), &format!("{bad_header}.sig")] {
        expect_refused(&app.ws_url(USER, Some(token)), 4501, "AUTH_INVALID").await;
    }
}

#[tokio::test]
async fn alg_none_token_closes_with_4501() {
    let app = spawn_app().await;
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = base64url(user_claims(USER).to_string().as_bytes());
    let unsigned = format!("{header}.{claims}.");
    expect_refused(&app.ws_url(USER, Some(&unsigned)), 4501, "AUTH_INVALID").await;
    // The same with the signature of a real token pasted on.
    let real_sig = token_for(USER).rsplit_once('.').unwrap().1.to_string();
    expect_refused(&app.ws_url(USER, Some(&format!("{header}.{claims}.{real_sig}"))), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_closes_with_4501() {
    let app = spawn_app().await;
    let hs512 = encode(&Header::new(Algorithm::HS512), &user_claims(USER), &EncodingKey::from_secret(TEST_SECRET.as_bytes())).unwrap();
    expect_refused(&app.ws_url(USER, Some(&hs512)), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn token_signed_with_another_secret_closes_with_4501() {
    let app = spawn_app().await;
    let forged = sign_hs256(&user_claims(USER), "another-secret-that-is-long-enough-for-hs256-9876543210");
    expect_refused(&app.ws_url(USER, Some(&forged)), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn wrong_or_missing_audience_closes_with_4501() {
    let app = spawn_app().await;
    let mut claims = user_claims(USER);
    claims["aud"] = json!("somebody-else");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4501, "AUTH_INVALID").await;
    claims.as_object_mut().unwrap().remove("aud");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn anon_key_and_tokens_without_sub_close_with_4501() {
    let app = spawn_app().await;
    let anon = json!({"iss": "supabase", "role": "anon", "iat": unix_now(), "exp": unix_now() + 3600});
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&anon, TEST_SECRET))), 4501, "AUTH_INVALID").await;
    // An anon key that even carries the right audience still has no user.
    let mut anon_with_aud = anon.clone();
    anon_with_aud["aud"] = json!("authenticated");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&anon_with_aud, TEST_SECRET))), 4501, "AUTH_INVALID").await;
    let mut no_sub = user_claims(USER);
    no_sub.as_object_mut().unwrap().remove("sub");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&no_sub, TEST_SECRET))), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn sub_that_is_not_a_uuid_closes_with_4501() {
    let app = spawn_app().await;
    let mut claims = user_claims(USER);
    claims["sub"] = json!("not-a-uuid");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn path_user_id_that_is_not_a_uuid_closes_with_4501() {
    let app = spawn_app().await;
    expect_refused(&app.ws_url("not-a-uuid", Some(&token_for(USER))), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn configured_issuer_is_required_and_the_right_one_works() {
    let app = spawn_app_with(|settings| settings.jwt_issuer = Some(ISSUER.into()), Overrides::default()).await;
    let mut claims = user_claims(USER);
    assert_eq!(claims["iss"], ISSUER);
    expect_welcome(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET)))).await;
    claims["iss"] = json!("https://evil.supabase.co/auth/v1");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4501, "AUTH_INVALID").await;
    claims.as_object_mut().unwrap().remove("iss");
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4501, "AUTH_INVALID").await;
}

// ---------------------------------------------------------------------------------------------
// who may open which socket

#[tokio::test]
async fn sub_other_than_the_path_user_closes_with_forbidden_and_4503() {
    let app = spawn_app().await;
    expect_refused(&app.ws_url(OTHER_USER, Some(&token_for(USER))), 4503, "FORBIDDEN").await;
}

#[tokio::test]
async fn service_role_key_may_open_a_socket_for_any_user() {
    let app = spawn_app().await;
    let service = json!({"iss": "supabase", "role": "service_role", "iat": unix_now(), "exp": unix_now() + 3600});
    let token = sign_hs256(&service, TEST_SECRET);
    expect_welcome(&app.ws_url(USER, Some(&token))).await;
    expect_welcome(&app.ws_url(OTHER_USER, Some(&token))).await;
}

#[tokio::test]
async fn admin_app_metadata_role_may_open_another_users_socket() {
    let app = spawn_app().await;
    let mut claims = user_claims(USER);
    claims["app_metadata"] = json!({"provider": "email", "role": "admin"});
    expect_welcome(&app.ws_url(OTHER_USER, Some(&sign_hs256(&claims, TEST_SECRET)))).await;
    // The same role in user_metadata (user-editable) grants nothing.
    let mut claims = user_claims(USER);
    claims["user_metadata"] = json!({"role": "admin"});
    expect_refused(&app.ws_url(OTHER_USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4503, "FORBIDDEN").await;
}

// ---------------------------------------------------------------------------------------------
// expiry

#[tokio::test]
async fn expired_token_closes_with_token_expired_and_4401() {
    let app = spawn_app().await;
    let mut claims = user_claims(USER);
    claims["exp"] = json!(unix_now() - 120);
    claims["iat"] = json!(unix_now() - 3720);
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET))), 4401, "TOKEN_EXPIRED").await;
}

#[tokio::test]
async fn token_expired_within_the_leeway_is_accepted() {
    let app = spawn_app().await;
    let mut claims = user_claims(USER);
    claims["exp"] = json!(unix_now() - 30);
    expect_welcome(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET)))).await;
}

#[tokio::test]
async fn token_that_expires_while_connected_closes_with_4401_at_exp() {
    let app = spawn_app_with(
        |settings| {
            settings.ping_interval_ms = 200;
            settings.pong_timeout_ms = 10_000;
        },
        Overrides::default(),
    )
    .await;
    let mut claims = user_claims(USER);
    claims["exp"] = json!(unix_now() + 2);
    let started = Instant::now();
    let mut client = expect_welcome(&app.ws_url(USER, Some(&sign_hs256(&claims, TEST_SECRET)))).await;
    let (closed, frames) = client.recv_close().await;
    let elapsed = started.elapsed();
    assert_eq!(closed.code, 4401, "{closed:?} {frames:?}");
    assert!(!closed.reason.is_empty());
    let last = frames.last().expect("an error frame precedes the close");
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["error_code"], "TOKEN_EXPIRED", "{last}");
    assert!(frames[..frames.len() - 1].iter().all(|f| f["type"] == "ping"), "only keepalive pings before the error: {frames:?}");
    assert!(elapsed <= Duration::from_secs(5), "closed after {elapsed:?}, expected within ~2 s of exp");
    assert!(elapsed >= Duration::from_millis(500), "closed after {elapsed:?}, before exp");
}

// ---------------------------------------------------------------------------------------------
// JWKS (ES256 / RS256 by kid)

#[tokio::test]
async fn es256_token_from_the_jwks_opens_a_socket() {
    let (app, _jwks) = spawn_app_with_jwks().await;
    let token = sign_with(Algorithm::ES256, "es-1", &user_claims(USER));
    expect_welcome(&app.ws_url(USER, Some(&token))).await;
}

#[tokio::test]
async fn rs256_token_from_the_jwks_opens_a_socket() {
    let (app, _jwks) = spawn_app_with_jwks().await;
    let token = sign_with(Algorithm::RS256, "rs-1", &user_claims(USER));
    expect_welcome(&app.ws_url(USER, Some(&token))).await;
    // HS256 keeps working beside the JWKS during a rotation.
    expect_welcome(&app.ws_url(USER, Some(&token_for(USER)))).await;
}

#[tokio::test]
async fn jwks_token_with_an_unknown_kid_or_mismatched_alg_closes_with_4501() {
    let (app, _jwks) = spawn_app_with_jwks().await;
    let unknown = sign_with(Algorithm::ES256, "es-unknown", &user_claims(USER));
    expect_refused(&app.ws_url(USER, Some(&unknown)), 4501, "AUTH_INVALID").await;
    // A real RS256 signature presented under the EC key's kid.
    let swapped = sign_with(Algorithm::RS256, "es-1", &user_claims(USER));
    expect_refused(&app.ws_url(USER, Some(&swapped)), 4501, "AUTH_INVALID").await;
    // No kid at all.
    let no_kid = encode(&Header::new(Algorithm::ES256), &user_claims(USER), &EncodingKey::from_ec_pem(ES_PRIVATE_PEM).unwrap()).unwrap();
    expect_refused(&app.ws_url(USER, Some(&no_kid)), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn hs256_token_keyed_with_the_rsa_public_key_closes_with_4501() {
    let (app, _jwks) = spawn_app_with_jwks().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rs-1".into());
    let confused = encode(&header, &user_claims(USER), &EncodingKey::from_secret(RS_PUBLIC_PEM)).unwrap();
    expect_refused(&app.ws_url(USER, Some(&confused)), 4501, "AUTH_INVALID").await;
}

#[tokio::test]
async fn concurrent_unknown_kids_cause_at_most_one_extra_jwks_fetch() {
    let (app, jwks) = spawn_app_with_jwks().await;
    let hits = jwks.hits.clone();
    wait_until("the startup JWKS fetch happened", || {
        let hits = hits.clone();
        async move { hits.load(Ordering::SeqCst) >= 1 }
    })
    .await;
    // The startup fetch does not count against the refetch interval, so the burst below may
    // cause exactly one more fetch, shared by all 20 sockets.
    let unknown = sign_with(Algorithm::ES256, "es-rotated", &user_claims(USER));
    let url = app.ws_url(USER, Some(&unknown));
    let mut sockets = Vec::new();
    for _ in 0..20 {
        let url = url.clone();
        sockets.push(tokio::spawn(async move { expect_refused(&url, 4501, "AUTH_INVALID").await }));
    }
    for socket in sockets {
        socket.await.expect("every unknown-kid socket is refused with 4501");
    }
    let total = jwks.hits.load(Ordering::SeqCst);
    assert!(total <= 2, "20 unknown kids caused {} JWKS fetches beyond the startup fetch", total - 1);
    // The cached set still serves known kids without another fetch.
    let known = sign_with(Algorithm::ES256, "es-1", &user_claims(USER));
    expect_welcome(&app.ws_url(USER, Some(&known))).await;
    assert_eq!(jwks.hits.load(Ordering::SeqCst), total, "a known kid needs no refetch");
}

// ---------------------------------------------------------------------------------------------
// metrics

#[tokio::test]
async fn auth_failures_are_counted_by_reason_in_metrics() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    let forged = sign_hs256(&user_claims(USER), "another-secret-that-is-long-enough-for-hs256-9876543210");
    expect_refused(&app.ws_url(USER, Some(&forged)), 4501, "AUTH_INVALID").await;
    expect_refused(&app.ws_url(OTHER_USER, Some(&token_for(USER))), 4503, "FORBIDDEN").await;
    let mut expired = user_claims(USER);
    expired["exp"] = json!(unix_now() - 120);
    expect_refused(&app.ws_url(USER, Some(&sign_hs256(&expired, TEST_SECRET))), 4401, "TOKEN_EXPIRED").await;
    let after = app.metrics().await;
    for reason in ["invalid", "forbidden", "expired"] {
        let (was, now) = (counter(&before, reason), counter(&after, reason));
        assert!(now >= was + 1.0, "pam_auth_failures_total{{reason=\"{reason}\"}} went from {was} to {now}");
    }
}

// ---------------------------------------------------------------------------------------------
// logs of the real binary

#[tokio::test]
async fn tokens_never_appear_in_the_logs() {
    let port = free_port();
    let dir = std::env::temp_dir();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let db = TempFile(dir.join(format!("pam-auth-log-{tag}.db")));
    let log_path = dir.join(format!("pam-auth-log-{tag}.log"));
    let _log_cleanup = TempFile(log_path.clone());
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pam-gateway"))
        .env_clear()
        .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", format!("sqlite://{}", db.0.display()))
        .env("SUPABASE_JWT_SECRET", TEST_SECRET)
        .env("RUST_LOG", "debug")
        .env("PAM_LOG_FORMAT", "json")
        .env("PAM_SHUTDOWN_GRACE_MS", "2000")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the gateway binary starts");
    let mut child = KillOnDrop(child);

    wait_live(&mut child.0, port, &log_path).await;

    let valid = token_for(USER);
    let mut client = expect_welcome(&format!("ws://127.0.0.1:{port}/api/v1/pam/ws/{USER}?token={valid}")).await;
    client.send_json(json!({"type": "chat", "message": "hi"})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    let _ = client.ws.close(None).await;

    let forged = sign_hs256(&user_claims(USER), "another-secret-that-is-long-enough-for-hs256-9876543210");
    expect_refused(&format!("ws://127.0.0.1:{port}/api/v1/pam/ws/{USER}?token={forged}"), 4501, "AUTH_INVALID").await;

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").arg(&pid).status().expect("kill runs");
    assert!(killed.success());
    assert!(wait_exit(&mut child.0, Duration::from_secs(15)).await.is_some(), "the gateway did not stop within 15 s of SIGTERM");

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(!logs.trim().is_empty(), "the gateway logged nothing");
    assert!(logs.contains("authentication refused"), "the refusal was logged (debug logs captured): {logs}");
    for (name, token) in [("valid", &valid), ("forged", &forged)] {
        let signature = token.rsplit_once('.').unwrap().1;
        assert!(!logs.contains(token.as_str()), "the {name} token appears in the logs");
        assert!(!logs.contains(signature), "the {name} token's signature appears in the logs");
    }
}
