//! Ports: every trait the actors need from the world, one file per area, each with the data it
//! exchanges. The gateway's adapters implement them (databases, Redis, model providers, the JWT
//! verifier). A leaf: imports only `pam-protocol`, and nothing else in the crate.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod auth;
mod budget_alerts;
mod cluster;
mod context;
mod conversations;
mod llm;
mod notifications;
mod outbox_journal;
mod stream_store;

pub use auth::{AuthError, Authenticator, Identity};
pub use budget_alerts::BudgetAlertStore;
pub use cluster::{NodeLiveness, PushBus, PushOutcome, PushStats, SharedPresence, SharedRateLimit, SharedUnavailable, SocketCount};
pub use context::{
    CacheLookup, CategorySpend, ContextCache, ContextKind, ContextStore, EventSummary, FillToken, FinancialContext, Friend, ProfileContext,
    SocialContext,
};
pub use conversations::{
    AbandonCause, AbandonedTurn, AnswerRecord, ConversationStore, StoredAnswer, StoredTurn, TurnKey, UnansweredMark, UserMessage, UserSaved,
};
pub use llm::{HistoryMessage, LlmError, LlmProvider, LlmReply, LlmRequest};
pub use notifications::{
    CLAIM_HOLD, DueClaim, Inserted, NewNotification, Notification, NotificationKind, NotificationStore, TIMER_REDELIVERY, WAITING_ALERTS,
    WAITING_BYTES_PER_KIND, WAITING_TIMERS, payload_bytes, waiting_batch,
};
pub use outbox_journal::{OutboxJournal, PendingWrite};
pub use stream_store::{Claim, ClaimedStream, Orphans, StoredFrame, StreamStore, StreamWrite, TurnMark};

/// A boxed, sendable future (trait objects cannot return `impl Future`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time (retrying may work).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database refused this record itself (a data or constraint error): retrying the
    /// same record cannot succeed, so it must not wait in the outbox ahead of good turns.
    #[error("storage refused the record: {0}")]
    Rejected(String),
}

/// A store call that takes longer counts as failed: a hung connection is unavailable (every
/// write is idempotent and rolls back when dropped, so giving up on it is safe).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(5);
