//! The actor layer of pam-gateway: the `ConnectionSupervisor`, one `ConnectionActor` per socket,
//! a lazily started `OrchestratorActor` per chatting connection, and the ports (traits) they
//! need from the outside world. Knows nothing of axum, sqlx or fred.

pub mod admission;
mod bounded_map;
pub mod budget_alerts;
mod bus;
pub mod connection;
pub mod context_loader;
mod deps;
pub mod log_limit;
mod messages;
pub mod metrics_names;
pub mod orchestrator;
pub mod outbound;
pub mod ports;
mod push;
pub mod settings;
pub mod stream;
pub mod supervisor;
pub mod turn;
mod ws_monitor;

pub use admission::{AuthFailureThrottle, ChatRateLimit, Gcra, RateLimiter, UserSlot, UserSlots};
pub use budget_alerts::{BudgetAlert, BudgetSpend};
pub use bus::LocalPushBus;
pub use connection::{ConnectionActor, ConnectionArgs, ConnectionPhase, Keepalive};
pub use deps::ConnectionDeps;
pub use messages::connection::{ConnectionMsg, Inbound};
pub use outbound::{CloseRequest, OutFrame, Outbound, OutboundReceiver, SendError, WriterEvent};
pub use ports::{
    AnswerRecord, AuthError, Authenticator, BoxFuture, BudgetAlertStore, CacheLookup, CategorySpend, Claim, ClaimedStream, ContextCache,
    ContextKind, ContextStore, ConversationStore, EventSummary, FillToken, FinancialContext, Friend, HistoryMessage, Identity, Inserted,
    LlmError, LlmProvider, LlmReply, LlmRequest, NewNotification, NodeLiveness, Notification, NotificationKind, NotificationStore,
    ProfileContext, PushBus, PushOutcome, PushStats, SharedPresence, SharedRateLimit, SharedUnavailable, SocialContext, SocketCount,
    StoreError, StoredAnswer, StoredFrame, StoredTurn, StreamStore, StreamWrite, TIMER_REDELIVERY, TurnKey, TurnMark, UnansweredMark,
    UserMessage, UserSaved,
};
pub use settings::ConnectionSettings;
pub use stream::{ResumableStream, ResumeBuffer, ResumeLimits};
pub use supervisor::{ConnectionSupervisor, SupervisorMsg, SupervisorStats};
pub use turn::{RunningTurns, TurnAnswer, TurnFailure, TurnInput, TurnOrigin, TurnPipeline};

// Transitional: the gateway's old paths, removed once it follows the root re-exports.
#[doc(hidden)]
pub mod cluster {
    pub use crate::bus::PushCounters;
    pub use crate::metrics_names::{PUSH_DELIVERED_TOTAL, PUSH_PUBLISHED_TOTAL, PUSH_RECEIVED_TOTAL};
}
#[doc(hidden)]
pub mod outbox {
    pub use crate::metrics_names::{
        OUTBOX_JOURNALED_TOTAL, OUTBOX_REPLAYED_TOTAL, OUTBOX_SPILLED_TOTAL, STORAGE_DEGRADED, TURNS_DROPPED_TOTAL, TURNS_PENDING,
    };
    pub use crate::ports::{OutboxJournal, PendingWrite, STORE_TIMEOUT};
    pub use crate::turn::TurnOutbox;
}
#[doc(hidden)]
pub mod running_turns {
    pub use crate::metrics_names::{TURNS_ABANDONED_TOTAL, TURNS_ACCEPTED_TOTAL, TURNS_RUNNING};
}
#[doc(hidden)]
pub mod stream_store {
    pub use crate::metrics_names::{STREAM_STORE_DEGRADED, STREAM_WRITES_TOTAL};
}
#[doc(hidden)]
pub mod monitor {
    pub use crate::ws_monitor::ws_monitor as ws;
    pub const WINDOW: std::time::Duration = crate::ws_monitor::WsMonitor::WINDOW;
}
#[doc(hidden)]
pub mod notifications {
    pub use crate::push::push_frame;
}
