//! `nbf` and `iat` are checked like `exp`, with the same 60 s leeway, on the socket and on the REST
//! routes: a token not valid yet, or issued in the future, is `AUTH_INVALID` (4501 / 401).

use crate::common::rest::{assert_error_body, post_chat};
use crate::common::*;
use serde_json::{Value, json};

fn signed_with(claim: &str, at: u64) -> String {
    let mut claims = user_claims(USER);
    claims[claim] = json!(at);
    sign_hs256(&claims, TEST_SECRET)
}

async fn socket_refuses(app: &TestApp, token: &str) -> (u16, Vec<Value>) {
    let mut client = WsClient::connect(&app.ws_url(USER, Some(token))).await;
    let (closed, frames) = client.recv_close().await;
    (closed.code, frames)
}

#[tokio::test]
async fn a_socket_token_with_nbf_or_iat_beyond_the_leeway_closes_with_4501() {
    let app = spawn_app().await;
    for claim in ["nbf", "iat"] {
        let (code, frames) = socket_refuses(&app, &signed_with(claim, unix_now() + 300)).await;
        assert_eq!(code, 4501, "{claim}: {frames:?}");
        assert_eq!(frames[0]["error_code"], "AUTH_INVALID", "{claim}: {frames:?}");
        assert!(frames[0]["message"].as_str().unwrap().contains(claim), "the reason names {claim}: {frames:?}");
    }
}

#[tokio::test]
async fn a_socket_token_with_nbf_or_iat_within_the_leeway_or_past_connects() {
    let app = spawn_app().await;
    for (claim, at) in [("nbf", unix_now() + 30), ("iat", unix_now() + 30), ("nbf", unix_now() - 10)] {
        let mut client = WsClient::connect(&app.ws_url(USER, Some(&signed_with(claim, at)))).await;
        assert_eq!(client.recv_json().await["type"], "connection", "{claim} {at}");
    }
}

#[tokio::test]
async fn a_rest_token_with_nbf_or_iat_beyond_the_leeway_is_401_and_within_it_is_answered() {
    let app = spawn_app().await;
    let body = json!({"message": "hello"});
    for claim in ["nbf", "iat"] {
        let (status, reply) = post_chat(&app, &signed_with(claim, unix_now() + 300), &body, None).await;
        assert_eq!(status, 401, "{claim}: {reply}");
        assert_error_body(&reply, "AUTH_INVALID");
        let (status, reply) = post_chat(&app, &signed_with(claim, unix_now() + 30), &body, None).await;
        assert_eq!(status, 200, "{claim} within the leeway: {reply}");
    }
}
