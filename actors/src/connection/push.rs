//! Server pushes on a socket: `timer_expired` and `proactive_alert` from the push bus, and the
//! stored ones a user gets on connect. v2 sockets get them numbered through the stream
//! (replayable); legacy sockets get them as they are, but never while a chat is unanswered —
//! today's client would take the first frame with a truthy `message`/`content` for its answer —
//! so they wait and follow its `chat_response`, in order. A push id is sent at most once per
//! socket (the bus and the stored copy may both bring it). A push is marked delivered only once
//! the client proved it has it (`receipts`): a push queued, held or sent to a socket that then
//! goes silent or closes comes again on the next connect. A push from the bus is timed from
//! when it was due to when it is sent (`pam_push_delivery_seconds{kind}`, held time included).
//! Part of the connection actor; imports the push frames' metrics and the outbound queue.

use std::collections::VecDeque;

use pam_protocol::{CloseCode, ErrorCode, PushFrame, ServerFrame, V2Frame};
use ractor::ActorRef;

use super::receipts::{PongKind, Proof, ProofPings, Receipts};
use super::{ConnectionState, unix_millis};
use crate::messages::connection::ConnectionMsg;
use crate::metrics_names::{PUSH_DELIVERY_SECONDS, PUSH_PROVEN_TOTAL, PUSH_UNPROVEN_TOTAL, count_frame};
use crate::outbound::{OutFrame, SendError};

/// Bytes of pushes a legacy socket holds back behind an unanswered chat. Past it, later pushes
/// are kept by id only (they are all in storage first) and read back by id right after the
/// answer, so they still follow it in arrival order.
pub(super) const MAX_HELD_BYTES: usize = 256 * 1024;
/// Ids kept past the held bytes (~40 bytes each); past these too, a push is left to the next
/// connect (which sends what waits, per kind, in its own order).
const MAX_OVERFLOW_IDS: usize = 1024;
/// How long a v2 socket's stored pushes wait after its welcome for the client's `resume`
/// (today's SDK sends it right after the welcome, one network round trip later).
const STORED_AFTER_WELCOME: std::time::Duration = std::time::Duration::from_secs(1);
/// Push ids remembered per socket to drop repeats.
const MAX_SEEN: usize = 256;

/// Per-socket push state.
#[derive(Default)]
pub(super) struct PushState {
    /// Legacy: pushes waiting for the running chat's `chat_response`, in arrival order.
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Legacy: ids of pushes that came after the held bytes were used up, in arrival order.
    overflow: VecDeque<String>,
    /// Legacy: the overflow is being read back from storage; pushes keep being held until it is sent.
    reading_overflow: bool,
    /// Ids sent on this socket, newest last.
    seen: VecDeque<String>,
    /// Pushes sent and not yet proven received.
    receipts: Receipts,
}

/// A push a legacy socket holds back behind an unanswered chat.
struct Held {
    text: String,
    id: Option<String>,
    timing: Option<Timing>,
}

/// What a push's delivery is timed by: its kind and when it was due.
type Timing = (&'static str, chrono::DateTime<chrono::Utc>);

/// When `frame` was due: an alert's `timestamp`, a timer's `fire_at`.
fn timing(frame: &PushFrame) -> Option<Timing> {
    let (kind, at) = match frame {
        PushFrame::TimerExpired(timer) => ("timer_expired", &timer.fire_at),
        PushFrame::ProactiveAlert(alert) => ("proactive_alert", &alert.timestamp),
    };
    let at = chrono::DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&chrono::Utc);
    Some((kind, at))
}

/// Records a sent push's delivery time (never negative: another node's clock may be ahead).
fn record_delivery(timing: Option<Timing>) {
    if let Some((kind, due)) = timing {
        let seconds = (chrono::Utc::now() - due).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        metrics::histogram!(PUSH_DELIVERY_SECONDS, "kind" => kind).record(seconds.max(0.0));
    }
}

