//! What a v2 client saw, counted against what the protocol promises: every server frame's `seq`
//! is one more than the last (per stream), a resume replays the frames after `last_seq` without
//! repeating one, and every chat ends with exactly one `chat_end` whose `message` is the text of
//! its `chat_delta`s. Pure bookkeeping (no sockets), so the `failover` scenario's must-holds —
//! frames lost and frames repeated — are unit-tested here.

use std::collections::HashMap;

/// The seqs of one v2 stream as they arrive.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SeqLedger {
    last: Option<u64>,
    /// Set between a `resume` and its `resumed`: replayed frames may skip seqs the server never
    /// buffers (pings, pongs, the `resumed`/`resume_failed` of other sockets), so only repeats count.
    replaying: bool,
    /// Seqs missing from the live flow.
    pub(crate) lost: u64,
    /// Seqs at or below one already seen.
    pub(crate) repeated: u64,
}

impl SeqLedger {
    /// Records one frame's `seq`.
    pub(crate) fn observe(&mut self, seq: u64) {
        match self.last {
            Some(last) if seq <= last => self.repeated += 1,
            Some(last) => {
                if !self.replaying {
                    self.lost += seq - last - 1;
                }
                self.last = Some(seq);
            }
            None => self.last = Some(seq),
        }
    }

    /// The highest seq seen (what a `resume` names as `last_seq`); 0 before any frame.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last.unwrap_or(0)
    }

    /// A `resume` was sent: gaps are allowed until [`SeqLedger::resumed`].
    pub(crate) fn start_replay(&mut self) {
        self.replaying = true;
    }

    /// The `resumed` frame arrived (its own seq already observed): live flow again.
    pub(crate) fn resumed(&mut self) {
        self.replaying = false;
    }
}

/// The chats of one virtual user: sent, ended, and whether each answer arrived whole.
#[derive(Debug, Default)]
pub(crate) struct ChatBook {
    /// Open chat id → the deltas received so far.
    open: HashMap<String, String>,
    ended: HashMap<String, u32>,
    /// Chats whose `chat_end` text is not the deltas received (a delta went missing).
    pub(crate) incomplete: u64,
    /// `chat_end`s beyond the first for one id.
    pub(crate) repeated_ends: u64,
}

impl ChatBook {
    /// A chat was sent (again, after a failed resume: the deltas so far are forgotten, the
    /// server answers the same id from the start or from its store).
    pub(crate) fn sent(&mut self, id: &str) {
        if !self.ended.contains_key(id) {
            self.open.insert(id.to_string(), String::new());
        }
    }

    pub(crate) fn delta(&mut self, id: &str, text: &str) {
        if let Some(so_far) = self.open.get_mut(id) {
            so_far.push_str(text);
        }
    }

    /// A `chat_end`: whole when no delta came (a stored answer replayed as its end alone) or the
    /// deltas add up to `message`.
    pub(crate) fn end(&mut self, id: &str, message: &str) {
        let count = self.ended.entry(id.to_string()).or_insert(0);
        *count += 1;
        if *count > 1 {
            self.repeated_ends += 1;
            return;
        }
        if let Some(deltas) = self.open.remove(id) {
            if !deltas.is_empty() && deltas != message {
                self.incomplete += 1;
            }
        }
    }

    pub(crate) fn ended(&self) -> u64 {
        self.ended.len() as u64
    }

    /// Chats that never got a `chat_end`.
    pub(crate) fn unended(&self) -> u64 {
        self.open.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(seqs: &[u64]) -> SeqLedger {
        let mut ledger = SeqLedger::default();
        seqs.iter().for_each(|&s| ledger.observe(s));
        ledger
    }

    #[test]
    fn a_contiguous_stream_loses_and_repeats_nothing() {
        let l = ledger(&[1, 2, 3, 4, 5]);
        assert_eq!((l.lost, l.repeated, l.last_seq()), (0, 0, 5));
    }

    #[test]
    fn a_gap_counts_every_missing_seq_and_a_seen_seq_counts_as_repeated() {
        let l = ledger(&[1, 2, 5, 6, 6, 3, 7]);
        assert_eq!((l.lost, l.repeated, l.last_seq()), (2, 2, 7));
    }

    #[test]
    fn a_replay_may_skip_unbuffered_seqs_but_not_repeat_and_live_flow_is_strict_again() {
        let mut l = ledger(&[1, 2, 3]);
        l.start_replay();
        for seq in [5, 6, 6, 9] {
            l.observe(seq);
        }
        l.resumed();
        assert_eq!((l.lost, l.repeated), (0, 1));
        l.observe(11);
        assert_eq!(l.lost, 1);
    }

    #[test]
    fn an_empty_stream_resumes_from_zero() {
        assert_eq!(SeqLedger::default().last_seq(), 0);
    }

    #[test]
    fn a_chat_whose_deltas_make_its_end_is_whole() {
        let mut book = ChatBook::default();
        book.sent("a");
        book.delta("a", "Hi ");
        book.delta("a", "there");
        assert_eq!(book.unended(), 1);
        book.end("a", "Hi there");
        assert_eq!((book.incomplete, book.repeated_ends, book.ended(), book.unended()), (0, 0, 1, 0));
    }

    #[test]
    fn a_missing_delta_makes_the_chat_incomplete_and_a_second_end_is_repeated() {
        let mut book = ChatBook::default();
        book.sent("a");
        book.delta("a", "Hi ");
        book.end("a", "Hi there");
        book.end("a", "Hi there");
        assert_eq!((book.incomplete, book.repeated_ends), (1, 1));
    }

    #[test]
    fn a_resent_chat_starts_its_text_over_and_a_stored_answer_may_come_as_its_end_alone() {
        let mut book = ChatBook::default();
        book.sent("a");
        book.delta("a", "Hi ");
        book.sent("a");
        book.end("a", "Hi there");
        book.sent("b");
        assert_eq!((book.incomplete, book.ended(), book.unended()), (0, 1, 1));
        book.sent("a");
        assert_eq!(book.unended(), 1, "an ended chat is not reopened");
    }
}
