//! Property tests for the two token parsers that take raw client input: the JWT path of
//! `JwtAuthenticator` (header, claims, signature, time claims) and CSRF tokens. Neither may panic
//! on any input; each only accepts what it issued or what the configured secret signed.

use jsonwebtoken::{EncodingKey, Header, encode};
use pam_actors::AuthError;
use pam_protocol::UserId;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::JwtAuthenticator;
use super::csrf::{CSRF_TTL_SECS, CsrfKeys};
use crate::settings::AuthSettings;

const SECRET: &str = "proptest-secret-that-is-long-enough-for-hs256";
const USER: &str = "11111111-1111-4111-8111-111111111111";

fn authenticator() -> JwtAuthenticator {
    let settings =
        AuthSettings { hs256_secret: Some(SECRET.into()), jwks_url: None, audience: "authenticated".into(), issuer: None, dev_auth: false };
    JwtAuthenticator::new(&settings, None, None)
}

fn verify(token: &str) -> Result<pam_actors::Identity, AuthError> {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(authenticator().verify(token))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    bytes
        .chunks(3)
        .flat_map(|chunk| {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            (0..=chunk.len()).map(move |i| ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char)
        })
        .collect()
}

/// A claim value of any kind a hostile token might carry in a time or identity claim.
fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(json!(USER)),
        Just(json!(["authenticated"])),
        Just(json!({"role": "admin"})),
    ]
}

fn claims() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec!["sub", "aud", "role", "exp", "nbf", "iat", "iss", "app_metadata"]);
    prop::collection::vec((names, claim_value()), 0..8)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

proptest! {
    #[test]
    fn any_string_as_a_jwt_is_refused_without_panicking(token in ".{0,300}") {
        prop_assert!(verify(&token).is_err());
    }

    #[test]
    fn any_three_segments_of_base64_are_refused_without_panicking(
        header in prop::collection::vec(any::<u8>(), 0..80),
        alg in prop::sample::select(vec!["HS256", "HS512", "ES256", "RS256", "none", "EdDSA", ""]),
        claims in claims(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
        json_header in any::<bool>(),
    ) {
        let header = if json_header { base64url(json!({"alg": alg, "typ": "JWT", "kid": "k"}).to_string().as_bytes()) } else { base64url(&header) };
        let token = format!("{header}.{}.{}", base64url(claims.to_string().as_bytes()), base64url(&signature));
        prop_assert!(verify(&token).is_err(), "an unsigned token passed");
    }

    #[test]
    fn signed_tokens_with_any_claims_never_panic_and_pass_only_with_sane_times(claims in claims()) {
        let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        if verify(&token).is_ok() {
            let exp = claims["exp"].as_u64();
            prop_assert!(exp.is_some_and(|exp| exp + 60 >= now()), "passed without a live exp: {claims}");
            prop_assert!(claims["nbf"].as_f64().is_none_or(|nbf| nbf <= (now() + 61) as f64), "passed before nbf: {claims}");
            prop_assert!(claims["iat"].as_f64().is_none_or(|iat| iat <= (now() + 61) as f64), "passed with a future iat: {claims}");
        }
    }

    #[test]
    fn a_time_claim_beyond_the_leeway_in_the_future_is_refused(claim in prop::sample::select(vec!["nbf", "iat"]), ahead in 62u64..1_000_000) {
        let claims = json!({"sub": USER, "aud": "authenticated", "exp": now() + 2_000_000, claim: now() + ahead});
        let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        prop_assert!(matches!(verify(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn any_string_as_a_csrf_token_is_refused_without_panicking(token in ".{0,120}", now in any::<u64>()) {
        let keys = CsrfKeys::new(Some("secret"));
        let user = UserId::parse(USER).unwrap();
        prop_assert!(keys.verify(&user, Some(&token), now).is_err());
    }

    #[test]
    fn an_issued_csrf_token_passes_for_its_hour_and_any_edit_of_it_fails(
        issued in 0u64..4_000_000_000,
        age in 0..=CSRF_TTL_SECS,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let keys = CsrfKeys::new(Some("secret"));
        let user = UserId::parse(USER).unwrap();
        let token = keys.issue(&user, issued);
        prop_assert_eq!(keys.verify(&user, Some(&token), issued + age), Ok(()));
        let mut edited = token.clone().into_bytes();
        let at = at.index(edited.len());
        edited[at] = byte;
        if let Ok(edited) = String::from_utf8(edited) {
            if !edited.eq_ignore_ascii_case(&token) {
                prop_assert!(keys.verify(&user, Some(&edited), issued + age).is_err(), "{edited} passed");
            }
        }
    }
}
