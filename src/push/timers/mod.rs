//! Timers and alarms: the domain limits every way of setting one shares (REST routes, the
//! models' `set_timer` tool, the builtin assistant's phrases), the scheduler that fires due
//! timers on every node (`scheduler.rs`), and timers set from chat (`tools.rs`).

use chrono::Duration;

pub mod scheduler;
pub mod tools;

/// Pending (unfired) timers one user may have.
pub const MAX_PENDING_TIMERS: usize = 50;
/// How far ahead a timer may fire.
pub const MAX_TIMER_AHEAD: Duration = Duration::days(30);
