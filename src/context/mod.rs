//! The user's context (profile, finances, friends) the loaders build for every turn: the SQL that
//! reads it (`store.rs`), the Redis cache in front of it (`redis_cache.rs`) and the Postgres
//! `NOTIFY` listener that invalidates it (`invalidation.rs`). `spawn_loaders` starts the three
//! loader actors on the gateway's database. Imports storage, settings and observability.

pub mod invalidation;
pub mod redis_cache;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pam_actors::{ContextCache, ContextKind, ContextStore};
use pam_actors::{ContextLoaderActor, ContextLoaderArgs, ContextLoaders};
use ractor::Actor;

use crate::settings::Settings;
use crate::storage::database::Database;

/// L1 stays short-lived (with or without Redis behind it) so a change that no invalidation
/// reaches shows within a minute on every node.
const L1_MAX_TTL: Duration = Duration::from_secs(60);
const L1_CAPACITY: u64 = 100_000;
/// How long a chat waits for context before answering without it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn spawn_loaders(db: &Database, settings: &Settings, cache: Option<Arc<dyn ContextCache>>) -> anyhow::Result<ContextLoaders> {
    let store: Arc<dyn ContextStore> = Arc::new(db.clone());
    let spawn = |kind: ContextKind, ttl_s: u64| {
        let args = ContextLoaderArgs {
            kind,
            store: store.clone(),
            cache: cache.clone(),
            l1_ttl: Duration::from_secs(ttl_s.max(1)).min(L1_MAX_TTL),
            l1_capacity: L1_CAPACITY,
        };
        async move {
            Actor::spawn(None, ContextLoaderActor, args)
                .await
                .map(|(actor, _)| actor)
                .with_context(|| format!("could not start the {} loader", kind.as_str()))
        }
    };
    Ok(ContextLoaders {
        profile: spawn(ContextKind::Profile, settings.profile_ttl_s).await?,
        financial: spawn(ContextKind::Financial, settings.financial_ttl_s).await?,
        social: spawn(ContextKind::Social, settings.social_ttl_s).await?,
        timeout: LOAD_TIMEOUT,
    })
}
