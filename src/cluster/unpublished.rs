//! Pushes this node could not publish to other nodes (Redis failed it, or its breaker was open):
//! the users they were for are recorded (`Unpublished`, bounded) and, once Redis answers this node
//! again, announced on the shared channel `{p}:catch-up`, which every node's listener hears
//! (`bus.rs`) and answers with a catch-up of its own sockets of those users (`catch_up.rs`).
//! Without it a push stored during a Redis hang shorter than the subscribers' check, or while this
//! node alone could not reach Redis, would wait for the user's next connect on every other node.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fred::prelude::PubsubInterface;
use pam_protocol::UserId;
use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;

use super::catch_up::MAX_USERS;
use super::{Op, RedisShared};

/// How often users whose pushes could not be published are announced, while there are some.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Users one announcement names at most (about 37 KB).
const ANNOUNCE_CHUNK: usize = 1_000;

/// A node's word that pushes for `users` reached only its own sockets (Redis failed it), sent on
/// `{p}:catch-up` once Redis answers it again.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Announcement {
    pub(super) from: String,
    /// `None`: too many users to name; every node reads again for every socket.
    pub(super) users: Option<Vec<UserId>>,
}

/// Users whose pushes this node could not publish to other nodes, not yet announced; bounded by
/// `MAX_USERS` (beyond, the announcement names everyone).
#[derive(Default)]
pub(super) struct Unpublished {
    users: Mutex<(HashSet<UserId>, bool)>,
}

impl Unpublished {
    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<UserId>, bool)> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn record(&self, user: &UserId) {
        let mut guard = self.lock();
        let (users, everyone) = &mut *guard;
        if *everyone {
            return;
        }
        users.insert(user.clone());
        if users.len() > MAX_USERS {
            *everyone = true;
            users.clear();
        }
    }

    /// What is to be announced now (and is forgotten until `restore`d).
    fn take(&self) -> Option<(Vec<UserId>, bool)> {
        let mut guard = self.lock();
        let (users, everyone) = &mut *guard;
        if users.is_empty() && !*everyone {
            return None;
        }
        Some((users.drain().collect(), std::mem::take(everyone)))
    }

    fn restore(&self, (users, everyone): (Vec<UserId>, bool)) {
        if everyone {
            let mut guard = self.lock();
            guard.0.clear();
            guard.1 = true;
            return;
        }
        for user in &users {
            self.record(user);
        }
    }
}

/// Announces the users whose pushes could not be published, every `ANNOUNCE_EVERY` while there
/// are some, until the bus is dropped; an announcement Redis does not take is tried again. As a
/// guarded push operation it is refused while the breaker is open, so it goes out once Redis
/// answers this node again — after every push it could not publish.
pub(super) async fn announcer(shared: Arc<RedisShared>, unpublished: Weak<Unpublished>, channel: String) {
    let mut ticks = tokio::time::interval(ANNOUNCE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(unpublished) = unpublished.upgrade() else { return };
        let Some((users, everyone)) = unpublished.take() else { continue };
        let messages: Vec<Announcement> = if everyone {
            vec![Announcement { from: shared.node.clone(), users: None }]
        } else {
            users.chunks(ANNOUNCE_CHUNK).map(|chunk| Announcement { from: shared.node.clone(), users: Some(chunk.to_vec()) }).collect()
        };
        for message in &messages {
            let text = serde_json::to_string(message).expect("an announcement serialises");
            if shared.guarded(Op::Push, shared.client.publish::<i64, _, _>(channel.clone(), text)).await.is_err() {
                // Resent whole next time: a second catch-up of the same users costs a read, never a repeat.
                unpublished.restore((users, everyone));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: usize) -> UserId {
        UserId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap()
    }

    #[test]
    fn unpublished_users_are_announced_once_and_kept_when_the_announcement_fails() {
        let unpublished = Unpublished::default();
        assert!(unpublished.take().is_none());
        for n in [1, 2, 1] {
            unpublished.record(&user(n));
        }
        let (mut users, everyone) = unpublished.take().unwrap();
        users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!((users.clone(), everyone), (vec![user(1), user(2)], false));
        assert!(unpublished.take().is_none(), "taken once");
        unpublished.record(&user(3));
        unpublished.restore((users, false));
        assert_eq!(unpublished.take().map(|(users, everyone)| (users.len(), everyone)), Some((3, false)));
    }

    #[test]
    fn beyond_max_users_the_announcement_names_everyone_until_it_went_out() {
        let unpublished = Unpublished::default();
        for n in 0..=MAX_USERS {
            unpublished.record(&user(n));
        }
        let taken = unpublished.take().unwrap();
        assert_eq!((taken.0.len(), taken.1), (0, true));
        unpublished.restore(taken);
        unpublished.record(&user(1));
        assert_eq!(unpublished.take().map(|(users, everyone)| (users.len(), everyone)), Some((0, true)));
    }
}