impl ConnectionState {
    /// A push for this socket's user (one frame's JSON text); `live` when it came over the bus
    /// (timed), not from the store on connect.
    pub(super) fn on_push(&mut self, myself: &ActorRef<ConnectionMsg>, text: String, live: bool) {
        if self.user.is_none() {
            return;
        }
        let parsed = serde_json::from_str::<PushFrame>(&text).ok();
        let id = parsed.as_ref().map(|frame| push_id(frame).to_string());
        let timing = if live { parsed.as_ref().and_then(timing) } else { None };
        if let Some(id) = &id {
            if self.pushes.seen.iter().any(|seen| seen == id) {
                return;
            }
            if self.pushes.seen.len() >= MAX_SEEN {
                self.pushes.seen.pop_front();
            }
            self.pushes.seen.push_back(id.clone());
        }
        if self.v2.is_some() {
            match parsed {
                Some(frame) => {
                    // Into the stream: sent now, or replayed on `resume`.
                    let seq = self.send_v2_numbered(myself, V2Frame::from(frame));
                    record_delivery(timing);
                    self.await_proof(myself, id, seq);
                }
                None => tracing::warn!(conn_id = %self.conn_id, "a push that is no push frame was not sent to a v2 socket"),
            }
            return;
        }
        if !self.in_flight.is_empty() || self.pushes.reading_overflow {
            return self.hold(Held { text, id, timing });
        }
        self.send_push_text(myself, Held { text, id, timing });
    }

    /// Legacy: keeps a push for after the running chat's answer — whole within the held bytes,
    /// by id past them (everything after the first push kept by id is kept by id, to keep order).
    fn hold(&mut self, held: Held) {
        let fits = self.pushes.overflow.is_empty() && self.pushes.held_bytes + held.text.len() <= MAX_HELD_BYTES;
        if fits {
            self.pushes.held_bytes += held.text.len();
            return self.pushes.held.push_back(held);
        }
        let Some(id) = held.id else { return };
        // Not sent on this socket yet: the copy read back by id must not be dropped as a repeat.
        self.pushes.seen.retain(|seen| *seen != id);
        if self.pushes.overflow.len() < MAX_OVERFLOW_IDS {
            if self.pushes.overflow.is_empty() {
                tracing::info!(conn_id = %self.conn_id, held = self.pushes.held.len(), "pushes held behind a chat passed their bytes; the rest are kept by id and read back after the answer");
            }
            self.pushes.overflow.push_back(id);
        } else {
            metrics::counter!(PUSH_UNPROVEN_TOTAL, "reason" => "overflow").increment(1);
            tracing::warn!(conn_id = %self.conn_id, id, "too many pushes held behind a chat; this one comes on the next connect");
        }
    }

    /// Legacy: sends what waited for the chat that just got its answer, in order; what passed
    /// the held bytes is read back by id and follows (anything newer is held until it has).
    pub(super) fn release_held_pushes(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if !self.in_flight.is_empty() || self.pushes.reading_overflow {
            return;
        }
        while let Some(held) = self.pushes.held.pop_front() {
            self.send_push_text(myself, held);
        }
        self.pushes.held_bytes = 0;
        if let (false, Some(user)) = (self.pushes.overflow.is_empty(), self.user.clone()) {
            self.pushes.reading_overflow = true;
            let ids = std::mem::take(&mut self.pushes.overflow).into();
            self.deps.stored_pushes.request_ids(user, myself.clone(), self.conn_id.clone(), ids);
        }
    }

    /// Legacy: the overflow read back from storage, in arrival order; then what was held meanwhile.
    pub(super) fn on_held_from_store(&mut self, myself: &ActorRef<ConnectionMsg>, texts: Vec<String>) {
        self.pushes.reading_overflow = false;
        for text in texts {
            let id = serde_json::from_str::<PushFrame>(&text).ok().map(|frame| push_id(&frame).to_string());
            if let Some(id) = &id {
                if self.pushes.seen.contains(id) {
                    continue;
                }
                if self.pushes.seen.len() >= MAX_SEEN {
                    self.pushes.seen.pop_front();
                }
                self.pushes.seen.push_back(id.clone());
            }
            self.send_push_text(myself, Held { text, id, timing: None });
        }
        self.release_held_pushes(myself);
    }

