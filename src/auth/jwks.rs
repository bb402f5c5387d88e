//! A cached JSON Web Key Set. Unknown `kid`s trigger at most one refetch per interval, shared by
//! every concurrent caller (single-flight), so a rotation is picked up without a stampede.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use pam_actors::AuthError;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Minimum time between two fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct CachedKey {
    key: DecodingKey,
    alg: Algorithm,
}

/// The key set behind `PAM_JWKS_URL` / `{SUPABASE_URL}/auth/v1/.well-known/jwks.json`.
pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, CachedKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl JwksCache {
    pub fn new(url: String, client: reqwest::Client) -> Self {
        Self { url, client, keys: RwLock::new(HashMap::new()), last_fetch: Mutex::new(None) }
    }

    /// The key for `kid`, refetching the set once per interval when it is unknown.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.lookup(kid, alg)? {
            return Ok(key);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another caller may have refreshed the set while we waited for the lock.
        if let Some(key) = self.lookup(kid, alg)? {
            return Ok(key);
        }
        if last_fetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Err(AuthError::Invalid("unknown signing key".into()));
        }
        *last_fetch = Some(Instant::now());
        self.refresh().await?;
        self.lookup(kid, alg)?.ok_or_else(|| AuthError::Invalid("unknown signing key".into()))
    }

    /// Fetches the set now (also used to warm the cache at startup).
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let set = self.fetch().await.map_err(|e| {
            tracing::warn!(url = %self.url, error = %e, "could not fetch the JWKS");
            AuthError::Unavailable(e)
        })?;
        let mut fresh = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), algorithm_of(&jwk.algorithm)) else { continue };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    fresh.insert(kid, CachedKey { key, alg });
                }
                Err(error) => tracing::warn!(kid, %error, "skipping an unusable JWKS key"),
            }
        }
        let count = fresh.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        tracing::info!(keys = count, "JWKS loaded");
        Ok(count)
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let response = self.client.get(&self.url).timeout(FETCH_TIMEOUT).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        response.json::<JwkSet>().await.map_err(|e| e.to_string())
    }

    fn lookup(&self, kid: &str, alg: Algorithm) -> Result<Option<DecodingKey>, AuthError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        match keys.get(kid) {
            Some(cached) if cached.alg == alg => Ok(Some(cached.key.clone())),
            Some(_) => Err(AuthError::Invalid("algorithm does not match the key".into())),
            None => Ok(None),
        }
    }
}

/// Only ES256 (P-256) and RS256 keys are accepted.
fn algorithm_of(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}
