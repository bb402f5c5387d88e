//! The `BudgetAlertStore` port: evaluates a user's budgets against month-to-date spend and stores
//! the alerts earned (the rule itself is `budget_alerts::alerts_for`, free of storage).

use pam_protocol::UserId;

use super::{BoxFuture, Notification, StoreError};

/// Budget evaluation on the gateway's database.
pub trait BudgetAlertStore: Send + Sync + 'static {
    /// Reads `user`'s active budgets with their month-to-date spend and stores every alert they
    /// have earned and not had yet, in one transaction (a dropped future stores none of them).
    /// Returns the alerts stored by this call that are to be sent (superseded ones are stored
    /// dismissed and not returned); an alert another node stored first is not returned.
    fn evaluate<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Vec<Notification>, StoreError>>;
    /// Users whose expenses or budgets changed and wait for an evaluation, each with the version
    /// of its queue entry (SQLite's triggers queue them; Postgres notifies instead and has none).
    fn queued_checks<'a>(&'a self, limit: usize) -> BoxFuture<'a, Result<Vec<(UserId, i64)>, StoreError>>;
    /// Removes `user`'s queue entry if it is still at `version` (a change made meanwhile keeps it).
    fn check_done<'a>(&'a self, user: &'a UserId, version: i64) -> BoxFuture<'a, Result<(), StoreError>>;
}
