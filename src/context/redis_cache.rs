//! `ContextCache` on Redis (fred): `{prefix}:{kind}:{uid}` JSON with per-kind TTLs. Every
//! operation gives up within 100 ms; three failures in a row open a breaker for 5 s, during which
//! Redis is skipped (context comes from the database). Failures count in `pam_cache_errors_total`
//! and each breaker transition logs one line. A Redis unreachable at startup is logged once, at
//! error level, by `app.rs` (`probe`), and health shows it (`unreachable`) until Redis answers.
//!
//! Fills are guarded so that an eviction is never undone by a fetch that was already running, on
//! this node or another: a miss hands out a token, `{generation}/{epoch}`, and a fill stores only
//! while both are unchanged (one Lua script, so the check and the write are atomic).
//! - `{prefix}:gen:{kind}:{uid}`: a random generation, created by the first miss after the last
//!   eviction, removed by `evict` (with the value). It lives `GENERATION_TTL`; if it expires while a
//!   fetch runs, that fetch's fill is refused (a missed fill, never a stale one).
//! - `{prefix}:epoch:{kind}`: replaced by `evict_all`, which refuses every earlier token at once
//!   and then deletes the kind's values (SCAN); without the epoch a fill could land behind the scan.
//!
//! Multi-key scripts need a standalone Redis (or all keys in one slot); this client is standalone.

use std::sync::Mutex;
use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, KeysInterface, LuaInterface, ReconnectPolicy};
use fred::types::scan::Scanner;
use futures_util::StreamExt;
use pam_actors::{BoxFuture, CacheLookup, ContextCache, ContextKind, FillToken};
use pam_protocol::UserId;
use serde_json::Value;

use crate::breaker::{CircuitBreaker, Transition};
use crate::redis_target::RedisTarget;

pub const CACHE_ERRORS_TOTAL: &str = "pam_cache_errors_total";
const OP_TIMEOUT: Duration = Duration::from_millis(100);
const FAILURES_TO_OPEN: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(5);
/// How long the startup probe waits for a first PING answer (connection included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a generation outlives the miss that created it: far longer than any fetch.
const GENERATION_TTL: Duration = Duration::from_secs(3_600);
/// Keys deleted per SCAN page by `evict_all`.
const SCAN_PAGE: u32 = 500;

/// KEYS value, generation, epoch; ARGV a fresh random id, the generation TTL in seconds.
/// Returns `{"hit", json}` or `{"miss", token}`.
const LOOKUP: &str = r#"
local value = redis.call('GET', KEYS[1])
if value then return {'hit', value} end
redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[1], 'NX')
return {'miss', redis.call('GET', KEYS[2]) .. '/' .. redis.call('GET', KEYS[3])}
"#;

/// KEYS value, generation, epoch; ARGV token, json, TTL in seconds. Returns 1 when stored.
const FILL: &str = r#"
local seen = (redis.call('GET', KEYS[2]) or '') .. '/' .. (redis.call('GET', KEYS[3]) or '')
if seen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"#;

pub struct RedisCache {
    client: Client,
    prefix: String,
    ttls: [u64; 3],
    breaker: CircuitBreaker,
    /// Where Redis is: the probe asks it why a failed connection failed.
    target: RedisTarget,
    /// Why the startup probe failed; cleared by the first successful operation.
    unreachable_at_start: Mutex<Option<String>>,
}

impl RedisCache {
    /// [`Self::connect_to`] a `redis://` or `rediss://` URL (TLS with the system roots).
    pub fn connect(url: &str, prefix: &str, ttls: [u64; 3]) -> anyhow::Result<Self> {
        Self::connect_to(&RedisTarget::new(url, None)?, prefix, ttls)
    }

    /// Connects in the background: a Redis that is down at startup only opens the breaker.
    pub fn connect_to(target: &RedisTarget, prefix: &str, ttls: [u64; 3]) -> anyhow::Result<Self> {
        let client = Builder::from_config(target.config())
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
        let breaker = CircuitBreaker::new(FAILURES_TO_OPEN, OPEN_FOR);
        Ok(Self { client, prefix: prefix.to_string(), ttls, breaker, target: target.clone(), unreachable_at_start: Mutex::new(None) })
    }

