//! Bad input to `POST /api/v1/pam/chat` never yields a 500: a corpus of broken requests (bodies,
//! types, sizes, headers, tokens, methods), each with its expected status and the protocol's
//! JSON `{"error","message"}` body. A few well-formed edge cases are in the corpus as controls.

use crate::common::rest::*;
use crate::common::*;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// One corpus entry: how to break the request, and what must come back.
struct Case {
    name: &'static str,
    method: Method,
    auth: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    extra_header: Option<(&'static str, Vec<u8>)>,
    status: u16,
    /// `None` = a 200 answer is expected.
    error: Option<&'static str>,
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, error: Option<&'static str>) -> Case {
    Case {
        name,
        method: Method::POST,
        auth: bearer(&token_for(USER)),
        content_type: Some("application/json"),
        body: body.into(),
        extra_header: None,
        status,
        error,
    }
}

fn json_case(name: &'static str, body: Value, status: u16, error: Option<&'static str>) -> Case {
    case(name, body.to_string(), status, error)
}

fn with_auth(mut case: Case, auth: Option<String>) -> Case {
    case.auth = auth;
    case
}

fn body_cases() -> Vec<Case> {
    let hello = || json!({"message": "hello"});
    vec![
        case("not JSON", "hello PAM", 400, Some("INVALID_JSON")),
        case("truncated JSON", r#"{"message":"#, 400, Some("INVALID_JSON")),
        case("empty body", "", 400, Some("INVALID_JSON")),
        case("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'], 400, Some("INVALID_JSON")),
        case(
            "nesting deeper than the parser allows",
            format!("{{\"message\":\"hi\",\"context\":{{\"a\":{}1{}}}}}", "[".repeat(5000), "]".repeat(5000)),
            400,
            Some("INVALID_JSON"),
        ),
        case("JSON array", "[1,2]", 400, Some("VALIDATION_ERROR")),
        case("JSON string", "\"hello\"", 400, Some("VALIDATION_ERROR")),
        case("JSON null", "null", 400, Some("VALIDATION_ERROR")),
        json_case("message missing", json!({"session_id": "s"}), 400, Some("VALIDATION_ERROR")),
        json_case("message null", json!({"message": null}), 400, Some("VALIDATION_ERROR")),
        json_case("message a number", json!({"message": 42}), 400, Some("VALIDATION_ERROR")),
        json_case("message an object", json!({"message": {"text": "hi"}}), 400, Some("VALIDATION_ERROR")),
        json_case("message an array", json!({"message": ["hi"]}), 400, Some("VALIDATION_ERROR")),
        json_case("content alias a boolean", json!({"content": true}), 400, Some("VALIDATION_ERROR")),
        json_case("empty message", json!({"message": ""}), 400, Some("EMPTY_MESSAGE")),
        json_case("whitespace message", json!({"message": " \n\t "}), 400, Some("EMPTY_MESSAGE")),
        json_case("NUL in the message", json!({"message": "hi\u{0}there"}), 400, Some("VALIDATION_ERROR")),
        json_case("2 001-character message", json!({"message": "a".repeat(2001)}), 413, Some("MESSAGE_TOO_LARGE")),
        json_case("2 001 multibyte characters", json!({"message": "é".repeat(2001)}), 413, Some("MESSAGE_TOO_LARGE")),
        json_case("session id with a space", json!({"message": "hi", "session_id": "has space"}), 400, Some("VALIDATION_ERROR")),
        json_case("session id of 101 characters", json!({"message": "hi", "session_id": "s".repeat(101)}), 400, Some("VALIDATION_ERROR")),
        json_case("empty session id", json!({"message": "hi", "session_id": ""}), 400, Some("VALIDATION_ERROR")),
        json_case("session id a number", json!({"message": "hi", "session_id": 7}), 400, Some("VALIDATION_ERROR")),
        json_case(
            "session id with SQL",
            json!({"message": "hi", "session_id": "x'; DROP TABLE pam_messages;--"}),
            400,
            Some("VALIDATION_ERROR"),
        ),
        json_case("conversation id not a uuid", json!({"message": "hi", "conversation_id": "default"}), 400, Some("VALIDATION_ERROR")),
        json_case("conversation id a number", json!({"message": "hi", "conversation_id": 1}), 400, Some("VALIDATION_ERROR")),
        json_case("context an array", json!({"message": "hi", "context": [1]}), 400, Some("VALIDATION_ERROR")),
        json_case("context a string", json!({"message": "hi", "context": "x"}), 400, Some("VALIDATION_ERROR")),
        case("1 MiB body", format!("{{\"message\":\"{}\"}}", "a".repeat(1 << 20)), 413, Some("MESSAGE_TOO_LARGE")),
        // Controls: well-formed edge cases are answered.
        json_case("2 000-character message (control)", json!({"message": "a".repeat(2000)}), 200, None),
        json_case("unknown keys are ignored (control)", json!({"message": "hi", "user_id": OTHER_USER, "x": [1]}), 200, None),
        json_case("default session id (control)", json!({"message": "hi", "session_id": "default"}), 200, None),
        json_case(
            "null optional fields (control)",
            json!({"message": "hi", "session_id": null, "context": null, "conversation_id": null}),
            200,
            None,
        ),
        {
            let mut c = json_case("wrong content type", hello(), 415, Some("UNSUPPORTED_MEDIA_TYPE"));
            c.content_type = Some("text/plain");
            c
        },
        {
            let mut c = json_case("form content type", hello(), 415, Some("UNSUPPORTED_MEDIA_TYPE"));
            c.content_type = Some("application/x-www-form-urlencoded");
            c
        },
        {
            let mut c = json_case("no content type", hello(), 415, Some("UNSUPPORTED_MEDIA_TYPE"));
            c.content_type = None;
            c
        },
        {
            let mut c = json_case("JSON with a charset (control)", hello(), 200, None);
            c.content_type = Some("application/json; charset=utf-8");
            c
        },
    ]
}

fn header_cases() -> Vec<Case> {
    let hello = || json!({"message": "hello"});
    let expired = sign_hs256(&json!({"sub": USER, "aud": "authenticated", "role": "authenticated", "exp": unix_now() - 3600}), TEST_SECRET);
    let wrong_audience =
        sign_hs256(&json!({"sub": USER, "aud": "somebody-else", "role": "authenticated", "exp": unix_now() + 3600}), TEST_SECRET);
    let no_sub = sign_hs256(&json!({"aud": "authenticated", "role": "authenticated", "exp": unix_now() + 3600}), TEST_SECRET);
    let service_key = sign_hs256(&json!({"iss": "supabase", "role": "service_role", "exp": unix_now() + 3600}), TEST_SECRET);
    let forged = sign_hs256(&user_claims(USER), "not-the-project-secret-but-long-enough-0123456789");
    let mut cases = vec![
        with_auth(json_case("missing bearer", hello(), 401, Some("AUTH_INVALID")), None),
        with_auth(json_case("empty bearer", hello(), 401, Some("AUTH_INVALID")), Some("Bearer ".into())),
        with_auth(json_case("garbage bearer", hello(), 401, Some("AUTH_INVALID")), bearer("not.a.jwt")),
        with_auth(json_case("Basic credentials", hello(), 401, Some("AUTH_INVALID")), Some("Basic dXNlcjpwYXNz".into())),
        with_auth(json_case("token without a scheme", hello(), 401, Some("AUTH_INVALID")), Some(token_for(USER))),
        with_auth(json_case("expired bearer", hello(), 401, Some("TOKEN_EXPIRED")), bearer(&expired)),
        with_auth(json_case("forged signature", hello(), 401, Some("AUTH_INVALID")), bearer(&forged)),
        with_auth(json_case("wrong audience", hello(), 401, Some("AUTH_INVALID")), bearer(&wrong_audience)),
        with_auth(json_case("token without sub", hello(), 401, Some("AUTH_INVALID")), bearer(&no_sub)),
        with_auth(json_case("service key names no user", hello(), 403, Some("FORBIDDEN")), bearer(&service_key)),
        with_auth(json_case("10 KB bearer", hello(), 401, Some("AUTH_INVALID")), bearer(&"a".repeat(10_000))),
        with_auth(json_case("bad body without a bearer is 401 first", json!({"message": 1}), 401, Some("AUTH_INVALID")), None),
    ];
    for (name, key) in [
        ("Idempotency-Key too long", vec![b'k'; 256]),
        ("Idempotency-Key with a space", b"two words".to_vec()),
        ("Idempotency-Key not ASCII", vec![0xc3, 0xa9]),
    ] {
        let mut c = json_case(name, hello(), 400, Some("VALIDATION_ERROR"));
        c.extra_header = Some(("idempotency-key", key));
        cases.push(c);
    }
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let mut c = json_case("another method", hello(), 405, Some("METHOD_NOT_ALLOWED"));
        c.method = method;
        cases.push(c);
    }
    cases
}

fn request(app: &TestApp, case: &Case) -> RequestBuilder {
    let mut request = client().request(case.method.clone(), app.http("/api/v1/pam/chat")).body(case.body.clone());
    if let Some(auth) = &case.auth {
        request = request.header(AUTHORIZATION, auth.as_str());
    }
    if let Some(content_type) = case.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some((name, value)) = &case.extra_header {
        request = request.header(*name, reqwest::header::HeaderValue::from_bytes(value).unwrap());
    }
    request
}

#[tokio::test]
async fn no_bad_request_to_rest_chat_gets_a_500() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 10_000, Default::default()).await;
    let cases: Vec<Case> = body_cases().into_iter().chain(header_cases()).collect();
    let mut failures = Vec::new();
    for case in &cases {
        let response = request(&app, case).send().await.unwrap_or_else(|e| panic!("{}: no response ({e})", case.name));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.chars().take(200).collect()));
        let shape_ok = match case.error {
            Some(code) => body["error"] == code && body["message"].as_str().is_some_and(|m| !m.is_empty()),
            None => body["response"].as_str().is_some_and(|r| !r.is_empty()),
        };
        if status != case.status || !shape_ok {
            failures.push(format!("{}: expected {} {:?}, got {status} {body}", case.name, case.status, case.error));
        }
        assert_ne!(status, 500, "{}", case.name);
    }
    println!("bad-input corpus: {} requests", cases.len());
    assert!(cases.len() >= 50, "the corpus shrank to {}", cases.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
