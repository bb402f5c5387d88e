//! The `Authenticator` port: verifies access tokens for the connection actor (query token, v2
//! `auth` and `auth_refresh` frames); the gateway's JWT verifier implements it.

use pam_protocol::UserId;

use super::BoxFuture;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`; `None` only for service-role keys.
    pub subject: Option<UserId>,
    /// `role` claim (`authenticated`, `service_role`, `admin`…).
    pub role: String,
    /// `app_metadata.role == "admin"` or `role` admin/service_role.
    pub privileged: bool,
    /// `exp`, unix seconds.
    pub expires_at: Option<u64>,
}

/// Why a token was refused; each maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token came (neither `?token=` nor an `auth` frame).
    #[error("missing token")]
    Missing,
    /// The token is malformed, badly signed, or for another audience or issuer.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// The token is valid but for another user.
    #[error("token does not grant access to this user")]
    Forbidden,
    /// The key set could not be fetched: not the client's fault.
    #[error("cannot verify tokens right now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// A short label for `pam_auth_failures_total{reason}`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Expired => "expired",
            AuthError::Forbidden => "forbidden",
            AuthError::Unavailable(_) => "unavailable",
        }
    }
}

/// Verifies access tokens (HS256 secret, JWKS, dev secret).
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies signature, `exp`, `aud`, `iss` and the presence of `sub`.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>>;
}
