//! Storage on the gateway's database (`DATABASE_URL`: Postgres or SQLite): opening it
//! (`open.rs`: connect, migrate, the schema doctor; `pooler.rs`: what a connection pooler in
//! front of Postgres allows; `postgres_pool.rs`: the pool that keeps each statement on one server
//! connection behind a transaction pooler), the conversation rows every turn is stored in
//! (`conversations.rs`, `conversation_rows.rs`) and their history read back for clients
//! (`conversation_history.rs`), the turns given up on without an answer, counted for Prometheus
//! (`abandoned_turns.rs`), the user's PAM preferences (`preferences.rs`), the
//! demo traveller (`demo_seed.rs`), and the outbox's journal and flusher for turns the database
//! could not take in time. Context rows are read by `crate::context`, pushes and budgets are
//! stored by `crate::push`; both use this folder's `Database` and `sql` helpers.
//! Imports settings and observability only.

pub mod abandoned_turns;
pub mod conversation_history;
pub mod conversation_rows;
pub mod conversations;
pub mod database;
pub mod demo_seed;
mod open;
pub mod outbox_flusher;
pub mod outbox_journal;
mod pooler;
pub mod postgres_pool;
pub mod preferences;
pub mod schema_doctor;
pub(crate) mod sql;

pub use database::Database;
pub use open::Opened;
