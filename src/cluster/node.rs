//! Node identity and liveness on Redis: every `PAM_NODE_TTL_MS / 3` the node writes its JSON to
//! `{p}:node:{id}` (expiring after `PAM_NODE_TTL_MS`) and its expiry into the `{p}:nodes` index, so
//! a killed node disappears within the TTL; a drained node removes itself at once. The heartbeat
//! is also what notices that Redis lost this node (restart, flush, an outage past the TTL), missed
//! presence writes or did not answer a heartbeat, and re-syncs: new incarnation, every user's
//! count written again, and a push catch-up for every socket (`catch_up.rs`). The registration is
//! written past an open breaker too (a probe): the heartbeat that gets through closes it.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{KeysInterface, LuaInterface};
use pam_actors::{BoxFuture, NodeLiveness, SharedUnavailable, UserSlots};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};

use super::catch_up::{CatchUp, Reason};
use super::presence::PRESENCE_REFRESH;
use super::{Op, RedisShared, scripts};

impl NodeLiveness for RedisShared {
    fn boot(&self) -> &str {
        &self.boot
    }

    fn may_be_answering<'a>(
        &'a self,
        id: &'a str,
        boot: Option<&'a str>,
        accepted_ago: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
        Box::pin(async move {
            match (self.registration(id).await?, boot) {
                // Registered under another boot id: restarted, so not the incarnation that accepted it.
                (Some(info), Some(boot)) if !info.boot.is_empty() => Ok(info.boot == boot),
                (Some(_), _) => Ok(true),
                (None, _) => Ok(accepted_ago < self.node_ttl),
            }
        })
    }
}

/// How long the drain waits for the deregistration.
const DEREGISTER_TIMEOUT: Duration = Duration::from_millis(500);

/// What a node says about itself in `{p}:node:{id}` (and `/api/v1/monitoring/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// The process's boot id: with `id`, the incarnation turns and streams are owned by.
    #[serde(default)]
    pub boot: String,
    /// Changes when this node re-syncs its presence (its fields of an older one stop counting).
    pub incarnation: String,
    /// RFC 3339, when the process started.
    pub started_at: String,
    /// The bound listen address.
    pub address: String,
    /// Authenticated sockets on the node, and the users holding them.
    pub sockets: usize,
    pub users: usize,
    /// RFC 3339, this heartbeat.
    pub heartbeat_at: String,
}

impl RedisShared {
    fn node_key(&self) -> String {
        self.key(&format!("node:{}", self.node))
    }

    fn index_key(&self) -> String {
        self.key("nodes")
    }

    /// Writes this node's registration; `true` when it already held this incarnation.
    async fn register(&self, slots: &UserSlots, started_at: &str, address: &str) -> Result<bool, SharedUnavailable> {
        let (sockets, users) = slots.totals();
        let info = NodeInfo {
            id: self.node.clone(),
            boot: self.boot.clone(),
            incarnation: self.incarnation(),
            started_at: started_at.to_string(),
            address: address.to_string(),
            sockets,
            users,
            heartbeat_at: pam_actors::iso_now(),
        };
        let json = serde_json::to_string(&info).expect("node info serialises");
        let args = vec![json, info.incarnation, self.node_ttl.as_millis().to_string(), self.node.clone()];
        let ours: i64 =
            self.probing(Op::Heartbeat, self.client.eval(scripts::HEARTBEAT, vec![self.node_key(), self.index_key()], args)).await?;
        Ok(ours == 1)
    }

