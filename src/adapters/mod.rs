//! Adapters: the real implementations of the actors' ports (models, storage, cache).

pub mod builtin;
pub mod builtin_context;
pub mod context_store;
pub mod conversations;
pub mod database;
pub mod demo_seed;
pub mod invalidation;
pub mod outbox_flusher;
pub mod redis_cache;
pub mod schema_doctor;
