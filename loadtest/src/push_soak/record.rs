//! What one `push-soak` socket did: who it belonged to, where and why it was opened, how it
//! ended, and every push id it read (the ledger), with the first read's time. Filled by
//! `sockets`, read by `report` and `dump`.

use std::collections::HashMap;

use super::plan::Dialect;

/// How a socket ended up.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fate {
    /// Connected and reading at the freeze.
    Live,
    BlackHoled,
    Reset,
    /// The server closed it (code; `None` when the connection dropped without a close frame).
    Closed(Option<u16>),
}

/// Why a socket was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    First,
    Comeback,
    AfterClose,
}

/// A push's first read on one socket (for delivery times).
#[derive(Debug, Clone)]
pub(super) struct FirstRead {
    pub(super) id: String,
    pub(super) micros: u64,
    pub(super) wall_ms: i64,
    /// A timer's `fire_at` (Unix ms), from the frame.
    pub(super) fire_at_ms: Option<i64>,
}

/// What one socket did.
#[derive(Debug, Clone)]
pub(super) struct SocketRecord {
    pub(super) user: String,
    pub(super) dialect: Dialect,
    pub(super) node: usize,
    pub(super) connected_micros: u64,
    pub(super) connected_wall_ms: i64,
    /// When it was disrupted, closed, or frozen.
    pub(super) ended_wall_ms: i64,
    pub(super) fate: Fate,
    /// Why it was opened: the user's first socket, a comeback after a disruption, or a
    /// reconnect after the server closed the previous one.
    pub(super) origin: Origin,
    pub(super) reads: HashMap<String, u32>,
    pub(super) first_reads: Vec<FirstRead>,
    /// Every push read, in order, with its v2 `seq`.
    pub(super) order: Vec<(String, Option<u64>)>,
    /// v2 comeback: `Some(Ok)` resumed, `Some(Err(reason))` resume_failed.
    pub(super) resume: Option<Result<(), String>>,
    pub(super) chats_sent: u64,
    pub(super) chats_answered: u64,
    pub(super) acks_sent: u64,
    pub(super) error_codes: Vec<String>,
}
