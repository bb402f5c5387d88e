//! Listens for `NOTIFY pam_context_changed` (sent by the table triggers in the Postgres
//! migrations) and evicts the named user's cached context, so the next chat sees the change;
//! a change of `expenses` or `budgets` also goes to the budget watcher (budget alerts).
//!
//! Notifications sent while the listening connection is down are lost, so whenever it listens
//! again after a gap (a dropped connection, a Postgres restart, a terminated backend) it evicts
//! every user's cached context (L1 and Redis): it cannot tell what changed meanwhile. The first
//! LISTEN at startup evicts nothing, so a rolling deploy keeps the shared cache warm: this node has
//! cached next to nothing yet, and Redis is kept fresh by the other nodes' listeners (a change made
//! while no node listened at all shows once its TTL ends).

use std::time::Duration;

use pam_actors::ContextLoaders;

use crate::push::budget_alerts::watcher::BudgetWatcher;
use pam_protocol::UserId;
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

pub const CHANNEL: &str = "pam_context_changed";
const RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// How long one attempt to (re)connect the listening connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
struct Change {
    table: Option<String>,
    user_id: String,
}

/// Runs until aborted on a connection of its own to `session` (a session, never a transaction
/// pooler: `LISTEN` lasts as long as the connection, and a transaction pooler hands the server
/// connection to other clients after each statement, so notifications would reach nobody), apart
/// from the gateway's pool; reconnects (with a log line) when that connection drops. `budgets`
/// hears of every change to a user's expenses or budgets.
pub fn spawn_listener(session: PgConnectOptions, loaders: ContextLoaders, budgets: BudgetWatcher) -> tokio::task::JoinHandle<()> {
    let own = PgPoolOptions::new().max_connections(1).acquire_timeout(CONNECT_TIMEOUT).connect_lazy_with(session);
    tokio::spawn(async move {
        let mut after_a_gap = false;
        loop {
            let error = listen(&own, &loaders, &budgets, after_a_gap).await;
            tracing::warn!(%error, "context invalidation listener lost its connection; reconnecting");
            after_a_gap = true;
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    })
}

/// Listens until the connection fails for good; evicts everything when it starts `after_a_gap`
/// and whenever `PgListener` had to reconnect on its own.
async fn listen(pool: &PgPool, loaders: &ContextLoaders, budgets: &BudgetWatcher, after_a_gap: bool) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(CHANNEL).await {
        return error;
    }
    // Only now: a change committed from here on is notified, so evicting here misses nothing.
    if after_a_gap {
        tracing::info!(
            channel = CHANNEL,
            "listening again for context changes; evicting every cached context (changes meanwhile were not notified)"
        );
        loaders.invalidate_all();
    } else {
        tracing::info!(channel = CHANNEL, "listening for context changes");
    }
    loop {
        let notification = match listener.try_recv().await {
            Ok(Some(notification)) => notification,
            // The connection dropped and `PgListener` has listened again on a new one.
            Ok(None) => {
                tracing::warn!(
                    channel = CHANNEL,
                    "context invalidation listener reconnected; evicting every cached context (changes meanwhile were not notified)"
                );
                loaders.invalidate_all();
                continue;
            }
            Err(error) => return error,
        };
        match serde_json::from_str::<Change>(notification.payload()).ok().and_then(|c| Some((UserId::parse(&c.user_id).ok()?, c.table))) {
            Some((user, table)) => {
                tracing::debug!(%user, table = table.as_deref().unwrap_or("?"), "context changed; evicting");
                loaders.invalidate(&user);
                if matches!(table.as_deref(), Some("expenses" | "budgets")) {
                    budgets.changed(user);
                }
            }
            None => tracing::warn!(payload = notification.payload(), "ignoring a malformed pam_context_changed payload"),
        }
    }
}
