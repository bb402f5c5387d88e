//! `DetachedByUser`: each user's detached v2 streams in detach order, so the resume registry
//! bounds them per user (a user over its share loses its own oldest detached stream first) and,
//! when the whole registry is full, evicts from the user holding the most. It only keeps
//! `(detached at, stream id)` entries; whether an entry is still live (its stream still held and
//! detached since then) is the registry's to say, through the `live` check each call is given.
//! A leaf of the stream module.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use pam_protocol::UserId;
use tokio::time::Instant;

/// A detached stream: when it was detached, and its id.
pub(super) type Entry = (Instant, String);

/// How a user ranks for eviction when the registry is full: most entries first, then the oldest.
type Rank = (usize, Reverse<Instant>, UserId);

/// Every user's detached streams, oldest first.
#[derive(Default)]
pub(super) struct DetachedByUser {
    /// Each user's entries in detach order; stale ones (the stream was attached again, detached
    /// again later, or forgotten) stay until the user's queue is next tidied.
    queues: HashMap<UserId, VecDeque<Entry>>,
    /// Every user with entries, by [`Rank`]: the last holds the most. A count may include stale
    /// entries, so it is an upper bound until that user's queue is tidied.
    ranked: BTreeSet<Rank>,
}

fn rank(user: &UserId, queue: &VecDeque<Entry>) -> Option<Rank> {
    queue.front().map(|(at, _)| (queue.len(), Reverse(*at), user.clone()))
}

impl DetachedByUser {
    /// Changes `user`'s queue with `change`, keeping the ranking in step (and the map free of
    /// users with nothing detached).
    fn update<T>(&mut self, user: &UserId, change: impl FnOnce(&mut VecDeque<Entry>) -> T) -> T {
        let queue = self.queues.entry(user.clone()).or_default();
        if let Some(before) = rank(user, queue) {
            self.ranked.remove(&before);
        }
        let out = change(queue);
        match rank(user, queue) {
            Some(after) => {
                self.ranked.insert(after);
            }
            None => {
                self.queues.remove(user);
            }
        }
        out
    }

    /// Records that `user`'s stream `id` was detached at `at`.
    pub(super) fn push(&mut self, user: &UserId, at: Instant, id: String) {
        self.update(user, |queue| queue.push_back((at, id)));
    }

    /// Drops `user`'s stale entries (and repeats of one stream), so the count is exact.
    pub(super) fn tidy(&mut self, user: &UserId, live: impl Fn(&Entry) -> bool) {
        if !self.queues.contains_key(user) {
            return;
        }
        self.update(user, |queue| {
            let mut seen = HashSet::new();
            queue.retain(|entry| live(entry) && seen.insert(entry.1.clone()));
        });
    }

    /// Drops the entries at the front of `user`'s queue that are no longer live (after its
    /// oldest stream was forgotten: amortised O(1), where [`DetachedByUser::tidy`] scans).
    pub(super) fn drop_dead_front(&mut self, user: &UserId, live: impl Fn(&Entry) -> bool) {
        let dead_front = self.queues.get(user).and_then(VecDeque::front).is_some_and(|entry| !live(entry));
        if !dead_front {
            return;
        }
        self.update(user, |queue| {
            while queue.front().is_some_and(|entry| !live(entry)) {
                queue.pop_front();
            }
        });
    }

    /// The ids of `user`'s oldest detached streams beyond the `share` they may keep, taken out
    /// of the user's queue: the registry forgets them.
    pub(super) fn over_share(&mut self, user: &UserId, share: usize, live: impl Fn(&Entry) -> bool) -> Vec<String> {
        self.tidy(user, live);
        if self.queues.get(user).is_none_or(|queue| queue.len() <= share) {
            return Vec::new();
        }
        self.update(user, |queue| {
            let over = queue.len() - share;
            queue.drain(..over).map(|(_, id)| id).collect()
        })
    }

    /// The oldest detached stream of the user holding the most (of those holding as many, the
    /// one whose oldest was detached first), taken out of that user's queue; `None` when nobody
    /// has a detached stream.
    pub(super) fn take_from_the_most(&mut self, live: impl Fn(&Entry) -> bool) -> Option<(UserId, String)> {
        loop {
            let (count, _, user) = self.ranked.last()?.clone();
            self.tidy(&user, &live);
            // Exact now; every other count is an upper bound, so if it is still the largest this
            // user holds the most. Otherwise look again (each round drops stale entries).
            let Some(queue) = self.queues.get(&user) else { continue };
            let top = self.ranked.last().is_some_and(|(_, _, last)| *last == user);
            if queue.len() == count || top {
                let id = self.update(&user, |queue| queue.pop_front().map(|(_, id)| id));
                return id.map(|id| (user, id));
            }
        }
    }

    /// Users with an entry (stale ones included).
    #[cfg(test)]
    pub(super) fn users(&self) -> usize {
        self.queues.len()
    }
}
