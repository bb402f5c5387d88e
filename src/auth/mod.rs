//! Token verification for sockets and REST: Supabase HS256 secrets, JWKS (ES256/RS256 by
//! `kid`, `jwks.rs`) and the dev-mode secret (`dev.rs`). Implements the actors' `Authenticator`
//! port. Also the settings routes' CSRF tokens (`csrf.rs`). Imports settings only.

pub mod csrf;
pub mod dev;
pub mod jwks;
#[cfg(test)]
mod proptests;

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use pam_actors::{AuthError, Authenticator, BoxFuture, Identity};
use pam_protocol::UserId;
use serde::Deserialize;
use serde_json::Value;

use crate::settings::AuthSettings;
use jwks::JwksCache;

/// Leeway for clock skew between Supabase and us, for `exp`, `nbf` and `iat` alike
/// (protocol.md, "Malformed input at the edge").
const LEEWAY_SECS: u64 = 60;

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
    exp: Option<u64>,
    /// Read as any JSON number: it must not be after now + leeway (a non-number is ignored).
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    app_metadata: Option<Value>,
}

/// Verifies Supabase access tokens.
pub struct JwtAuthenticator {
    hs_keys: Vec<DecodingKey>,
    jwks: Option<Arc<JwksCache>>,
    audience: String,
    issuer: Option<String>,
}

impl JwtAuthenticator {
    /// `dev_secret` is accepted beside the project secret when dev auth is on.
    pub fn new(settings: &AuthSettings, dev_secret: Option<&[u8]>, jwks: Option<Arc<JwksCache>>) -> Self {
        let mut hs_keys: Vec<DecodingKey> = settings.hs256_secret.iter().map(|s| DecodingKey::from_secret(s.expose().as_bytes())).collect();
        hs_keys.extend(dev_secret.map(DecodingKey::from_secret));
        Self { hs_keys, jwks, audience: settings.audience.clone(), issuer: settings.issuer.clone() }
    }

    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = decode_header(token).map_err(|_| AuthError::Invalid("malformed token".into()))?;
        let keys: Vec<DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs_keys.clone(),
            Algorithm::ES256 | Algorithm::RS256 => {
                let jwks = self.jwks.as_ref().ok_or_else(|| AuthError::Invalid("asymmetric tokens are not configured".into()))?;
                let kid = header.kid.as_deref().ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
                let key = jwks.key(kid, header.alg).await?;
                vec![key]
            }
            other => return Err(AuthError::Invalid(format!("algorithm {other:?} is not allowed"))),
        };
        if keys.is_empty() {
            return Err(AuthError::Invalid("HS256 tokens are not configured".into()));
        }
        let mut last = AuthError::Invalid("bad signature".into());
        for key in &keys {
            match self.decode_claims(token, key, header.alg) {
                Ok(claims) => return identity(claims),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn decode_claims(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, AuthError> {
        let strict = self.validation(alg, true);
        match decode::<Claims>(token, key, &strict) {
            Ok(data) => Ok(data.claims),
            // Supabase service-role keys carry no `aud` and `iss: "supabase"`; a key signed by the
            // project secret with that role is trusted as such.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer | ErrorKind::MissingRequiredClaim(_)) => {
                let lenient = decode::<Claims>(token, key, &self.validation(alg, false)).map_err(map_error)?;
                if lenient.claims.role.as_deref() == Some("service_role") { Ok(lenient.claims) } else { Err(map_error(e)) }
            }
            Err(e) => Err(map_error(e)),
        }
    }

    fn validation(&self, alg: Algorithm, strict: bool) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_string()]);
        if strict {
            validation.set_audience(&[&self.audience]);
            validation.required_spec_claims.insert("aud".into());
            if let Some(issuer) = &self.issuer {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".into());
            }
        } else {
            validation.validate_aud = false;
        }
        validation
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(self.verify(token))
    }
}

fn map_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::Invalid("token is not valid yet (nbf)".into()),
        ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
        ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
        ErrorKind::MissingRequiredClaim(claim) => AuthError::Invalid(format!("token has no {claim}")),
        ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm does not match the key".into()),
        _ => AuthError::Invalid("malformed token".into()),
    }
}

/// A token whose `iat` is later than now plus the leeway was not issued by a sane clock.
fn issued_in_the_future(iat: Option<&Value>, now: u64) -> bool {
    iat.and_then(Value::as_f64).is_some_and(|iat| iat > (now + LEEWAY_SECS) as f64)
}

fn identity(claims: Claims) -> Result<Identity, AuthError> {
    if issued_in_the_future(claims.iat.as_ref(), jsonwebtoken::get_current_timestamp()) {
        return Err(AuthError::Invalid("token is issued in the future (iat)".into()));
    }
    let role = claims.role.unwrap_or_default();
    let admin_metadata = claims.app_metadata.as_ref().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("admin");
    let privileged = role == "service_role" || role == "admin" || admin_metadata;
    let subject = match claims.sub.as_deref() {
        Some(sub) => Some(UserId::parse(sub).map_err(|_| AuthError::Invalid("sub is not a user id".into()))?),
        None if role == "service_role" => None,
        None => return Err(AuthError::Invalid("token has no sub".into())),
    };
    Ok(Identity { subject, role, privileged, expires_at: claims.exp })
}
