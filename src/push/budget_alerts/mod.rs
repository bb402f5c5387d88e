//! Budget alerts: the store that reads a user's budgets and month-to-date spend and records each
//! alert once (`store.rs`), and the watcher that evaluates the budgets of users whose expenses or
//! budgets changed (`watcher.rs`).

pub mod store;
pub mod watcher;
