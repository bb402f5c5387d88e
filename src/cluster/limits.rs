//! The shared chat rate limit (GCRA in one script, on Redis's clock so every node agrees) and
//! REST `Idempotency-Key`s across nodes: `SET NX` claims a key with a running marker owned by
//! this node and request, on a short lease (`IDEMPOTENCY_LEASE`) the request renews while its turn
//! runs, then the stored response replaces it for `IDEMPOTENCY_TTL`. A marker whose request never
//! got Redis's answer (the `SET NX` timed out but ran) is renewed by no one and lapses quickly.

use std::time::Duration;

use fred::prelude::{KeysInterface, LuaInterface};
use fred::types::{Expiration, SetOptions};
use pam_actors::{BoxFuture, Gcra, SharedRateLimit, SharedUnavailable};
use pam_protocol::UserId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Op, RedisShared, scripts};
use crate::cluster::idempotency::{SharedClaim, SharedIdempotency, StoredResponse};

/// What Redis holds for an `Idempotency-Key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    /// A request is being answered; `owner` tells this claim from a later one.
    Running {
        fingerprint: String,
        owner: String,
    },
    Done {
        fingerprint: String,
        body: serde_json::Value,
    },
}

impl RedisShared {
    fn idempotency_key(&self, user: &UserId, key: &str) -> String {
        let digest = hex(&Sha256::digest(key.as_bytes()));
        self.key(&format!("idem:{user}:{digest}"))
    }

    /// Claims `key` for `user` for `lease` (renewed with `renew_idempotency`; then a retry may
    /// run it again). The marker's owner is this node and request.
    async fn claim_idempotency(
        &self,
        user: &UserId,
        key: &str,
        fingerprint: [u8; 32],
        lease: Duration,
    ) -> Result<SharedClaim, SharedUnavailable> {
        let fingerprint = hex(&fingerprint);
        let owner = format!("{}/{}/{}", self.node, self.boot, uuid::Uuid::new_v4().simple());
        let marker = serde_json::to_string(&Entry::Running { fingerprint: fingerprint.clone(), owner }).expect("entry serialises");
        let expiry = Expiration::PX(millis(lease));
        let previous: Option<String> = self
            .guarded(
                Op::Idempotency,
                self.client.set(self.idempotency_key(user, key), marker.clone(), Some(expiry), Some(SetOptions::NX), true),
            )
            .await?;
        let Some(previous) = previous else { return Ok(SharedClaim::Run { marker }) };
        Ok(match serde_json::from_str::<Entry>(&previous) {
            Ok(Entry::Running { fingerprint: seen, .. }) if seen == fingerprint => SharedClaim::InFlight,
            Ok(Entry::Done { fingerprint: seen, body }) if seen == fingerprint => SharedClaim::Replay(StoredResponse { body }),
            // Another body, or a value this version cannot read: never replay it for this request.
            Ok(_) | Err(_) => SharedClaim::Mismatch,
        })
    }

    /// Extends the lease of the claim `marker` holds; `false` when it holds the key no more.
    async fn renew_idempotency(&self, user: &UserId, key: &str, marker: &str, lease: Duration) -> Result<bool, SharedUnavailable> {
        let args = vec![marker.to_string(), millis(lease).to_string()];
        let renewed: i64 =
            self.guarded(Op::Idempotency, self.client.eval(scripts::RENEW, vec![self.idempotency_key(user, key)], args)).await?;
        Ok(renewed == 1)
    }

    /// Stores the response of a claimed key for `ttl`, or (with `None`) forgets the claim so a
    /// retry runs again; nothing happens if the claim expired and someone else claimed the key.
    async fn settle_idempotency(
        &self,
        user: &UserId,
        key: &str,
        marker: &str,
        response: Option<&StoredResponse>,
        ttl: Duration,
    ) -> Result<(), SharedUnavailable> {
        let (value, ttl_ms) = match (response, serde_json::from_str::<Entry>(marker)) {
            (Some(response), Ok(Entry::Running { fingerprint, .. })) => {
                let done = Entry::Done { fingerprint, body: response.body.clone() };
                (serde_json::to_string(&done).expect("entry serialises"), ttl.as_millis().max(1).to_string())
            }
            _ => (String::new(), "0".to_string()),
        };
        let args = vec![marker.to_string(), value, ttl_ms];
        let _: i64 = self.guarded(Op::Idempotency, self.client.eval(scripts::SETTLE, vec![self.idempotency_key(user, key)], args)).await?;
        Ok(())
    }
}

impl SharedIdempotency for RedisShared {
    fn claim<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a str,
        fingerprint: [u8; 32],
        lease: Duration,
    ) -> BoxFuture<'a, Result<SharedClaim, SharedUnavailable>> {
        Box::pin(self.claim_idempotency(user, key, fingerprint, lease))
    }

    fn renew<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a str,
        marker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
        Box::pin(self.renew_idempotency(user, key, marker, lease))
    }

    fn settle<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a str,
        marker: &'a str,
        response: Option<&'a StoredResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), SharedUnavailable>> {
        Box::pin(self.settle_idempotency(user, key, marker, response, ttl))
    }
}

impl SharedRateLimit for RedisShared {
    fn admit<'a>(&'a self, user: &'a UserId, per_minute: u32) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
        Box::pin(async move {
            let gcra = Gcra::per_minute(per_minute);
            let args = vec![gcra.interval.as_micros().to_string(), gcra.tolerance.as_micros().to_string()];
            let allowed: i64 =
                self.guarded(Op::RateLimit, self.client.eval(scripts::RATE, vec![self.key(&format!("rate:{user}"))], args)).await?;
            Ok(allowed == 1)
        })
    }
}

/// `d` in whole milliseconds for Redis, at least 1.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