    /// One PING within `PROBE_TIMEOUT`; on failure remembers why (for health) and returns it,
    /// with what the URL can do about it (`RedisTarget::diagnose`: e.g. a TLS port named by
    /// `redis://`).
    pub async fn probe(&self) -> Result<(), String> {
        let options = fred::types::config::Options { timeout: Some(PROBE_TIMEOUT), ..Default::default() };
        let result = match tokio::time::timeout(PROBE_TIMEOUT * 2, self.client.with_options(&options).ping::<String>(None)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
        };
        let result = self.target.diagnose(result).await;
        *self.unreachable_at_start.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
        Err(result)
    }

    /// Why Redis was unreachable at startup, while it has not answered since.
    pub fn startup_error(&self) -> Option<String> {
        self.unreachable_at_start.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn key(&self, kind: ContextKind, user: &UserId) -> String {
        format!("{}:{}:{}", self.prefix, kind.as_str(), user)
    }

    /// The value, generation and epoch keys of one user's context of one kind.
    fn keys(&self, kind: ContextKind, user: &UserId) -> Vec<String> {
        let (prefix, name) = (&self.prefix, kind.as_str());
        vec![self.key(kind, user), format!("{prefix}:gen:{name}:{user}"), format!("{prefix}:epoch:{name}")]
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
                if self.unreachable_at_start.lock().unwrap_or_else(|p| p.into_inner()).take().is_some() {
                    tracing::info!("Redis answers now (it was unreachable at startup); context cache on");
                }
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

    /// `healthy`, `open` (breaker), `degraded` (recent failures) or `unreachable` (since startup).
    pub fn status(&self) -> &'static str {
        match self.breaker.status() {
            "open" => "open",
            status if self.startup_error().is_none() => status,
            _ => "unreachable",
        }
    }
}

impl ContextCache for RedisCache {
    fn get<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, CacheLookup> {
        Box::pin(async move {
            let args = vec![uuid::Uuid::new_v4().simple().to_string(), GENERATION_TTL.as_secs().to_string()];
            let found: Option<Vec<String>> = self.guarded("get", self.client.eval(LOOKUP, self.keys(kind, user), args)).await;
            match found.as_deref() {
                Some([answer, json]) if answer == "hit" => match serde_json::from_str(json) {
                    Ok(value) => CacheLookup::Hit(value),
                    // Unreadable (an older shape): read the database; the entry expires by its TTL.
                    Err(_) => CacheLookup::Miss(None),
                },
                Some([answer, token]) if answer == "miss" => CacheLookup::Miss(Some(FillToken(token.clone()))),
                _ => CacheLookup::Miss(None),
            }
        })
    }

    fn fill<'a>(&'a self, kind: ContextKind, user: &'a UserId, value: &'a Value, token: &'a FillToken) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let args = vec![token.0.clone(), value.to_string(), self.ttl(kind).to_string()];
            let _: Option<i64> = self.guarded("set", self.client.eval(FILL, self.keys(kind, user), args)).await;
        })
    }

    fn evict<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut keys = self.keys(kind, user);
            keys.truncate(2); // the value and its generation; the epoch is the whole kind's
            let _: Option<i64> = self.guarded("del", self.client.del(keys)).await;
        })
    }

    fn evict_all(&self, kind: ContextKind) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let epoch = format!("{}:epoch:{}", self.prefix, kind.as_str());
            let new_epoch = uuid::Uuid::new_v4().simple().to_string();
            // Every fill of an earlier lookup is refused from here on, so the scan cannot be outrun.
            let set: Option<()> = self.guarded("set", self.client.set(epoch, new_epoch, None, None, false)).await;
            if set.is_none() {
                tracing::warn!(kind = kind.as_str(), "could not evict every cached context from Redis; entries expire by their TTL");
                return;
            }
            let pattern = format!("{}:{}:*", glob_escape(&self.prefix), kind.as_str());
            let mut pages = self.client.scan(pattern, Some(SCAN_PAGE), None);
            let mut deleted = 0_i64;
            while let Some(page) = pages.next().await {
                let mut page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        metrics::counter!(CACHE_ERRORS_TOTAL, "op" => "del").increment(1);
                        tracing::warn!(%error, kind = kind.as_str(), "could not scan Redis to evict every cached context; entries expire by their TTL");
                        return;
                    }
                };
                if let Some(keys) = page.take_results().filter(|keys| !keys.is_empty()) {
                    deleted += self.guarded("del", self.client.del::<i64, _>(keys)).await.unwrap_or(0);
                }
                page.next();
            }
            tracing::info!(kind = kind.as_str(), deleted, "evicted every cached context of this kind from Redis");
        })
    }
}

/// `text` matched literally in a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    text.chars().fold(String::with_capacity(text.len()), |mut out, c| {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}
