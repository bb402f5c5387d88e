//! The end of `push-soak`: what the clients read (every push id each socket actually read — the
//! ledger) compared with what the database says (`pam_notifications` of the run's users). Pure
//! functions over plain data, so every must-hold is unit-tested:
//!
//! - (a) *marked delivered without receipt*: a row with `delivered_at` that no socket of its user
//!   read. A socket only reads while it is live (a black-holed one stops reading), so "read" is
//!   "read by a live socket".
//! - (b) *alerts missing*: an alert the push route accepted (202 with an id) that has no row, or an
//!   alert row (push or budget alert, not dismissed) marked delivered that no socket of its user
//!   read — an alert is either read by a socket or still waits undelivered.
//! - (c) *doubled*: one id read twice on the same socket; read on several sockets of the same user
//!   (a reconnect after a socket died unproven) is allowed and counted apart.
//! - *stranded*: a fired row still undelivered although its user has a socket that was live and
//!   settled at the end and never read it (what waits for a user reaches the user's live socket).
//! - *read, unmarked*: a row a live socket read and still undelivered at the end (its proof got lost).

use std::collections::{HashMap, HashSet};

/// The two kinds of stored push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Alert,
    Timer,
}

/// One socket's reads, as its client recorded them.
#[derive(Debug, Clone, Default)]
pub(super) struct SocketReads {
    pub(super) user: String,
    /// Still connected and reading at the end (not black-holed, reset or closed), and connected
    /// early enough that everything waiting had time to reach it.
    pub(super) settled: bool,
    /// Push id → how many times this socket read it.
    pub(super) reads: HashMap<String, u32>,
}

/// A row of `pam_notifications` for a user of the run, at the end.
#[derive(Debug, Clone, Default)]
pub(super) struct StoredPush {
    pub(super) id: String,
    pub(super) user: String,
    pub(super) kind: Option<Kind>,
    pub(super) delivered: bool,
    pub(super) dismissed: bool,
    pub(super) fired: bool,
    pub(super) expired: bool,
    /// `budget:{budget}:{month}:{threshold}` for a budget alert.
    pub(super) dedupe_key: Option<String>,
}

impl StoredPush {
    /// Fired, not dismissed, not expired: it should reach its user.
    fn due(&self) -> bool {
        self.fired && !self.dismissed && !self.expired
    }
}

/// The figures of the comparison.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Audit {
    pub(super) rows: u64,
    pub(super) due_alerts: u64,
    pub(super) due_timers: u64,
    pub(super) delivered: u64,
    pub(super) undelivered: u64,
    /// Undelivered rows of users with no live socket at the end: they wait for the next connect.
    pub(super) waiting_for_absent_users: u64,
    pub(super) expired_undelivered: u64,
    /// Distinct ids read, and frames read in all.
    pub(super) ids_read: u64,
    pub(super) frames_read: u64,
    /// (a), with up to 5 examples.
    pub(super) delivered_without_receipt: u64,
    /// (b): accepted without a row plus delivered alert rows nobody read.
    pub(super) alerts_missing: u64,
    pub(super) accepted_without_row: u64,
    /// (c): (socket, id) pairs read more than once.
    pub(super) doubled_same_socket: u64,
    /// Ids read on more than one socket of their user (allowed).
    pub(super) read_on_several_sockets: u64,
    pub(super) stranded: u64,
    pub(super) read_unmarked: u64,
    /// Reads of ids that are no row of the run's users, or a row of another user.
    pub(super) strays: u64,
    pub(super) examples: Vec<String>,
}

