//! A due timer claimed by a node that stops before its publish returned is published by another
//! node within seconds: two schedulers on one Postgres, the first one's publish hanging (a Redis
//! that does not answer) when it is stopped dead — the task aborted at that await, as a SIGKILL
//! would — and two real node processes, the claimer SIGKILLed while Redis is SIGSTOPped under it:
//! killed with its claim open, the other node claims and delivers the timer at once; killed just
//! after its commit, the other node reads the timer again once Redis answers. Once either way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use pam_actors::{BoxFuture, CLAIM_HOLD, NewNotification, NotificationKind, NotificationStore, PushBus, PushOutcome, PushStats};
use pam_gateway::push::timers::scheduler;
use pam_protocol::UserId;
use serde_json::{Value, json};

use crate::common::db::{Backend, private_postgres, test_db};
use crate::common::node_process::{NodeProcess, signal};
use crate::common::push::{frames_before_pong, fresh_user, next_frame, send};
use crate::common::redis::{RedisServer, fresh_prefix};
use crate::common::*;
use tokio::time::Instant;

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

/// Whether a claim of due timers is open on `monitor`'s database right now (a connection idle in
/// the claim's transaction).
async fn claim_open(monitor: &sqlx::PgPool) -> bool {
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
           AND state = 'idle in transaction' AND query LIKE 'UPDATE pam_notifications SET fired_at%'",
    )
    .fetch_one(monitor)
    .await
    .unwrap();
    open > 0
}

#[tokio::test]
async fn a_due_timer_whose_claimer_is_killed_while_redis_hangs_reaches_the_socket_on_the_other_node_once() {
    let redis = RedisServer::start().await;
    let db = test_db(Backend::Postgres).await;
    let prefix = fresh_prefix();
    let mut a = NodeProcess::start("node-a", &db.url, &redis.url(), &prefix).await;
    let b = NodeProcess::start("node-b", &db.url, &redis.url(), &prefix).await;
    let user = fresh_user();
    let mut on_b = b.connect_user(&user).await;
    wait_until("A sees the user's socket on B", || async { a.admin_get(&format!("/api/v1/pam/presence/{user}")).await["sockets"] == 1 })
        .await;

    // Only A can claim: B is paused until A is dead.
    b.signal("-STOP");
    let request =
        rest::client().post(a.http("/api/v1/pam/timers")).bearer_auth(token_for(&user)).json(&json!({"label": "Tyres", "duration_s": 1.5}));
    let (status, body) = send(request).await;
    assert_eq!(status, 201, "{body}");
    let id = body["timer_id"].as_str().unwrap().to_string();
    let fire_at = chrono::DateTime::parse_from_rfc3339(body["fire_at"].as_str().unwrap()).unwrap().with_timezone(&Utc);
    // Redis hangs from just before the timer is due, so A's publish to other nodes waits on it.
    let until_due = (fire_at - Utc::now() - chrono::Duration::milliseconds(200)).to_std().unwrap_or_default();
    // Why a fixed pause: the timer's own due time, not a state to wait for.
    tokio::time::sleep(until_due).await;
    signal(redis.pid(), "-STOP");
    let monitor = sqlx::PgPool::connect(&db.url).await.unwrap();
    let caught =
        poll(
            Duration::from_secs(3),
            Duration::from_millis(2),
            async || if claim_open(&monitor).await { Ok(()) } else { Err(String::new()) },
        )
        .await
        .is_ok();
    a.kill();
    let fired: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT fired_at FROM pam_notifications WHERE id = $1::uuid").bind(&id).fetch_one(&monitor).await.unwrap();
    let given_back = fired.is_none();
    eprintln!("A killed {} its claim's commit", if given_back { "before" } else { "after" });
    assert!(!caught || given_back, "A was killed while its claim was open, so the claim was given back");

    b.signal("-CONT");
    let resumed = Instant::now();
    let mut frames = Vec::new();
    if given_back {
        // B claims it and hands it to its own socket, Redis still hanging.
        let frame = next_frame(&mut on_b).await;
        eprintln!("timer on B's socket {:?} after B resumed, Redis still hanging", resumed.elapsed());
        frames.push(frame);
    }
    wait_until("B notices the hanging Redis", || async { b.log().contains("push subscription was down") }).await;
    signal(redis.pid(), "-CONT");
    let back = Instant::now();
    if !given_back {
        // A marked it fired but reached no other node: B reads it again once its subscription is
        // back (or Redis runs the publish A had sent it before dying, when it resumes).
        frames.push(next_frame(&mut on_b).await);
        eprintln!("timer on B's socket {:?} after Redis answered again", back.elapsed());
        assert!(back.elapsed() < Duration::from_secs(5), "{:?}", back.elapsed());
    }
    assert_eq!((frames[0]["type"].as_str(), frames[0]["timer_id"].as_str()), (Some("timer_expired"), Some(id.as_str())), "{frames:?}");
    wait_until("B caught up after its subscription came back", || async {
        b.log().lines().any(|line| line.contains("push catch-up") && line.contains("push channel subscription back"))
    })
    .await;
    frames.extend(frames_before_pong(&mut on_b).await);
    assert_eq!(frames.len(), 1, "the timer came exactly once: {frames:?}");
}