    fn send_push_text(&mut self, myself: &ActorRef<ConnectionMsg>, Held { text, id, timing }: Held) {
        match self.outbound.send(OutFrame::Text(text)) {
            Ok(()) => {
                count_frame("out", "push");
                record_delivery(timing);
                self.await_proof(myself, id, None);
            }
            Err(SendError::Full) => self.close(myself, CloseCode::SlowConsumer, ""),
            Err(SendError::Closed) => {}
        }
    }

    /// A push went out: it waits for its proof, and a ping follows it promptly (one at a time:
    /// pushes sent in a burst share it).
    fn await_proof(&mut self, myself: &ActorRef<ConnectionMsg>, id: Option<String>, seq: Option<u64>) {
        let Some(id) = id else { return };
        if self.pushes.receipts.sent(id, seq) {
            let _ = myself.cast(ConnectionMsg::ProofPing);
        }
        let forgotten = self.pushes.receipts.take_forgotten();
        if forgotten > 0 {
            metrics::counter!(PUSH_UNPROVEN_TOTAL, "reason" => "overflow").increment(forgotten);
        }
    }

    /// The proof ping this socket asked itself for.
    pub(super) fn on_proof_ping(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if self.pushes.receipts.take_ping_due() {
            self.send_pings(myself, false);
        }
    }

    /// Pings carrying one token; their pongs prove the pushes sent before them. `keepalive`
    /// pings are a JSON ping and a WebSocket ping and also count the socket's missed pongs; a
    /// proof ping is the kinds the client answers (`Receipts::proof_pings`).
    pub(super) fn send_pings(&mut self, myself: &ActorRef<ConnectionMsg>, keepalive: bool) {
        let token = self.pushes.receipts.next_token(u64::try_from(unix_millis()).unwrap_or_default());
        let kinds = if keepalive {
            self.phase.pinged(tokio::time::Instant::now());
            ProofPings { json: true, websocket: true }
        } else {
            self.pushes.receipts.proof_pings()
        };
        // The JSON ping travels like every frame (on v2, behind a running replay); a WebSocket
        // ping goes straight into the socket's queue, so during a v2 replay it carries no token.
        if kinds.json {
            self.send(myself, ServerFrame::Ping { timestamp: i64::try_from(token).unwrap_or(i64::MAX) });
        }
        let overtakes = self.v2.as_ref().and_then(|v2| v2.stream.as_ref()).is_some_and(|stream| stream.replaying());
        self.pushes.receipts.pinged(token, kinds.json || !overtakes);
        if kinds.websocket && self.outbound.send(OutFrame::Ping(if overtakes { 0 } else { token })).is_ok() {
            count_frame("out", "ws_ping");
        }
    }

    /// A pong of `kind` echoing `token`.
    pub(super) fn on_pong(&mut self, token: Option<u64>, kind: PongKind) {
        if let Some(token) = token {
            let proven = self.pushes.receipts.ponged(token, kind);
            self.proven(proven, Proof::Pong);
        }
    }

    /// v2 `ack`: the client holds every frame up to `seq`.
    pub(super) fn on_ack(&mut self, seq: u64) {
        let proven = self.pushes.receipts.acked(seq);
        self.proven(proven, Proof::Ack);
    }

    /// v2 `resume` took over a stream from `last_seq`: the pushes its ring holds at or before that
    /// position are proven; the ones after it are being replayed and wait for their own proof.
    pub(super) fn resumed_pushes(&mut self, myself: &ActorRef<ConnectionMsg>, pushes: Vec<(u64, String)>, last_seq: u64) {
        let (held, replayed): (Vec<_>, Vec<_>) = pushes.into_iter().partition(|(seq, _)| *seq <= last_seq);
        self.proven(held.into_iter().map(|(_, id)| id).collect(), Proof::Resume);
        for (seq, id) in replayed {
            if !self.pushes.seen.contains(&id) {
                if self.pushes.seen.len() >= MAX_SEEN {
                    self.pushes.seen.pop_front();
                }
                self.pushes.seen.push_back(id.clone());
            }
            self.await_proof(myself, Some(id), Some(seq));
        }
    }