/// Compares the ledger with the rows. `accepted` are the ids the push route answered 202 with.
pub(super) fn audit(sockets: &[SocketReads], rows: &[StoredPush], accepted: &HashSet<String>) -> Audit {
    let mut a = Audit::default();
    // id → (user, sockets that read it, of them live and settled)
    let mut readers: HashMap<&str, Vec<&SocketReads>> = HashMap::new();
    for socket in sockets {
        for (id, &count) in &socket.reads {
            a.frames_read += u64::from(count);
            if count > 1 {
                a.doubled_same_socket += 1;
                a.example(format!("read {count} times on one socket: {id} of {}", socket.user));
            }
            readers.entry(id.as_str()).or_default().push(socket);
        }
    }
    a.ids_read = readers.len() as u64;
    let settled_users: HashSet<&str> = sockets.iter().filter(|s| s.settled).map(|s| s.user.as_str()).collect();
    let by_id: HashMap<&str, &StoredPush> = rows.iter().map(|row| (row.id.as_str(), row)).collect();
    a.rows = rows.len() as u64;
    a.accepted_without_row = accepted.iter().filter(|id| !by_id.contains_key(id.as_str())).count() as u64;
    a.alerts_missing = a.accepted_without_row;
    for (id, who) in &readers {
        let own = by_id.get(id).is_some_and(|row| who.iter().all(|s| s.user == row.user));
        a.strays += u64::from(!own);
        a.read_on_several_sockets += u64::from(who.len() > 1);
    }
    for row in rows {
        let who: Vec<&SocketReads> =
            readers.get(row.id.as_str()).map(|w| w.iter().copied().filter(|s| s.user == row.user).collect()).unwrap_or_default();
        let due = row.due();
        a.due_alerts += u64::from(due && row.kind == Some(Kind::Alert));
        a.due_timers += u64::from(due && row.kind == Some(Kind::Timer));
        if row.delivered {
            a.delivered += 1;
            if who.is_empty() {
                a.delivered_without_receipt += 1;
                a.example(format!("delivered, never read: {} ({:?}) of {}", row.id, row.kind, row.user));
                if row.kind == Some(Kind::Alert) && !row.dismissed {
                    a.alerts_missing += 1;
                }
            }
            continue;
        }
        if row.expired && row.fired && !row.dismissed {
            a.expired_undelivered += 1;
        }
        if !due {
            continue;
        }
        a.undelivered += 1;
        if !settled_users.contains(row.user.as_str()) {
            a.waiting_for_absent_users += 1;
        } else if who.iter().any(|s| s.settled) {
            a.read_unmarked += 1;
            a.example(format!("read by a live socket, still undelivered: {} ({:?}) of {}", row.id, row.kind, row.user));
        } else {
            a.stranded += 1;
            a.example(format!("undelivered, never read by the live socket: {} ({:?}) of {}", row.id, row.kind, row.user));
        }
    }
    a
}

