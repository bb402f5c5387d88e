//! `ContextCache` on Redis (fred): `{prefix}:{kind}:{uid}` JSON with per-kind TTLs. Every
//! operation gives up within 100 ms; three failures in a row open a breaker for 5 s, during which
//! Redis is skipped (context comes from the database). Failures count in `pam_cache_errors_total`
//! and each breaker transition logs one line.

use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, Config, Expiration, KeysInterface, ReconnectPolicy};
use pam_actors::{BoxFuture, ContextCache, ContextKind};
use pam_protocol::UserId;
use serde_json::Value;

use super::breaker::{CircuitBreaker, Transition};

pub const CACHE_ERRORS_TOTAL: &str = "pam_cache_errors_total";
const OP_TIMEOUT: Duration = Duration::from_millis(100);
const FAILURES_TO_OPEN: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(5);

pub struct RedisCache {
    client: Client,
    prefix: String,
    ttls: [u64; 3],
    breaker: CircuitBreaker,
}

impl RedisCache {
    /// Connects in the background: a Redis that is down at startup only opens the breaker.
    pub fn connect(url: &str, prefix: &str, ttls: [u64; 3]) -> anyhow::Result<Self> {
        let config = Config::from_url(url).map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .with_performance_config(|p| p.default_command_timeout = OP_TIMEOUT)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(|e| anyhow::anyhow!("could not set up the Redis client: {e}"))?;
        // The connection task (with its reconnect policy) runs on its own; dropping the handle
        // detaches it instead of waiting for a Redis that may be down.
        drop(client.connect());
        Ok(Self { client, prefix: prefix.to_string(), ttls, breaker: CircuitBreaker::new(FAILURES_TO_OPEN, OPEN_FOR) })
    }

    fn key(&self, kind: ContextKind, user: &UserId) -> String {
        format!("{}:{}:{}", self.prefix, kind.as_str(), user)
    }

    fn ttl(&self, kind: ContextKind) -> i64 {
        let ttl = match kind {
            ContextKind::Profile => self.ttls[0],
            ContextKind::Financial => self.ttls[1],
            ContextKind::Social => self.ttls[2],
        };
        i64::try_from(ttl.max(1)).unwrap_or(i64::MAX)
    }

    /// Runs `op` unless the breaker is open; records the outcome.
    async fn guarded<T>(&self, op: &'static str, fut: impl Future<Output = Result<T, fred::error::Error>>) -> Option<T> {
        let permit = self.breaker.admit()?;
        let result = match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {} ms", OP_TIMEOUT.as_millis())),
        };
        match result {
            Ok(value) => {
                if permit.succeeded() == Some(Transition::Closed) {
                    tracing::info!("Redis answers again; context cache back on");
                }
                Some(value)
            }
            Err(error) => {
                metrics::counter!(CACHE_ERRORS_TOTAL, "op" => op).increment(1);
                if permit.failed() == Some(Transition::Opened) {
                    tracing::warn!(%error, "Redis unavailable; serving context from the database for {} s", OPEN_FOR.as_secs());
                }
                None
            }
        }
    }

    /// `healthy`, `open` (breaker) or `degraded` (recent failures).
    pub fn status(&self) -> &'static str {
        self.breaker.status()
    }
}

impl ContextCache for RedisCache {
    fn get<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async move {
            let text: Option<String> = self.guarded("get", self.client.get(self.key(kind, user))).await.flatten();
            text.and_then(|t| serde_json::from_str(&t).ok())
        })
    }

    fn put<'a>(&'a self, kind: ContextKind, user: &'a UserId, value: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let expire = Some(Expiration::EX(self.ttl(kind)));
            let _: Option<()> = self.guarded("set", self.client.set(self.key(kind, user), value.to_string(), expire, None, false)).await;
        })
    }

    fn evict<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _: Option<i64> = self.guarded("del", self.client.del(self.key(kind, user))).await;
        })
    }
}
