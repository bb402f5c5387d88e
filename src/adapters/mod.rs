//! Adapters: the real implementations of the actors' ports (models, storage, cache).

pub mod breaker;
pub mod budget_alerts;
pub mod budget_watcher;
pub mod builtin;
pub mod builtin_context;
pub mod builtin_timers;
pub mod cluster;
pub mod context_store;
mod conversation_rows;
pub mod conversations;
pub mod database;
pub mod demo_seed;
pub mod invalidation;
pub mod llm;
pub mod notifications;
pub mod outbox_flusher;
pub mod outbox_journal;
pub mod redis_cache;
pub mod schema_doctor;
pub mod settings_store;
pub mod timer_scheduler;
pub mod timer_tools;