    /// Every live node, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, SharedUnavailable> {
        let found: Vec<String> =
            self.guarded(Op::Nodes, self.client.eval(scripts::NODES, vec![self.index_key()], vec![self.prefix.clone()])).await?;
        let mut nodes: Vec<NodeInfo> = found.iter().filter_map(|json| serde_json::from_str(json).ok()).collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Node `id`'s registration (`{p}:node:{id}`), if it has one.
    async fn registration(&self, id: &str) -> Result<Option<NodeInfo>, SharedUnavailable> {
        let key = self.key(&format!("node:{id}"));
        let found: Option<String> = self.guarded(Op::Nodes, self.client.get(key)).await?;
        Ok(found.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Removes this node's registration (its presence stops counting with it); at shutdown.
    pub async fn deregister(&self) {
        let args = vec![self.incarnation(), self.node.clone()];
        let removed = tokio::time::timeout(
            DEREGISTER_TIMEOUT,
            self.guarded(
                Op::Heartbeat,
                self.client.eval::<i64, _, _, _>(scripts::DEREGISTER, vec![self.node_key(), self.index_key()], args),
            ),
        )
        .await;
        match removed {
            Ok(Ok(_)) => tracing::info!(node = %self.node, "node deregistered from Redis"),
            _ => tracing::warn!(node = %self.node, "could not deregister from Redis; the registration expires by its TTL"),
        }
    }

    /// One heartbeat: register, and re-sync presence when Redis lost this node or missed writes.
    async fn beat(&self, slots: &UserSlots, started_at: &str, address: &str, refresh_due: bool) -> Beat {
        let resync = self.take_resync();
        if resync {
            self.renew_incarnation();
        }
        let ours = match self.register(slots, started_at, address).await {
            Ok(ours) => ours,
            Err(SharedUnavailable) => {
                // A heartbeat that did not get through may still land later (Redis ran it after
                // the timeout, or the client replays it once it reconnects) and re-create a
                // registration Redis had lost as if nothing were lost, leaving this node's
                // presence missing: re-sync at the next one that gets through, whatever it finds.
                self.needs_resync();
                return Beat::Missed;
            }
        };
        let lost = !ours && !resync;
        if lost {
            // Expired or flushed: counts under the old incarnation may be half gone; start over.
            self.renew_incarnation();
            if self.register(slots, started_at, address).await.is_err() {
                self.needs_resync();
                return Beat::Missed;
            }
        }
        if !(resync || lost || refresh_due) {
            return Beat::Registered;
        }
        let snapshot = slots.snapshot();
        let users = snapshot.len();
        let written = self.put_all(snapshot).await;
        if !written {
            return Beat::Registered;
        }
        if resync || lost {
            tracing::info!(node = %self.node, users, lost_registration = lost, "presence re-synced to Redis under a new incarnation");
            return Beat::Resynced;
        }
        Beat::Rewritten
    }
}

/// What one heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    /// Redis did not answer.
    Missed,
    /// Registered; presence needed no rewrite (or the rewrite failed and is marked for the next).
    Registered,
    /// Registered, and every user's count written (the periodic refresh).
    Rewritten,
    /// Registered, and every user's count written after Redis had lost this node or missed one
    /// of its writes: until now other nodes may not have sent pushes here.
    Resynced,
}

/// Registers the node now and every `PAM_NODE_TTL_MS / 3`, until aborted. After a re-sync
/// `catch_up` reads again for every socket: pushes published while this node was missing from its
/// users' presence went to no node.
pub fn spawn_heartbeat(
    shared: Arc<RedisShared>,
    slots: Arc<UserSlots>,
    address: String,
    catch_up: Arc<CatchUp>,
) -> tokio::task::JoinHandle<()> {
    let started_at = pam_actors::iso_now();
    let period = (shared.node_ttl / 3).max(Duration::from_millis(50));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refreshed = Instant::now();
        let mut announced = false;
        loop {
            ticks.tick().await;
            let beat = shared.beat(&slots, &started_at, &address, refreshed.elapsed() >= PRESENCE_REFRESH).await;
            if matches!(beat, Beat::Rewritten | Beat::Resynced) {
                refreshed = Instant::now();
            }
            if beat == Beat::Resynced {
                catch_up.all(Reason::Presence);
            }
            if beat != Beat::Missed && !announced {
                announced = true;
                tracing::info!(node = %shared.node, ttl_ms = shared.node_ttl.as_millis() as u64, "node registered in Redis");
            }
        }
    })
}
