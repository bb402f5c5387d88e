//! `ConnectionSupervisor`: the parent of every `ConnectionActor`. Spawns them linked, keeps
//! their outbound handles so a connection that crashes still gets close 1011 with a reason,
//! counts them, and drains them all with 1012 on shutdown. Children are never restarted.
//! Imports the connection actor, its messages and the outbound queue.

use std::collections::HashMap;

use pam_protocol::CloseCode;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::connection::{ConnectionActor, ConnectionArgs};
use crate::messages::connection::ConnectionMsg;
use crate::metrics_names::WS_CLOSED_TOTAL;
use crate::outbound::{CloseRequest, Outbound};
use crate::ws_monitor::ws_monitor;

/// The parent of every connection actor (stateless: see `SupervisorState`).
pub struct ConnectionSupervisor;

/// Counts for health and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    /// Connections alive now.
    pub live: usize,
    /// Connection actors that failed since the start.
    pub crashed_total: u64,
}

/// What the supervisor is asked.
pub enum SupervisorMsg {
    /// Spawns a connection actor for an accepted socket.
    Open(ConnectionArgs, RpcReplyPort<Result<ActorRef<ConnectionMsg>, String>>),
    /// Tells every connection to drain; replies with how many were told.
    Drain(RpcReplyPort<usize>),
    /// Replies with the counts.
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
                ws_monitor().closed(1012, tokio::time::Instant::now());
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
                        ws_monitor().closed(1011, tokio::time::Instant::now());
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
