//! `ContextLoaders`: the handle to the three loader actors of this node, as the turn pipeline
//! uses them (all three in parallel, under one deadline) and as the gateway invalidates them.
//! Part of the context-loader module; imports only its messages.

use std::time::Duration;

use pam_protocol::UserId;
use ractor::ActorRef;
use serde_json::Value;
use tracing::Instrument;

use super::ContextLoaderMsg;
use crate::trace;

/// The three loaders, as the orchestrator uses them.
#[derive(Clone)]
pub struct ContextLoaders {
    /// The profile loader.
    pub profile: ActorRef<ContextLoaderMsg>,
    /// The month-to-date financial loader.
    pub financial: ActorRef<ContextLoaderMsg>,
    /// The friends-and-events loader.
    pub social: ActorRef<ContextLoaderMsg>,
    /// How long a chat waits for context before answering without it.
    pub timeout: Duration,
}

impl ContextLoaders {
    /// Loads all three in parallel into `{"profile","financial","social"}`; a part that fails or
    /// times out is left out and `context_degraded` says why.
    pub async fn load_all(&self, user: &UserId) -> serde_json::Map<String, Value> {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let call = |kind: &'static str, loader: &ActorRef<ContextLoaderMsg>| {
            let (user, loader) = (user.clone(), loader.clone());
            // The loader answers on its own task: the span goes with the message, so the loader
            // can say how it was served and trace the fetch under it.
            let span = trace::context_load_span(kind);
            let load = span.clone();
            async move {
                let result = ractor::call_t!(loader, ContextLoaderMsg::Load, ms, user, load.clone());
                if result.is_err() {
                    load.record("outcome", "timeout");
                }
                result
            }
            .instrument(span)
        };
        let (profile, financial, social) =
            tokio::join!(call("profile", &self.profile), call("financial", &self.financial), call("social", &self.social));
        let mut context = serde_json::Map::new();
        let mut problems = Vec::new();
        for (kind, result) in [("profile", profile), ("financial", financial), ("social", social)] {
            match result {
                Ok(Ok(value)) => {
                    context.insert(kind.into(), (*value).clone());
                }
                Ok(Err(error)) => problems.push(format!("{kind}: {error}")),
                Err(error) => problems.push(format!("{kind}: {error}")),
            }
        }
        if !problems.is_empty() {
            tracing::warn!(problems = ?problems, "answering with partial context");
            context.insert("context_degraded".into(), Value::String(problems.join("; ")));
        }
        context
    }

    /// Drops `user`'s cached context of every kind (L1 and the shared cache), after a change.
    pub fn invalidate(&self, user: &UserId) {
        for loader in [&self.profile, &self.financial, &self.social] {
            let _ = loader.cast(ContextLoaderMsg::Invalidate(user.clone()));
        }
    }

    /// Drops every user's cached context of every kind (L1 and the shared cache), for when
    /// changes may have been missed.
    pub fn invalidate_all(&self) {
        for loader in [&self.profile, &self.financial, &self.social] {
            let _ = loader.cast(ContextLoaderMsg::InvalidateAll);
        }
    }
}
