//! `ResumeBuffer`: the registry of this node's v2 streams, bounded in streams in total and in
//! detached streams per user, forgetting a detached one after its TTL; with a `StreamStore` it
//! also opens streams that resume on any node and takes in frames other nodes forward to the
//! streams this node holds.
//! Part of the stream module; imports the per-user bookkeeping and the `StreamStore` port.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pam_protocol::UserId;
use tokio::time::Instant;

use super::per_user::{DetachedByUser, Entry};
use super::{ResumableStream, ResumeLimits};
use crate::ports::StreamStore;

/// Expiry entries below which the queue is never compacted.
const MIN_COMPACTION: usize = 1_024;

/// The shared registry of v2 streams: bounded in streams, and a detached stream is forgotten
/// once its TTL has passed (oldest first, from a queue in detach order: no scan of every stream,
/// whether the registry is full or not). One user cannot push others' streams out: beyond
/// `max_detached_per_user` detached streams a user loses its own oldest, and when the registry
/// is full the stream that makes room is the oldest detached one of the user holding the most.
pub struct ResumeBuffer {
    limits: ResumeLimits,
    registry: Mutex<Registry>,
    /// Names this buffer's life: its frames live in this process, so a restart loses them and
    /// starts a new epoch (`welcome.epoch`; a resume naming another gets `epoch_changed`).
    /// With a store each stream gets an epoch of its own instead.
    epoch: Arc<str>,
    store: Option<Arc<dyn StreamStore>>,
}

#[derive(Default)]
struct Registry {
    streams: HashMap<String, Arc<ResumableStream>>,
    /// (detached at, stream id), oldest first; an entry whose stream was attached again (or
    /// detached later) since is stale and skipped.
    detached: VecDeque<Entry>,
    /// The same entries per user.
    by_user: DetachedByUser,
}

/// Whether `entry` still stands for a held stream, detached since then.
fn live(streams: &HashMap<String, Arc<ResumableStream>>, (at, id): &Entry) -> bool {
    streams.get(id).is_some_and(|s| s.detached_since() == Some(*at))
}

impl Registry {
    /// Holds `stream` (in place of any other of its id); a detached one counts towards its
    /// user's share at once.
    fn insert(&mut self, stream: &Arc<ResumableStream>, share: usize) {
        if let Some(replaced) = self.streams.insert(stream.id().to_string(), stream.clone()) {
            let streams = &self.streams;
            self.by_user.tidy(replaced.user(), |entry| live(streams, entry));
        }
        if let Some(at) = stream.detached_since() {
            self.note_detached(stream, at, share);
        }
    }

    /// Queues `stream` (detached at `at`) for expiry, then forgets its user's oldest detached
    /// streams beyond `share`.
    fn note_detached(&mut self, stream: &ResumableStream, at: Instant, share: usize) {
        self.detached.push_back((at, stream.id().to_string()));
        self.compact();
        self.by_user.push(stream.user(), at, stream.id().to_string());
        let streams = &self.streams;
        for id in self.by_user.over_share(stream.user(), share, |entry| live(streams, entry)) {
            self.streams.remove(&id);
        }
    }

    /// Stale entries are bounded too (every socket leaves one from its open, and a stream
    /// attached and detached again and again leaves one each time): past twice the streams held
    /// (and a minimum) the queue keeps only its live entries, once each. It never forgets a
    /// stream for that — popping live entries here would let one user's churn push other users'
    /// streams out. Amortised O(1): afterwards it holds at most one entry per stream.
    fn compact(&mut self) {
        if self.detached.len() <= (2 * self.streams.len()).max(MIN_COMPACTION) {
            return;
        }
        let streams = &self.streams;
        let mut seen = HashSet::new();
        self.detached.retain(|entry| live(streams, entry) && seen.insert(entry.1.clone()));
    }

    /// Forgets stream `id`. Its user's dead entries at the front go now (the stream forgotten is
    /// usually that user's oldest); any others when that user's queue is next tidied.
    fn remove(&mut self, id: &str) -> Option<Arc<ResumableStream>> {
        let removed = self.streams.remove(id)?;
        let streams = &self.streams;
        self.by_user.drop_dead_front(removed.user(), |entry| live(streams, entry));
        Some(removed)
    }

    /// Drops the entry at the front; forgets its stream if it is still detached since then.
    fn pop_oldest(&mut self) -> bool {
        let Some(entry) = self.detached.pop_front() else { return false };
        if live(&self.streams, &entry) {
            self.remove(&entry.1);
            return true;
        }
        false
    }

    /// Makes room in a full registry: forgets the oldest detached stream of the user holding the
    /// most; `false` when no stream is detached.
    fn evict_for_room(&mut self) -> bool {
        let streams = &self.streams;
        match self.by_user.take_from_the_most(|entry| live(streams, entry)) {
            Some((_, id)) => self.remove(&id).is_some(),
            None => false,
        }
    }

    /// Forgets every stream detached for `ttl` or longer.
    fn sweep(&mut self, now: Instant, ttl: Duration) {
        while self.detached.front().is_some_and(|(at, _)| now.duration_since(*at) >= ttl) {
            self.pop_oldest();
        }
    }
}

impl ResumeBuffer {
    /// A buffer whose streams live in this process only.
    pub fn new(limits: ResumeLimits) -> Self {
        Self::with_store(limits, None)
    }

