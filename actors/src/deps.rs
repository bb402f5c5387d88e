//! `ConnectionDeps`: the dependency bag every connection shares (settings, ports, limits, the
//! stream registry, the turn pipeline's parts), built once by the gateway. A leaf above the
//! parts it holds; no actor is imported here.

use std::sync::Arc;

use crate::admission::{AuthFailureThrottle, ChatRateLimit, UserSlots};
use crate::context_loader::ContextLoaders;
use crate::ports::{Authenticator, ConversationStore, LlmProvider, NodeLiveness, NotificationStore, PushBus};
use crate::push::StoredPushDelivery;
use crate::settings::ConnectionSettings;
use crate::stream::ResumeBuffer;
use crate::turn::{RunningTurns, TurnOutbox, TurnPipeline};

/// What every connection shares.
pub struct ConnectionDeps {
    /// Limits and deadlines every connection obeys.
    pub settings: ConnectionSettings,
    /// Verifies access tokens.
    pub authenticator: Arc<dyn Authenticator>,
    /// Answers the turns.
    pub llm: Arc<dyn LlmProvider>,
    /// Stores the turns.
    pub store: Arc<dyn ConversationStore>,
    /// Turns whose storage failed, waiting for the database.
    pub outbox: Arc<TurnOutbox>,
    /// Profile, financial and social context for the prompt.
    pub loaders: ContextLoaders,
    /// The per-user chat rate limit (socket and REST), across nodes when Redis is set.
    pub rate_limiter: ChatRateLimit,
    /// Per-user socket slots (across nodes when Redis is set) and this node's user → sockets registry.
    pub user_slots: Arc<UserSlots>,
    /// Reaches every socket of a user on every node that holds one.
    pub push_bus: Arc<dyn PushBus>,
    /// Stored pushes and timers, delivered on connect.
    pub notifications: Arc<dyn NotificationStore>,
    /// Sends a connecting user's stored pushes, one user at a time.
    pub stored_pushes: StoredPushDelivery,
    /// Turns away addresses that keep failing authentication.
    pub auth_throttle: AuthFailureThrottle,
    /// v2 streams that outlive their sockets, for `resume`.
    pub resume: Arc<ResumeBuffer>,
    /// Every turn this node has read and not finished (sockets and REST).
    pub running: Arc<RunningTurns>,
    /// This node's name (`PAM_NODE_ID`).
    pub node: Arc<str>,
    /// Which other nodes are alive (with Redis); `None` on a single node.
    pub liveness: Option<Arc<dyn NodeLiveness>>,
}

impl ConnectionDeps {
    /// The turn pipeline over these dependencies (cheap: clones of shared handles).
    pub fn pipeline(&self) -> TurnPipeline {
        TurnPipeline {
            llm: self.llm.clone(),
            store: self.store.clone(),
            outbox: self.outbox.clone(),
            loaders: self.loaders.clone(),
            llm_timeout: self.settings.llm_timeout,
            running: self.running.clone(),
            node: self.node.clone(),
            liveness: self.liveness.clone(),
            turn_lifetime: self.settings.turn_lifetime(),
        }
    }
}
