//! Development auth: a random per-start HS256 secret and `POST /dev/token`, on loopback only.

use jsonwebtoken::{EncodingKey, Header, encode};
use pam_protocol::UserId;
use serde::Serialize;

/// The demo traveller `/dev/token` speaks for when no `user_id` is given.
pub const DEMO_USER_ID: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1";
/// Lifetime of a dev token.
pub const DEV_TOKEN_TTL_SECS: u64 = 3600;

/// Mints dev tokens shaped like Supabase's.
pub struct DevAuth {
    secret: Vec<u8>,
    audience: String,
    issuer: String,
}

#[derive(Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    aud: &'a str,
    iss: &'a str,
    role: &'a str,
    email: String,
    exp: u64,
    iat: u64,
    session_id: String,
    is_anonymous: bool,
}

/// A minted token.
#[derive(Debug, Serialize)]
pub struct DevToken {
    pub token: String,
    pub user_id: String,
    pub expires_at: u64,
}

impl DevAuth {
    /// A fresh random secret (two v4 uuids: 244 random bits).
    pub fn new(audience: &str, issuer: Option<&str>) -> Self {
        let mut secret = uuid::Uuid::new_v4().as_bytes().to_vec();
        secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self { secret, audience: audience.into(), issuer: issuer.unwrap_or("pam-gateway-dev").into() }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The issuer dev tokens carry (the configured one, when set).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn mint(&self, user: &UserId) -> Result<DevToken, jsonwebtoken::errors::Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let expires_at = now + DEV_TOKEN_TTL_SECS;
        let claims = DevClaims {
            sub: user.as_str(),
            aud: &self.audience,
            iss: &self.issuer,
            role: "authenticated",
            email: format!("traveller+{}@dev.pam.local", &user.as_str()[..8]),
            exp: expires_at,
            iat: now,
            session_id: uuid::Uuid::new_v4().to_string(),
            is_anonymous: false,
        };
        let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(&self.secret))?;
        Ok(DevToken { token, user_id: user.to_string(), expires_at })
    }
}