impl Audit {
    fn example(&mut self, text: String) {
        if self.examples.len() < 8 {
            self.examples.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(user: &str, settled: bool, ids: &[&str]) -> SocketReads {
        let mut reads = HashMap::new();
        for id in ids {
            *reads.entry(id.to_string()).or_insert(0) += 1;
        }
        SocketReads { user: user.into(), settled, reads }
    }

    fn row(id: &str, user: &str, kind: Kind, delivered: bool) -> StoredPush {
        StoredPush { id: id.into(), user: user.into(), kind: Some(kind), delivered, fired: true, ..StoredPush::default() }
    }

    fn accepted(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn everything_read_and_marked_is_clean() {
        let sockets = [socket("u1", true, &["a", "t"]), socket("u2", true, &["b"])];
        let rows = [row("a", "u1", Kind::Alert, true), row("t", "u1", Kind::Timer, true), row("b", "u2", Kind::Alert, true)];
        let a = audit(&sockets, &rows, &accepted(&["a", "b"]));
        assert_eq!((a.delivered, a.undelivered, a.ids_read, a.frames_read), (3, 0, 3, 3));
        let violations = (a.delivered_without_receipt, a.alerts_missing, a.doubled_same_socket, a.stranded, a.read_unmarked, a.strays);
        assert_eq!(violations, (0, 0, 0, 0, 0, 0));
    }

    #[test]
    fn a_row_marked_delivered_that_no_socket_of_its_user_read_is_a_violation_and_an_alert_is_missing() {
        // "b" was read, but by another user's socket; "t" by nobody.
        let sockets = [socket("u1", true, &["a"]), socket("u2", true, &["b"])];
        let rows = [row("a", "u1", Kind::Alert, true), row("b", "u1", Kind::Alert, true), row("t", "u1", Kind::Timer, true)];
        let a = audit(&sockets, &rows, &accepted(&["a", "b"]));
        assert_eq!(a.delivered_without_receipt, 2);
        assert_eq!(a.alerts_missing, 1, "the timer is no alert");
        assert_eq!(a.strays, 1, "u2 read u1's push");
    }

    #[test]
    fn a_read_by_a_socket_that_later_died_counts_as_receipt() {
        let sockets = [socket("u1", false, &["a"])];
        let a = audit(&sockets, &[row("a", "u1", Kind::Alert, true)], &accepted(&["a"]));
        assert_eq!((a.delivered_without_receipt, a.alerts_missing), (0, 0));
    }

    #[test]
    fn an_accepted_push_without_a_row_is_missing() {
        let a = audit(&[], &[row("a", "u1", Kind::Alert, false)], &accepted(&["a", "gone"]));
        assert_eq!((a.accepted_without_row, a.alerts_missing), (1, 1));
    }

    #[test]
    fn undelivered_rows_wait_for_absent_users_and_are_stranded_beside_a_live_socket() {
        let sockets = [socket("away", false, &[]), socket("here", true, &["r"])];
        let rows = [row("w", "away", Kind::Alert, false), row("s", "here", Kind::Timer, false), row("r", "here", Kind::Alert, false)];
        let a = audit(&sockets, &rows, &accepted(&["w", "r"]));
        assert_eq!((a.undelivered, a.waiting_for_absent_users, a.stranded, a.read_unmarked), (3, 1, 1, 1));
        assert_eq!((a.delivered_without_receipt, a.alerts_missing), (0, 0), "waiting is no violation");
    }

    #[test]
    fn a_socket_connected_too_late_to_settle_strands_nothing() {
        let mut late = socket("u1", true, &[]);
        late.settled = false;
        let a = audit(&[late], &[row("a", "u1", Kind::Alert, false)], &accepted(&["a"]));
        assert_eq!((a.stranded, a.waiting_for_absent_users), (0, 1));
    }

    #[test]
    fn twice_on_one_socket_is_doubled_and_on_two_sockets_is_only_counted() {
        let sockets = [socket("u1", false, &["a", "a", "b"]), socket("u1", true, &["b"])];
        let rows = [row("a", "u1", Kind::Alert, true), row("b", "u1", Kind::Alert, true)];
        let a = audit(&sockets, &rows, &accepted(&["a", "b"]));
        assert_eq!((a.doubled_same_socket, a.read_on_several_sockets, a.frames_read, a.ids_read), (1, 1, 4, 2));
    }

    #[test]
    fn dismissed_unfired_and_expired_rows_are_not_due() {
        let mut superseded = row("s", "u1", Kind::Alert, false);
        superseded.dismissed = true;
        let mut pending = row("p", "u1", Kind::Timer, false);
        pending.fired = false;
        let mut old = row("o", "u1", Kind::Alert, false);
        old.expired = true;
        let a = audit(&[socket("u1", true, &[])], &[superseded, pending, old], &accepted(&[]));
        assert_eq!((a.due_alerts, a.due_timers, a.undelivered, a.stranded, a.expired_undelivered), (0, 0, 0, 0, 1));
    }

    #[test]
    fn a_dismissed_alert_marked_delivered_unread_still_breaks_receipt_but_is_not_missing() {
        let mut row = row("s", "u1", Kind::Alert, true);
        row.dismissed = true;
        let a = audit(&[], &[row], &accepted(&[]));
        assert_eq!((a.delivered_without_receipt, a.alerts_missing), (1, 0));
    }
}
