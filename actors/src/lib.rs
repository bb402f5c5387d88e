//! The actor layer of pam-gateway: the `ConnectionSupervisor`, one `ConnectionActor` per socket,
//! a lazily started `OrchestratorActor` per chatting connection, and the ports (traits) they
//! need from the outside world. Knows nothing of axum, sqlx or fred.

pub mod admission;
mod bounded_map;
pub mod budget_alerts;
pub mod cluster;
pub mod connection;
pub mod context;
pub mod context_loader;
pub mod log_limit;
pub mod metrics_names;
pub mod monitor;
pub mod notifications;
pub mod orchestrator;
pub mod outbound;
pub mod outbox;
pub mod ports;
pub mod rate_limit;
pub mod resume;
pub mod running_turns;
pub mod settings;
pub mod state;
pub mod stream_store;
pub mod supervisor;
pub mod turn;
pub mod turn_v2;

pub use admission::{AuthFailureThrottle, UserSlot, UserSlots};
pub use budget_alerts::{BudgetAlert, BudgetAlertStore, BudgetSpend};
pub use cluster::{
    LocalPushBus, NodeLiveness, PushBus, PushOutcome, PushStats, SharedPresence, SharedRateLimit, SharedUnavailable, SocketCount,
};
pub use connection::{ConnectionActor, ConnectionArgs, ConnectionMsg, Inbound};
pub use context::{
    CacheLookup, CategorySpend, ContextCache, ContextKind, ContextStore, EventSummary, FillToken, FinancialContext, Friend, ProfileContext,
    SocialContext,
};
pub use notifications::{Inserted, NewNotification, Notification, NotificationKind, NotificationStore, TIMER_REDELIVERY};
pub use outbound::{CloseRequest, OutFrame, Outbound, OutboundReceiver, SendError, WriterEvent};
pub use ports::{
    AnswerRecord, AuthError, Authenticator, BoxFuture, ConversationStore, HistoryMessage, Identity, LlmError, LlmProvider, LlmReply,
    LlmRequest, StoreError, StoredAnswer, StoredTurn, TurnKey, UnansweredMark, UserMessage, UserSaved,
};
pub use rate_limit::{ChatRateLimit, Gcra, RateLimiter};
pub use resume::{ResumeBuffer, ResumeLimits, SessionStream};
pub use running_turns::{RunningTurns, TurnOrigin};
pub use settings::ConnectionSettings;
pub use state::{ConnectionPhase, Keepalive};
pub use stream_store::{Claim, ClaimedStream, StoredFrame, StreamStore, StreamWrite, TurnMark};
pub use supervisor::{ConnectionDeps, ConnectionSupervisor, SupervisorMsg, SupervisorStats};
pub use turn::{TurnAnswer, TurnFailure, TurnInput, TurnPipeline};
