//! `ConnectionSupervisor`: the parent of every `ConnectionActor`. Spawns them linked, keeps
//! their outbound handles so a connection that crashes still gets close 1011 with a reason,
//! counts them, and drains them all with 1012 on shutdown. Children are never restarted.

use std::collections::HashMap;
use std::sync::Arc;

use pam_protocol::CloseCode;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::admission::{AuthFailureThrottle, UserSlots};
use crate::cluster::PushBus;
use crate::connection::{ConnectionActor, ConnectionArgs, ConnectionMsg};
use crate::context_loader::ContextLoaders;
use crate::metrics_names::WS_CLOSED_TOTAL;
use crate::outbound::{CloseRequest, Outbound};
use crate::outbox::TurnOutbox;
use crate::ports::{Authenticator, ConversationStore, LlmProvider};
use crate::rate_limit::ChatRateLimit;
use crate::resume::ResumeBuffer;
use crate::running_turns::RunningTurns;
use crate::settings::ConnectionSettings;
use crate::turn::TurnPipeline;

/// What every connection shares.
pub struct ConnectionDeps {
    pub settings: ConnectionSettings,
    pub authenticator: Arc<dyn Authenticator>,
    pub llm: Arc<dyn LlmProvider>,
    pub store: Arc<dyn ConversationStore>,
    /// Turns whose storage failed, waiting for the database.
    pub outbox: Arc<TurnOutbox>,
    pub loaders: ContextLoaders,
    /// The per-user chat rate limit (socket and REST), across nodes when Redis is set.
    pub rate_limiter: ChatRateLimit,
    /// Per-user socket slots (across nodes when Redis is set) and this node's user → sockets registry.
    pub user_slots: Arc<UserSlots>,
    /// Reaches every socket of a user on every node that holds one.
    pub push: Arc<dyn PushBus>,
    /// Stored pushes and timers, delivered on connect.
    pub notifications: Arc<dyn crate::notifications::NotificationStore>,
    /// Sends a connecting user's stored pushes, one user at a time.
    pub stored_pushes: crate::connection::StoredPushDelivery,
    pub auth_throttle: AuthFailureThrottle,
    /// v2 sessions that outlive their sockets, for `resume`.
    pub resume: Arc<ResumeBuffer>,
    /// Every turn this node has read and not finished (sockets and REST).
    pub running: Arc<RunningTurns>,
    /// This node's name (`PAM_NODE_ID`).
    pub node: Arc<str>,
    /// Which other nodes are alive (with Redis); `None` on a single node.
    pub liveness: Option<Arc<dyn crate::cluster::NodeLiveness>>,
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

pub struct ConnectionSupervisor;

/// Counts for health and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    pub live: usize,
    pub crashed_total: u64,
}

pub enum SupervisorMsg {
    /// Spawns a connection actor for an accepted socket.
    Open(ConnectionArgs, RpcReplyPort<Result<ActorRef<ConnectionMsg>, String>>),
    /// Tells every connection to drain; replies with how many were told.
    Drain(RpcReplyPort<usize>),
    Stats(RpcReplyPort<SupervisorStats>),
    /// The shared keepalive tick, fanned out to every connection.
    Tick,
}

struct Child {
    conn_id: String,
    outbound: Outbound,
}

pub struct SupervisorState {
    children: HashMap<ActorId, (ActorRef<ConnectionMsg>, Child)>,
    crashed_total: u64,
    /// Once draining, sockets that were still upgrading are told to drain as they open.
    draining: bool,
    /// One keepalive timer for all connections (a timer task per socket costs idle memory),
    /// started with the first connection, which brings the tick period.
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for ConnectionSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, _args: ()) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState { children: HashMap::new(), crashed_total: 0, draining: false, ticker: None })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Open(args, reply) => {
                let _ = reply.send(state.open(&myself, args).await);
            }
            SupervisorMsg::Drain(reply) => {
                state.draining = true;
                for (actor, _) in state.children.values() {
                    let _ = actor.cast(ConnectionMsg::Drain);
                }
                let _ = reply.send(state.children.len());
            }
            SupervisorMsg::Stats(reply) => {
                let _ = reply.send(SupervisorStats { live: state.children.len(), crashed_total: state.crashed_total });
            }
            SupervisorMsg::Tick => {
                for (actor, _) in state.children.values() {
                    let _ = actor.cast(ConnectionMsg::Tick);
                }
            }
        }
        Ok(())
    }

    /// Whatever is still open when the supervisor stops gets 1012, never a silent drop.
    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        for (actor, child) in state.children.values() {
            if child.outbound.close(CloseRequest::from_table(CloseCode::ServiceRestart, "")) {
                metrics::counter!(WS_CLOSED_TOTAL, "code" => "1012").increment(1);
                crate::monitor::ws().closed(1012, tokio::time::Instant::now());
            }
            actor.stop(None);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some((_, child)) = state.children.remove(&cell.get_id()) {
                    state.crashed_total += 1;
                    tracing::error!(conn_id = %child.conn_id, %error, "connection actor failed; closing its socket with 1011");
                    if child.outbound.close(CloseRequest::from_table(CloseCode::InternalError, "internal error: connection handler failed"))
                    {
                        metrics::counter!(WS_CLOSED_TOTAL, "code" => "1011").increment(1);
                        crate::monitor::ws().closed(1011, tokio::time::Instant::now());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn open(&mut self, myself: &ActorRef<SupervisorMsg>, args: ConnectionArgs) -> Result<ActorRef<ConnectionMsg>, String> {
        if self.ticker.is_none() {
            self.ticker = Some(myself.send_interval(args.deps.settings.tick_period(), || SupervisorMsg::Tick));
        }
        let child = Child { conn_id: args.conn_id.clone(), outbound: args.outbound.clone() };
        let (actor, _) = Actor::spawn_linked(None, ConnectionActor, args, myself.get_cell()).await.map_err(|e| e.to_string())?;
        if self.draining {
            let _ = actor.cast(ConnectionMsg::Drain);
        }
        self.children.insert(actor.get_id(), (actor.clone(), child));
        Ok(actor)
    }
}
