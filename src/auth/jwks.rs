//! A cached JSON Web Key Set. Unknown `kid`s trigger at most one refetch per interval, shared by
//! every concurrent caller (single-flight), so a rotation is picked up without a stampede.
//!
//! A failed fetch is not the client's fault: callers get `AuthError::Unavailable` (close 1013
//! `AUTH_UNAVAILABLE`, never counted against the auth-failure throttle) until a fetch succeeds,
//! and fetches are retried with capped exponential backoff (1 s, 2 s, 4 s … 60 s), so an outage
//! costs the key server at most one request per backoff step whatever the connection rate.
//! `spawn_warmup` keeps retrying in the background until the set is loaded once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use pam_actors::AuthError;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Minimum time between two successful fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Wait after the first failed fetch; doubled per further failure up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two fetches while the key server fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct CachedKey {
    key: DecodingKey,
    alg: Algorithm,
}

/// When the next fetch may happen and why.
#[derive(Debug, Default, Clone, Copy)]
struct FetchState {
    /// Failed fetches in a row (0 after a success).
    failures: u32,
    /// No fetch before this instant (`None`: never fetched).
    next_allowed: Option<Instant>,
}

impl FetchState {
    fn due(&self, now: Instant) -> bool {
        self.next_allowed.is_none_or(|at| now >= at)
    }

    fn succeeded(&mut self, now: Instant, refetch_after: Duration) {
        *self = FetchState { failures: 0, next_allowed: Some(now + refetch_after) };
    }

    fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.next_allowed = Some(now + backoff(self.failures));
    }
}

/// The wait after `failures` failed fetches in a row: 1 s doubling, capped at 60 s.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// The key set behind `PAM_JWKS_URL` / `{SUPABASE_URL}/auth/v1/.well-known/jwks.json`.
pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, CachedKey>>,
    fetch: Mutex<FetchState>,
}

impl JwksCache {
    pub fn new(url: String, client: reqwest::Client) -> Self {
        Self { url, client, keys: RwLock::new(HashMap::new()), fetch: Mutex::new(FetchState::default()) }
    }

    /// The key for `kid`. Unknown: refetched when a fetch is due; `Invalid` when the set was
    /// fetched fine and lacks it, `Unavailable` while the set cannot be fetched.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.lookup(kid, alg)? {
            return Ok(key);
        }
        let mut fetch = self.fetch.lock().await;
        // Another caller may have refreshed the set while we waited for the lock.
        if let Some(key) = self.lookup(kid, alg)? {
            return Ok(key);
        }
        if !fetch.due(Instant::now()) {
            return Err(if fetch.failures > 0 { unavailable(&fetch) } else { AuthError::Invalid("unknown signing key".into()) });
        }
        self.refresh_locked(&mut fetch, REFETCH_INTERVAL).await?;
        self.lookup(kid, alg)?.ok_or_else(|| AuthError::Invalid("unknown signing key".into()))
    }

    /// Fetches the set now, unless a fetch is in flight (then waits for it and fetches again).
    /// Like the warm-up, a successful refresh does not hold back the next unknown-`kid` refetch.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let mut fetch = self.fetch.lock().await;
        self.refresh_locked(&mut fetch, Duration::ZERO).await
    }

    /// Loads the set in the background, retrying with backoff until one fetch succeeds.
    pub fn spawn_warmup(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let mut fetch = self.fetch.lock().await;
                if fetch.failures == 0 && fetch.next_allowed.is_some() {
                    return; // loaded (here or by a caller's refetch)
                }
                let wait_until = match fetch.next_allowed {
                    Some(at) if !fetch.due(Instant::now()) => at,
                    _ => match self.refresh_locked(&mut fetch, Duration::ZERO).await {
                        Ok(_) => return,
                        Err(_) => fetch.next_allowed.unwrap_or_else(Instant::now),
                    },
                };
                drop(fetch);
                tokio::time::sleep_until(wait_until).await;
            }
        })
    }

    /// One fetch; after a success the next is allowed `refetch_after` later.
    async fn refresh_locked(&self, fetch: &mut FetchState, refetch_after: Duration) -> Result<usize, AuthError> {
        let set = match self.fetch_set().await {
            Ok(set) => set,
            Err(error) => {
                fetch.failed(Instant::now());
                // Once per outage at warn, then quieter: a long outage must not flood the logs.
                if fetch.failures == 1 {
                    tracing::warn!(url = %self.url, %error, "could not fetch the JWKS; retrying with backoff");
                } else {
                    tracing::debug!(url = %self.url, %error, failures = fetch.failures, "JWKS fetch failed again");
                }
                return Err(unavailable(fetch));
            }
        };
        let recovered = fetch.failures > 0;
        fetch.succeeded(Instant::now(), refetch_after);
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
        tracing::info!(keys = count, recovered, "JWKS loaded");
        Ok(count)
    }

    async fn fetch_set(&self) -> Result<JwkSet, String> {
        let response = self.client.get(&self.url).timeout(FETCH_TIMEOUT).send().await.map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        response.json::<JwkSet>().await.map_err(|e| e.without_url().to_string())
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

fn unavailable(fetch: &FetchState) -> AuthError {
    let retry_in = fetch.next_allowed.map_or(0, |at| at.saturating_duration_since(Instant::now()).as_secs() + 1);
    AuthError::Unavailable(format!("signing keys cannot be fetched; next try in {retry_in} s"))
}

/// Only ES256 (P-256) and RS256 keys are accepted.
fn algorithm_of(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_stops_at_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_key_server_is_unavailable_and_asked_once_per_backoff_step() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        drop(listener); // nothing listens: every fetch fails at once
        rustls::crypto::ring::default_provider().install_default().ok();
        let cache = JwksCache::new(url, reqwest::Client::new());
        let first = cache.key("k", Algorithm::ES256).await;
        assert!(matches!(first, Err(AuthError::Unavailable(_))), "{first:?}");
        // Within the backoff step no fetch is tried, and the answer stays "unavailable".
        let again = cache.key("k", Algorithm::ES256).await;
        assert!(matches!(again, Err(AuthError::Unavailable(_))), "{again:?}");
        assert_eq!(cache.fetch.lock().await.failures, 1, "one fetch in the first step");
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(matches!(cache.key("k", Algorithm::ES256).await, Err(AuthError::Unavailable(_))));
        assert_eq!(cache.fetch.lock().await.failures, 2, "the step is over: one more fetch");
    }
}
