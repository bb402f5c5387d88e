//! Presence on Redis: each node's socket count per user in `{p}:presence:{user}` (field
//! `{node}/{incarnation}`, value `"{count}:{version}"`), the cross-node cap check-and-set in one
//! script, and the re-sync that rewrites this node's counts after Redis missed some.
//!
//! Why versions and incarnations: a node writes its absolute count after every local change, and
//! writes race (a socket closing while another opens), so a late write with an older version is
//! ignored. A write that failed (Redis down, breaker open) marks the node for a re-sync; the
//! next heartbeat that reaches Redis starts a new incarnation — every field of the old one stops
//! counting at once, including counts of users whose last socket closed meanwhile — and writes
//! every user's count again. A crashed node's fields stop counting when its registration
//! expires (`PAM_NODE_TTL_MS`): the TTL heals its counts without a write per user per heartbeat.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::LuaInterface;
use pam_actors::{BoxFuture, SharedPresence, SharedUnavailable, SocketCount};
use pam_protocol::UserId;

use super::{Op, RedisShared, scripts};

/// How long a presence hash outlives its last write: longer than `PRESENCE_REFRESH`, so a socket
/// held for days keeps counting, and a user who left is forgotten an hour later.
const PRESENCE_TTL: Duration = Duration::from_secs(3_600);
/// How often every user's count of this node is written again (which also renews the hashes).
pub(super) const PRESENCE_REFRESH: Duration = Duration::from_secs(20 * 60);
/// Users per re-sync script call.
const RESYNC_BATCH: usize = 200;

/// Where a user's sockets are, across live nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence {
    /// Sockets on all nodes.
    pub sockets: usize,
    /// Node id and its sockets of the user, by node id.
    pub nodes: Vec<(String, usize)>,
}

impl RedisShared {
    pub(super) fn presence_key(&self, user: &UserId) -> String {
        self.key(&format!("presence:{user}"))
    }

    fn ttl_ms() -> String {
        PRESENCE_TTL.as_millis().to_string()
    }

    /// The user's sockets on every live node.
    pub async fn presence(&self, user: &UserId) -> Result<UserPresence, SharedUnavailable> {
        let flat: Vec<String> = self
            .guarded(Op::Presence, self.client.eval(scripts::PRESENCE, vec![self.presence_key(user)], vec![self.prefix.clone()]))
            .await?;
        let mut nodes: Vec<(String, usize)> =
            flat.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].parse().unwrap_or(0))).filter(|(_, n)| *n > 0).collect();
        nodes.sort();
        Ok(UserPresence { sockets: nodes.iter().map(|(_, n)| n).sum(), nodes })
    }

    /// Writes every count of `snapshot` under the current incarnation; `false` if any write failed.
    pub(super) async fn put_all(&self, snapshot: Vec<(UserId, SocketCount)>) -> bool {
        let field = self.field();
        for batch in snapshot.chunks(RESYNC_BATCH) {
            let keys: Vec<String> = batch.iter().map(|(user, _)| self.presence_key(user)).collect();
            let mut args = vec![field.clone(), Self::ttl_ms()];
            for (_, now) in batch {
                args.extend([now.count.to_string(), now.version.to_string()]);
            }
            let stored: Result<i64, _> = self.guarded(Op::Presence, self.client.eval(scripts::PUT, keys, args)).await;
            if stored.is_err() {
                self.needs_resync();
                return false;
            }
        }
        true
    }

    /// Takes the re-sync mark (set again if the re-sync fails).
    pub(super) fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::AcqRel)
    }

    /// Starts a new incarnation: every presence field of this node written before stops counting
    /// once the next registration names it.
    pub(super) fn renew_incarnation(&self) {
        *self.incarnation.lock().unwrap_or_else(|p| p.into_inner()) = super::new_incarnation();
    }
}

impl SharedPresence for RedisShared {
    fn acquire<'a>(&'a self, user: &'a UserId, now: SocketCount, cap: usize) -> BoxFuture<'a, Result<bool, SharedUnavailable>> {
        Box::pin(async move {
            let args =
                vec![self.prefix.clone(), self.field(), now.count.to_string(), now.version.to_string(), cap.to_string(), Self::ttl_ms()];
            let answer: Result<Vec<i64>, _> =
                self.guarded(Op::Presence, self.client.eval(scripts::ACQUIRE, vec![self.presence_key(user)], args)).await;
            match answer.as_deref() {
                Ok([stored, _]) => Ok(*stored == 1),
                Ok(_) | Err(_) => {
                    // Admitted on this node's count alone: Redis may not hold it.
                    self.needs_resync();
                    Err(SharedUnavailable)
                }
            }
        })
    }

    fn put<'a>(&'a self, user: &'a UserId, now: SocketCount) -> BoxFuture<'a, Result<(), SharedUnavailable>> {
        Box::pin(async move {
            let args = vec![self.field(), Self::ttl_ms(), now.count.to_string(), now.version.to_string()];
            let stored: Result<i64, _> =
                self.guarded(Op::Presence, self.client.eval(scripts::PUT, vec![self.presence_key(user)], args)).await;
            stored.map(drop).inspect_err(|_| self.needs_resync())
        })
    }
}
