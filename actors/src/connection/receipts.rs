//! Proof of receipt for server pushes on one socket. A push that entered the socket's queue is
//! not delivered yet: a phone that left coverage sends no FIN, and everything queued until the
//! pong timeout would count as delivered and never come again. So each push sent is kept here,
//! unproven, until the client shows it has it — a pong (JSON `pong` echoing the `timestamp`, or
//! a WebSocket Pong echoing the payload) to a ping the server sent after it, or a v2 `ack` (or a
//! `resume` position) at or past its `seq`. Only then is it marked delivered; a socket that goes
//! silent or closes first leaves it undelivered for the next connect.
//!
//! Pings carry a token (Unix milliseconds, strictly increasing per socket) so a pong proves
//! exactly the pushes sent before the ping it answers; a pong whose token this socket never sent
//! (a client echoing its own clock) proves nothing. Tokens and pushes are kept in send order, so
//! every proof releases a prefix of the list.
//!
//! A proof ping is a JSON ping plus a WebSocket ping with one token until the client has answered
//! one of them; from then on it is only the kind the client answers (JSON preferred: it is the
//! application's own answer), so a push costs one ping out and one pong in, not two of each.
//! Keepalive pings stay both kinds.
//! A leaf of the connection actor: plain bookkeeping, no I/O.

use std::collections::VecDeque;

/// Unproven pushes kept per socket; past it the oldest is forgotten (it stays undelivered in
/// storage and comes again on the next connect — the safe direction).
pub(super) const MAX_UNPROVEN: usize = 256;
/// Ping tokens remembered per socket (a pong answers one of the latest).
const MAX_PINGS: usize = 16;

/// A push sent on this socket, waiting for its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unproven {
    id: String,
    /// v2: the frame's `seq` (an `ack` at or past it proves it).
    seq: Option<u64>,
    /// The token of the first ping sent after it, once one was.
    ping: Option<u64>,
}

/// How a push was proven (the metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proof {
    Pong,
    Ack,
    Resume,
}

/// Which kind of pong answered a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PongKind {
    /// A JSON `pong` frame echoing the ping's `timestamp`.
    Json,
    /// An RFC 6455 Pong echoing the ping's payload.
    WebSocket,
}

/// The pings a proof sends (the kinds this client has shown it answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProofPings {
    pub(super) json: bool,
    pub(super) websocket: bool,
}

impl Proof {
    pub(super) fn label(self) -> &'static str {
        match self {
            Proof::Pong => "pong",
            Proof::Ack => "ack",
            Proof::Resume => "resume",
        }
    }
}

/// The unproven pushes of one socket and the pings that may prove them.
#[derive(Debug, Default)]
pub(super) struct Receipts {
    unproven: VecDeque<Unproven>,
    /// Tokens of the latest pings sent, oldest first.
    pings: VecDeque<u64>,
    /// A proof ping is on its way to this actor's mailbox.
    ping_queued: bool,
    /// Pushes forgotten because the list was full.
    forgotten: u64,
    /// The newest token a pong answered (its ping's other pong carries it too).
    last_answered: Option<u64>,
    /// The client answered a ping of ours with a JSON pong / a WebSocket Pong.
    answers_json: bool,
    answers_websocket: bool,
}

impl Receipts {
    /// A push `id` went into the socket's queue (v2: as frame `seq`). Returns `true` when a
    /// proof ping should be scheduled (none is queued yet).
    pub(super) fn sent(&mut self, id: String, seq: Option<u64>) -> bool {
        if self.unproven.len() >= MAX_UNPROVEN {
            self.unproven.pop_front();
            self.forgotten += 1;
        }
        self.unproven.push_back(Unproven { id, seq, ping: None });
        !std::mem::replace(&mut self.ping_queued, true)
    }

    /// The queued proof ping arrived: `true` when a push still waits for a ping after it.
    pub(super) fn take_ping_due(&mut self) -> bool {
        self.ping_queued = false;
        self.unproven.back().is_some_and(|last| last.ping.is_none())
    }

    /// The token for the next ping: `now_ms`, or just past the previous token.
    pub(super) fn next_token(&self, now_ms: u64) -> u64 {
        self.pings.back().map_or(now_ms, |last| now_ms.max(last + 1))
    }

    /// A ping with `token` went out; when `covers`, it follows every push sent so far in the
    /// socket's order (a v2 WebSocket ping sent while a replay is still queued does not).
    pub(super) fn pinged(&mut self, token: u64, covers: bool) {
        if self.pings.len() >= MAX_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back(token);
        if covers {
            for push in self.unproven.iter_mut().rev() {
                if push.ping.is_some() {
                    break;
                }
                push.ping = Some(token);
            }
        }
    }

    /// The pings a proof ping is made of: what the client answers, both until it is known.
    pub(super) fn proof_pings(&self) -> ProofPings {
        match (self.answers_json, self.answers_websocket) {
            (true, _) => ProofPings { json: true, websocket: false },
            (false, true) => ProofPings { json: false, websocket: true },
            (false, false) => ProofPings { json: true, websocket: true },
        }
    }