    /// Marks proven pushes delivered, through the same queue as the stored-push reads (a
    /// reconnect right after reads them as delivered).
    fn proven(&self, ids: Vec<String>, proof: Proof) {
        let Some(user) = self.user.clone().filter(|_| !ids.is_empty()) else { return };
        metrics::counter!(PUSH_PROVEN_TOTAL, "proof" => proof.label()).increment(ids.len() as u64);
        for id in ids {
            self.deps.stored_pushes.delivered(user.clone(), id, self.conn_id.clone());
        }
    }

    /// The socket is ending: what it sent without proof stays undelivered for the next connect.
    pub(super) fn count_unproven(&self) {
        let unproven = self.pushes.receipts.unproven() + self.pushes.held.len() + self.pushes.overflow.len();
        if unproven > 0 {
            metrics::counter!(PUSH_UNPROVEN_TOTAL, "reason" => "closed").increment(unproven as u64);
            tracing::debug!(conn_id = %self.conn_id, unproven, "pushes sent without proof of receipt stay undelivered");
        }
    }

    /// v2 `dismiss`: the user's push `id` is dismissed (a fired timer stops being re-sent). No
    /// reply when it was; an error frame with the id when the user has no such push.
    pub(super) async fn on_dismiss(&mut self, myself: &ActorRef<ConnectionMsg>, id: String) {
        let Some(user) = self.user.clone() else { return };
        if id.len() > 64 {
            return self.send_v2(myself, V2Frame::error(None, ErrorCode::ValidationError, "'id' is at most 64 characters"));
        }
        match self.deps.notifications.dismiss(&user, &id).await {
            Ok(true) => {}
            Ok(false) => self.send_v2(myself, V2Frame::error(Some(id), ErrorCode::ValidationError, "no such push to dismiss")),
            Err(error) => {
                tracing::warn!(conn_id = %self.conn_id, %error, "dismiss failed");
                self.send_v2(myself, V2Frame::error(Some(id), ErrorCode::StorageUnavailable, "the dismissal could not be stored; retry"));
            }
        }
    }

    /// v2, after the welcome: the stored pushes wait until the client resumed (or failed to), sent
    /// another frame, or `STORED_AFTER_WELCOME` passed. Sent on the fresh stream first, a push the
    /// resumed stream then replays would reach the same socket twice (with two seqs); after the
    /// resume, the pushes its replay carries are known here and the stored read skips them.
    pub(super) fn hold_stored_for_resume(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if let Some(v2) = self.v2.as_mut() {
            v2.stored_waiting = true;
            myself.send_after(STORED_AFTER_WELCOME, || ConnectionMsg::StoredDue);
        }
    }

    /// v2: the stored pushes held for the resume decision go now (once).
    pub(super) fn release_stored(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if let Some(v2) = self.v2.as_mut().filter(|v2| v2.stored_waiting) {
            v2.stored_waiting = false;
            self.deliver_stored(myself);
        }
    }

    /// After authentication: what is stored for the user (undelivered alerts, fired timers not
    /// dismissed) comes as pushes (marked delivered once proven received). A failing
    /// database only delays them to the next connect.
    pub(super) fn deliver_stored(&self, myself: &ActorRef<ConnectionMsg>) {
        let Some(user) = self.user.clone() else { return };
        self.deps.stored_pushes.request(user, myself.clone(), self.conn_id.clone());
    }
}

fn push_id(frame: &PushFrame) -> &str {
    match frame {
        PushFrame::TimerExpired(timer) => &timer.id,
        PushFrame::ProactiveAlert(alert) => &alert.id,
    }
}
