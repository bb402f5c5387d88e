//! Mints Supabase-shaped HS256 tokens from `SUPABASE_JWT_SECRET`.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

pub(crate) fn mint(secret: &str, user: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = json!({"sub": user, "aud": "authenticated", "role": "authenticated", "exp": now + 3600, "iat": now});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("HS256 signing does not fail")
}