    /// A buffer whose streams also go to `store` (when given), so they resume on any node.
    pub fn with_store(limits: ResumeLimits, store: Option<Arc<dyn StreamStore>>) -> Self {
        ResumeBuffer { limits, registry: Mutex::new(Registry::default()), epoch: new_epoch().into(), store }
    }

    /// The epoch of the frames kept here (changes when they were lost, i.e. at a restart).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The store beyond this process, when there is one.
    pub fn store(&self) -> Option<&Arc<dyn StreamStore>> {
        self.store.as_ref()
    }

    /// The limits streams are kept within.
    pub fn limits(&self) -> ResumeLimits {
        self.limits
    }

    /// How long a stream stays resumable after its socket went away.
    pub fn window(&self) -> Duration {
        self.limits.ttl
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh stream for `user` whose first frame gets `first_seq`. It is registered for
    /// resume when there is room after dropping expired streams (then the oldest detached one);
    /// otherwise it still works, it just cannot be resumed.
    pub fn open(&self, user: UserId, first_seq: u64) -> Arc<ResumableStream> {
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let epoch = if self.store.is_some() { new_epoch().into() } else { self.epoch.clone() };
        let stream = Arc::new(ResumableStream::new(id, user, first_seq, epoch, self.limits, self.store.clone()));
        self.register(&stream);
        stream
    }

    /// Registers `stream` (in place of any other of its id) when there is room after dropping
    /// expired streams (then the oldest detached one of the user holding the most).
    pub(crate) fn register(&self, stream: &Arc<ResumableStream>) {
        let mut registry = self.lock();
        registry.sweep(Instant::now(), self.limits.ttl);
        while registry.streams.len() >= self.limits.max_streams && registry.evict_for_room() {}
        if registry.streams.len() < self.limits.max_streams {
            registry.insert(stream, self.limits.max_detached_per_user);
        }
    }

    /// Detaches `conn_id`'s socket from `stream`; the stream is forgotten after the TTL, or
    /// sooner when its user has more than its share of detached streams.
    pub fn detach(&self, stream: &ResumableStream, conn_id: &str) {
        if let Some(at) = stream.detach(conn_id) {
            let mut registry = self.lock();
            if !registry.streams.get(stream.id()).is_some_and(|held| std::ptr::eq(held.as_ref(), stream)) {
                return; // never registered (the registry was full), or replaced since
            }
            registry.note_detached(stream, at, self.limits.max_detached_per_user);
        }
    }

    /// `user`'s stream `id`, unless it is unknown, expired or someone else's (all look alike,
    /// so nothing is learned about other users' streams).
    pub fn find(&self, id: &str, user: &UserId) -> Option<Arc<ResumableStream>> {
        let mut registry = self.lock();
        registry.sweep(Instant::now(), self.limits.ttl);
        let stream = registry.streams.get(id)?.clone();
        (stream.user == *user).then_some(stream)
    }

    /// Forgets a stream (one that a resume replaced).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Forgets stream `id` if it is still `stream` (a claim that did not hand it over).
    pub fn forget_exactly(&self, stream: &Arc<ResumableStream>) {
        let mut registry = self.lock();
        if registry.streams.get(stream.id()).is_some_and(|held| Arc::ptr_eq(held, stream)) {
            registry.remove(stream.id());
        }
    }

    /// A new object for stream `id` of `user`, registered in place of any other of that id before
    /// this node claims it from the store: frames forwarded to this node meanwhile wait in it.
    pub fn begin_restore(&self, id: &str, user: UserId) -> Arc<ResumableStream> {
        let stream = ResumableStream::new(id.into(), user, 1, self.epoch.clone(), self.limits, self.store.clone());
        stream.lock().restoring = Some(Vec::new());
        let stream = Arc::new(stream);
        self.register(&stream);
        stream
    }

    /// A frame another object of stream `id` wrote (its JSON text; `origin` that object's inst,
    /// `origin_seq` the seq it gave it, `prev` the replayable one before it), forwarded here
    /// because this node holds the stream: numbered and sent on, unless one before it was lost.
    pub fn forwarded(&self, id: &str, origin: u64, origin_seq: u64, prev: Option<u64>, text: String) {
        let stream = self.lock().streams.get(id).cloned();
        match stream {
            Some(stream) => stream.forwarded(origin, origin_seq, prev, text),
            None => tracing::debug!(stream = id, "a frame forwarded for a stream this node no longer holds was dropped"),
        }
    }

    /// Another node claimed stream `id` from this node's object `inst`: the socket attached to
    /// that object (if it is still this node's object of the stream) is told it was taken over;
    /// the object stays for the turns still writing into it (their frames are forwarded).
    pub fn taken(&self, id: &str, inst: u64) {
        let stream = self.lock().streams.get(id).cloned();
        match stream {
            Some(stream) if stream.inst() == inst => stream.taken_elsewhere(),
            _ => tracing::debug!(stream = id, "a stream taken over from an object this node no longer has"),
        }
    }

    /// Streams held right now.
    pub fn len(&self) -> usize {
        self.lock().streams.len()
    }

    /// Whether no stream is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Users with an entry in the per-user bookkeeping (stale ones included).
    #[cfg(test)]
    pub(super) fn users_tracked(&self) -> usize {
        self.lock().by_user.users()
    }
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

impl Default for ResumeBuffer {
    fn default() -> Self {
        ResumeBuffer::new(ResumeLimits::default())
    }
}
