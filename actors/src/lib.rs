//! The actor layer of pam-gateway: the `ConnectionSupervisor`, one `ConnectionActor` per socket,
//! a lazily started `OrchestratorActor` per chatting connection (it owns the connection's turns),
//! the context-loader actors, the turn pipeline, and the ports (traits) they need from the outside
//! world. Knows nothing of axum, sqlx or fred.
//!
//! Every module is private: the re-exports below are the contract the gateway builds on (the
//! ports it implements, the actors it spawns, the handles it wires), plus the public
//! [`metrics_names`], the metric names it describes.
//!
//! Layers, each importing only those above it: `ports`, `metrics_names`, `settings` and small
//! utilities; `outbound`, `ws_monitor`; `turn/` input and `messages/connection`; `admission/`,
//! `stream/`, `push`, `bus`, `context_loader`; the rest of `turn/`; `messages/orchestrator`,
//! `deps`; the actors (`orchestrator`, `connection/`, `supervisor`).

#![warn(missing_docs)]

mod admission;
mod bounded_map;
mod budget_alerts;
mod bus;
mod connection;
mod context_loader;
mod deps;
mod log_limit;
mod messages;
pub mod metrics_names;
mod orchestrator;
mod outbound;
mod ports;
mod push;
mod settings;
mod stream;
mod supervisor;
pub mod trace;
mod turn;
mod ws_monitor;

// The ports the gateway implements, with the data they exchange.
pub use ports::{
    AbandonCause, AbandonedTurn, AnswerRecord, AuthError, Authenticator, BoxFuture, BudgetAlertStore, CLAIM_HOLD, CacheLookup,
    CategorySpend, Claim, ClaimedStream, ContextCache, ContextKind, ContextStore, ConversationStore, DueClaim, EventSummary, FillToken,
    FinancialContext, Friend, HistoryMessage, Identity, Inserted, LlmError, LlmProvider, LlmReply, LlmRequest, NewNotification,
    NodeLiveness, Notification, NotificationKind, NotificationStore, Orphans, OutboxJournal, PendingWrite, ProfileContext, PushBus,
    PushOutcome, PushStats, STORE_TIMEOUT, SharedPresence, SharedRateLimit, SharedUnavailable, SocialContext, SocketCount, StoreError,
    StoredAnswer, StoredFrame, StoredTurn, StreamStore, StreamWrite, TIMER_REDELIVERY, TurnKey, TurnMark, UnansweredMark, UserMessage,
    UserSaved, WAITING_ALERTS, WAITING_BYTES_PER_KIND, WAITING_TIMERS, payload_bytes, waiting_batch,
};

// The actors and what the gateway sends them.
pub use connection::{ConnectionArgs, iso_now};
pub use context_loader::{ContextLoaderActor, ContextLoaderArgs, ContextLoaderMsg, ContextLoaders};
pub use messages::connection::{ConnectionMsg, Inbound};
pub use supervisor::{ConnectionSupervisor, SupervisorMsg, SupervisorStats};

// What the actors are built from.
pub use admission::{AuthFailureThrottle, ChatRateLimit, Gcra, UserSlots};
pub use bus::{LocalPushBus, PushCounters};
pub use deps::ConnectionDeps;
pub use outbound::{CloseRequest, OutFrame, Outbound, OutboundReceiver, WriterEvent};
pub use settings::ConnectionSettings;
pub use stream::{MAX_DETACHED_STREAMS_PER_USER, MAX_RESUMABLE_STREAMS, ResumeBuffer, ResumeLimits};
pub use turn::{RunningTurns, TurnAnswer, TurnFailure, TurnInput, TurnOrigin, TurnOutbox, TurnPipeline};

// Pushes, budget alerts and the WebSocket monitor.
pub use budget_alerts::{ALERT_TTL, BudgetAlert, BudgetSpend, alerts_for};
pub use push::{StoredPushDelivery, push_frame};
pub use ws_monitor::{WsMonitor, WsSnapshot, ws_monitor};