    /// A pong of `kind` echoed `token`: the pushes sent before that ping are proven.
    pub(super) fn ponged(&mut self, token: u64, kind: PongKind) -> Vec<String> {
        if self.last_answered == Some(token) {
            // The second pong of a ping both kinds carried: it proves nothing new, but it says
            // the client answers this kind too.
            self.learn(kind);
            return Vec::new();
        }
        if !self.pings.contains(&token) {
            return Vec::new();
        }
        self.learn(kind);
        self.last_answered = Some(token);
        self.pings.retain(|sent| *sent > token);
        self.release_while(|push| push.ping.is_some_and(|ping| ping <= token))
    }

    fn learn(&mut self, kind: PongKind) {
        match kind {
            PongKind::Json => self.answers_json = true,
            PongKind::WebSocket => self.answers_websocket = true,
        }
    }

    /// v2: the client holds every frame up to `seq`.
    pub(super) fn acked(&mut self, seq: u64) -> Vec<String> {
        self.release_while(|push| push.seq.is_some_and(|pushed| pushed <= seq))
    }

    fn release_while(&mut self, proven: impl Fn(&Unproven) -> bool) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(push) = self.unproven.front().filter(|push| proven(push)) {
            ids.push(push.id.clone());
            self.unproven.pop_front();
        }
        ids
    }

    /// How many pushes are unproven (the socket closing leaves them undelivered).
    pub(super) fn unproven(&self) -> usize {
        self.unproven.len()
    }

    /// Pushes forgotten since the last call because the list was full.
    pub(super) fn take_forgotten(&mut self) -> u64 {
        std::mem::take(&mut self.forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pong_proves_only_the_pushes_sent_before_its_ping() {
        let mut receipts = Receipts::default();
        assert!(receipts.sent("a".into(), None), "the first push asks for a ping");
        assert!(!receipts.sent("b".into(), None), "one ping queued at a time");
        assert!(receipts.take_ping_due());
        let token = receipts.next_token(1_000);
        receipts.pinged(token, true);
        assert!(receipts.sent("c".into(), None));
        assert_eq!(receipts.ponged(token, PongKind::Json), ["a", "b"]);
        assert_eq!(receipts.unproven(), 1, "c was sent after the ping");
        assert_eq!(receipts.ponged(token, PongKind::Json), Vec::<String>::new(), "a token proves once");
    }

    #[test]
    fn a_pong_with_a_token_never_sent_proves_nothing() {
        let mut receipts = Receipts::default();
        receipts.sent("a".into(), None);
        receipts.pinged(receipts.next_token(5_000), true);
        assert!(receipts.ponged(9_999, PongKind::Json).is_empty(), "a client echoing its own clock");
        assert!(receipts.ponged(4_999, PongKind::Json).is_empty());
        assert_eq!(receipts.unproven(), 1);
    }

    #[test]
    fn tokens_increase_even_within_one_millisecond() {
        let mut receipts = Receipts::default();
        let first = receipts.next_token(7);
        receipts.pinged(first, false);
        let second = receipts.next_token(7);
        assert!(second > first);
        receipts.pinged(second, false);
        assert!(receipts.next_token(3) > second, "a clock stepping back");
    }

    #[test]
    fn a_ping_that_may_overtake_queued_frames_proves_nothing() {
        let mut receipts = Receipts::default();
        receipts.sent("a".into(), Some(4));
        let token = receipts.next_token(10);
        receipts.pinged(token, false);
        assert!(receipts.ponged(token, PongKind::Json).is_empty());
        assert!(receipts.take_ping_due(), "the push still needs a ping after it");
    }

    #[test]
    fn proof_pings_shrink_to_the_kind_the_client_answers() {
        let mut receipts = Receipts::default();
        assert_eq!(receipts.proof_pings(), ProofPings { json: true, websocket: true }, "unknown: both");
        receipts.sent("a".into(), None);
        assert!(receipts.ponged(77, PongKind::WebSocket).is_empty(), "a token never sent teaches nothing");
        assert_eq!(receipts.proof_pings(), ProofPings { json: true, websocket: true });
        let token = receipts.next_token(100);
        receipts.pinged(token, true);
        assert_eq!(receipts.ponged(token, PongKind::WebSocket), ["a"]);
        assert_eq!(receipts.proof_pings(), ProofPings { json: false, websocket: true }, "a client that only answers Pongs");
        assert!(receipts.ponged(token, PongKind::Json).is_empty(), "the same ping's other pong proves nothing new");
        assert_eq!(receipts.proof_pings(), ProofPings { json: true, websocket: false }, "JSON, the application's own answer, is preferred");
    }

    #[test]
    fn an_ack_proves_the_pushes_up_to_its_seq() {
        let mut receipts = Receipts::default();
        for (id, seq) in [("a", 3), ("b", 7), ("c", 9)] {
            receipts.sent(id.into(), Some(seq));
        }
        assert_eq!(receipts.acked(2), Vec::<String>::new());
        assert_eq!(receipts.acked(8), ["a", "b"]);
        assert_eq!(receipts.acked(9), ["c"]);
    }

    #[test]
    fn the_list_is_bounded_and_forgets_the_oldest() {
        let mut receipts = Receipts::default();
        for i in 0..MAX_UNPROVEN + 3 {
            receipts.sent(format!("p{i}"), None);
        }
        assert_eq!(receipts.unproven(), MAX_UNPROVEN);
        assert_eq!(receipts.take_forgotten(), 3);
        receipts.pinged(receipts.next_token(1), true);
        let proven = receipts.ponged(1, PongKind::Json);
        assert_eq!(proven.first().map(String::as_str), Some("p3"), "the oldest three were forgotten, not proven");
    }
}
