//! A due timer claimed by a node that stops before its publish returned is published by another
//! node within seconds: two schedulers on one Postgres, the first one's publish hanging (a Redis
//! that does not answer) when it is stopped dead — the task aborted at that await, as a SIGKILL
//! would — and, with the real binary, a node killed while Redis is SIGSTOPped under it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use pam_actors::{BoxFuture, CLAIM_HOLD, NewNotification, NotificationKind, NotificationStore, PushBus, PushOutcome, PushStats};
use pam_gateway::push::timers::scheduler;
use pam_protocol::UserId;
use serde_json::{Value, json};

use crate::common::db::private_postgres;
use crate::common::*;

/// A bus whose publish never returns: the node is stuck between its claim and its publish.
#[derive(Default)]
struct HangingBus {
    calls: AtomicUsize,
}

impl PushBus for HangingBus {
    fn publish<'a>(&'a self, _user: &'a UserId, _payload: &'a str) -> BoxFuture<'a, PushOutcome> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        })
    }

    fn stats(&self) -> PushStats {
        PushStats::default()
    }
}

/// A bus that records the push frames it was given.
#[derive(Default)]
struct RecordingBus {
    frames: Mutex<Vec<Value>>,
}

impl PushBus for RecordingBus {
    fn publish<'a>(&'a self, _user: &'a UserId, payload: &'a str) -> BoxFuture<'a, PushOutcome> {
        Box::pin(async move {
            self.frames.lock().unwrap().push(serde_json::from_str(payload).unwrap());
            PushOutcome { local_sockets: 1, remote_nodes: 0, degraded: false }
        })
    }

    fn stats(&self) -> PushStats {
        PushStats::default()
    }
}

/// A timer of a new user, due now; the user and the timer's id.
async fn due_timer(db: &dyn NotificationStore) -> (UserId, String) {
    let user = UserId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let timer = NewNotification {
        user: user.clone(),
        kind: NotificationKind::TimerExpired,
        payload: json!({"label": "Tyres", "timer_type": "timer", "message": "Check the tyres"}),
        fire_at: Utc::now(),
        fired: false,
        expires_at: None,
        dedupe_key: None,
        max_pending: None,
    };
    match db.insert(&timer).await.expect("insert") {
        pam_actors::Inserted::New(id) => (user, id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_scheduler_stopped_while_its_publish_hangs_leaves_the_due_timer_to_another_nodes_scheduler() {
    let store = private_postgres().await;
    let db: Arc<dyn NotificationStore> = Arc::new(store.db.clone());
    let (user, id) = due_timer(&*db).await;

    let hanging = Arc::new(HangingBus::default());
    let node_a = scheduler::spawn(db.clone(), hanging.clone());
    wait_until("node A claimed the timer and is publishing it", || async { hanging.calls.load(Ordering::SeqCst) == 1 }).await;
    assert!(db.undelivered(&user).await.unwrap().is_empty(), "nothing is marked fired before the publish returned");
    node_a.abort();
    let stopped = tokio::time::Instant::now();

    let recording = Arc::new(RecordingBus::default());
    let _node_b = scheduler::spawn(db.clone(), recording.clone());
    wait_until_within(Duration::from_secs(5), "node B publishes the timer", || async { !recording.frames.lock().unwrap().is_empty() })
        .await;
    let published = stopped.elapsed();
    let frames = recording.frames.lock().unwrap().clone();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!((frames[0]["type"].as_str(), frames[0]["id"].as_str()), (Some("timer_expired"), Some(id.as_str())));
    wait_until("node B recorded the timer as fired", || async { db.undelivered(&user).await.unwrap().len() == 1 }).await;
    assert_eq!(db.count_pending().await.unwrap(), 0);
    assert_eq!(hanging.calls.load(Ordering::SeqCst), 1, "the stopped node published nothing more");
    eprintln!("published by node B {published:?} after node A stopped");
}

#[tokio::test]
async fn a_publish_that_hangs_past_the_claim_hold_gives_the_timer_back_to_the_next_claim() {
    let store = private_postgres().await;
    let db: Arc<dyn NotificationStore> = Arc::new(store.db.clone());
    let (user, _) = due_timer(&*db).await;
    let hanging = Arc::new(HangingBus::default());
    let _node = scheduler::spawn(db.clone(), hanging.clone());
    wait_until("the timer is claimed and being published", || async { hanging.calls.load(Ordering::SeqCst) == 1 }).await;
    let claimed = tokio::time::Instant::now();
    wait_until_within(CLAIM_HOLD + Duration::from_secs(3), "the timer is claimed again", || async {
        hanging.calls.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(claimed.elapsed() >= CLAIM_HOLD - Duration::from_millis(100), "given back after its hold: {:?}", claimed.elapsed());
    assert!(db.undelivered(&user).await.unwrap().is_empty(), "never marked fired while its publish hung");
}
