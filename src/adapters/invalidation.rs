//! Listens for `NOTIFY pam_context_changed` (sent by the table triggers in the Postgres
//! migrations) and evicts the named user's cached context, so the next chat sees the change.

use std::time::Duration;

use pam_actors::context_loader::ContextLoaders;
use pam_protocol::UserId;
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

pub const CHANNEL: &str = "pam_context_changed";
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
struct Change {
    table: Option<String>,
    user_id: String,
}

/// Runs until aborted; reconnects (with a log line) when the listening connection drops.
pub fn spawn_listener(pool: PgPool, loaders: ContextLoaders) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&pool, &loaders).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "context invalidation listener lost its connection; reconnecting"),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    })
}

async fn listen(pool: &PgPool, loaders: &ContextLoaders) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    tracing::info!(channel = CHANNEL, "listening for context changes");
    loop {
        let notification = listener.recv().await?;
        match serde_json::from_str::<Change>(notification.payload()).ok().and_then(|c| Some((UserId::parse(&c.user_id).ok()?, c.table))) {
            Some((user, table)) => {
                tracing::debug!(%user, table = table.as_deref().unwrap_or("?"), "context changed; evicting");
                loaders.invalidate(&user);
            }
            None => tracing::warn!(payload = notification.payload(), "ignoring a malformed pam_context_changed payload"),
        }
    }
}
