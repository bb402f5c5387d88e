//! `NotificationStore` on both backends: pushes stored fired and delivered once, dedupe keys,
//! the per-user pending limit, due timers claimed exactly once (also by racing claimers),
//! redelivery of fired timers until dismissed, expiry, dismissal of the user's own rows only, and
//! what waits for a connect kept per kind (alerts newest first, timers oldest fired first, each
//! up to its own count).
//!
//! On Postgres a claim stays open until committed: dropped (its node died before publishing) or
//! left hanging (its node stalled), its timer is claimable again.
//!
//! Postgres tests get a private database: `claim_due` takes due rows of every user.

use chrono::{Duration, Utc};
use pam_actors::{
    CLAIM_HOLD, DueClaim, Inserted, NewNotification, Notification, NotificationKind, NotificationStore, WAITING_ALERTS, WAITING_TIMERS,
};
use pam_gateway::storage::database::Database;
use pam_protocol::UserId;
use serde_json::json;
use uuid::Uuid;

use crate::common::db::{private_postgres, sqlite};
use crate::common::wait::POLL;
use crate::common::{poll_until, wait_until_within};

fn user() -> UserId {
    UserId::parse(&Uuid::new_v4().to_string()).expect("uuid")
}

fn push(user: &UserId, dedupe: Option<&str>, ttl: Duration) -> NewNotification {
    let now = Utc::now();
    NewNotification {
        user: user.clone(),
        kind: NotificationKind::ProactiveAlert,
        payload: json!({"content": {"message": "Fuel is cheaper 2 km ahead"}}),
        fire_at: now,
        fired: true,
        expires_at: Some(now + ttl),
        dedupe_key: dedupe.map(str::to_string),
        max_pending: None,
    }
}

fn timer(user: &UserId, fire_in: Duration) -> NewNotification {
    NewNotification {
        user: user.clone(),
        kind: NotificationKind::TimerExpired,
        payload: json!({"label": "Tea", "timer_type": "timer", "message": "Tea is ready"}),
        fire_at: Utc::now() + fire_in,
        fired: false,
        expires_at: None,
        dedupe_key: None,
        max_pending: Some(2),
    }
}

fn id(inserted: Inserted) -> String {
    match inserted {
        Inserted::New(id) => id,
        other => panic!("expected a stored row, got {other:?}"),
    }
}

async fn pushes_are_delivered_once_and_deduplicated(db: &Database) {
    let (alice, bob) = (user(), user());
    let first = id(db.insert(&push(&alice, Some("budget:1:2026-11:80"), Duration::hours(1))).await.expect("insert"));
    assert_eq!(db.insert(&push(&alice, Some("budget:1:2026-11:80"), Duration::hours(1))).await.expect("insert"), Inserted::Duplicate);
    // The same key for another user is another row.
    id(db.insert(&push(&bob, Some("budget:1:2026-11:80"), Duration::hours(1))).await.expect("insert"));
    // An expired push is never delivered.
    id(db.insert(&push(&alice, None, Duration::seconds(-1))).await.expect("insert"));

    let waiting = db.undelivered(&alice).await.expect("undelivered");
    assert_eq!(waiting.iter().map(|n| n.id.clone()).collect::<Vec<_>>(), vec![first.clone()]);
    assert_eq!(waiting[0].kind, NotificationKind::ProactiveAlert);
    assert_eq!(waiting[0].payload["content"]["message"], "Fuel is cheaper 2 km ahead");
    assert!(waiting[0].fired_at.is_some());

    db.mark_delivered(&bob, std::slice::from_ref(&first)).await.expect("mark by another user");
    assert_eq!(db.undelivered(&alice).await.expect("undelivered").len(), 1, "another user cannot mark alice's push");
    db.mark_delivered(&alice, std::slice::from_ref(&first)).await.expect("mark");
    assert!(db.undelivered(&alice).await.expect("undelivered").is_empty());
}

async fn a_due_timer_is_claimed_once_and_redelivered_until_dismissed(db: &Database) {
    let (alice, bob) = (user(), user());
    let due = id(db.insert(&timer(&alice, Duration::milliseconds(-10))).await.expect("insert"));
    let later = id(db.insert(&timer(&alice, Duration::hours(1))).await.expect("insert"));
    assert_eq!(db.insert(&timer(&alice, Duration::hours(2))).await.expect("insert"), Inserted::TooManyPending);
    assert_eq!(db.count_pending().await.expect("count"), 2);
    let pending: Vec<String> = db.pending_timers(&alice).await.expect("pending").into_iter().map(|n| n.id).collect();
    assert_eq!(pending, vec![due.clone(), later.clone()]);
    assert!(db.undelivered(&alice).await.expect("undelivered").is_empty(), "an unfired timer is not delivered");

    let (a, b) = tokio::join!(db.claim_due(10), db.claim_due(10));
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    let claimed: Vec<String> = a.rows().iter().chain(b.rows()).map(|n| n.id.clone()).collect();
    assert_eq!(claimed, vec![due.clone()], "exactly one claimer gets the due timer, the future one stays");
    a.commit().await.expect("commit");
    b.commit().await.expect("commit");
    assert!(db.claim_due(10).await.expect("claim").rows().is_empty());
    assert_eq!(db.count_pending().await.expect("count"), 1);

    // Fired timers are re-sent on every connect, delivered or not, until dismissed.
    for _ in 0..2 {
        let waiting = db.undelivered(&alice).await.expect("undelivered");
        assert_eq!(waiting.iter().map(|n| n.id.clone()).collect::<Vec<_>>(), vec![due.clone()]);
        db.mark_delivered(&alice, std::slice::from_ref(&due)).await.expect("mark");
    }
    assert!(!db.dismiss(&bob, &due).await.expect("dismiss"), "bob cannot dismiss alice's timer");
    assert!(!db.dismiss(&alice, "not-a-uuid").await.expect("dismiss"));
    assert!(db.dismiss(&alice, &due).await.expect("dismiss"));
    assert!(!db.dismiss(&alice, &due).await.expect("dismiss"), "a second dismiss changes nothing");
    assert!(db.undelivered(&alice).await.expect("undelivered").is_empty());

    // A dismissed pending timer never fires and frees a place under the limit.
    assert!(db.dismiss(&alice, &later).await.expect("dismiss"));
    assert!(db.pending_timers(&alice).await.expect("pending").is_empty());
    assert_eq!(db.count_pending().await.expect("count"), 0);
}

async fn each_kind_waits_in_a_list_of_its_own(db: &Database) {
    const EACH: usize = 120;
    let alice = user();
    let now = Utc::now();
    // Alerts raised a second apart, stored together (one group commit or a few).
    let alerts: Vec<NewNotification> = (0..EACH)
        .map(|i| NewNotification { fire_at: now - Duration::seconds((EACH - i) as i64), ..push(&alice, None, Duration::hours(1)) })
        .collect();
    let stored = futures_util::future::join_all(alerts.iter().map(|row| db.insert(row))).await;
    let mut newest_first: Vec<String> = stored.into_iter().map(|inserted| id(inserted.expect("insert"))).collect();
    newest_first.reverse();
    // Timers due a minute apart, claimed (fired) together: the same fired_at, ordered by fire_at.
    for i in 0..EACH {
        let row =
            NewNotification { fire_at: now - Duration::minutes((EACH - i) as i64), max_pending: None, ..timer(&alice, Duration::zero()) };
        id(db.insert(&row).await.expect("insert"));
    }
    let mut fired: Vec<Notification> = Vec::new();
    while fired.len() < EACH {
        let claimed = db.claim_due(EACH).await.expect("claim");
        assert!(!claimed.rows().is_empty(), "every timer is due");
        fired.extend(claimed.rows().iter().cloned());
        claimed.commit().await.expect("commit");
    }
    fired.sort_by_key(|n| (n.fired_at, n.fire_at));

    let waiting = db.undelivered(&alice).await.expect("undelivered");
    let ids: Vec<String> = waiting.iter().map(|n| n.id.clone()).collect();
    assert_eq!(waiting.len(), WAITING_ALERTS + WAITING_TIMERS);
    assert_eq!(ids[..WAITING_ALERTS], newest_first[..WAITING_ALERTS], "the newest alerts, newest first");
    let oldest: Vec<String> = fired.iter().take(WAITING_TIMERS).map(|n| n.id.clone()).collect();
    assert_eq!(ids[WAITING_ALERTS..], oldest[..], "then the timers, oldest fired first");

    // Delivered alerts make room for the older ones; the timers stay until dismissed.
    db.mark_delivered(&alice, &newest_first[..WAITING_ALERTS]).await.expect("mark");
    let waiting = db.undelivered(&alice).await.expect("undelivered");
    let ids: Vec<String> = waiting.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids[..EACH - WAITING_ALERTS], newest_first[WAITING_ALERTS..]);
    assert_eq!(ids[EACH - WAITING_ALERTS..], oldest[..]);
}

#[tokio::test]
async fn sqlite_keeps_alerts_and_fired_timers_in_lists_of_their_own() {
    each_kind_waits_in_a_list_of_its_own(&sqlite().await.db).await;
}

#[tokio::test]
async fn postgres_keeps_alerts_and_fired_timers_in_lists_of_their_own() {
    each_kind_waits_in_a_list_of_its_own(&private_postgres().await.db).await;
}

#[tokio::test]
async fn sqlite_stores_pushes_delivers_them_once_and_drops_duplicates() {
    pushes_are_delivered_once_and_deduplicated(&sqlite().await.db).await;
}

#[tokio::test]
async fn postgres_stores_pushes_delivers_them_once_and_drops_duplicates() {
    pushes_are_delivered_once_and_deduplicated(&private_postgres().await.db).await;
}

#[tokio::test]
async fn sqlite_claims_a_due_timer_once_and_redelivers_it_until_dismissed() {
    a_due_timer_is_claimed_once_and_redelivered_until_dismissed(&sqlite().await.db).await;
}

#[tokio::test]
async fn postgres_claims_a_due_timer_once_and_redelivers_it_until_dismissed() {
    a_due_timer_is_claimed_once_and_redelivered_until_dismissed(&private_postgres().await.db).await;
}

/// Claims until a claim holds `id` (a dropped claim is given back as its connection returns to
/// the pool); that claim.
async fn claim_when_free(db: &Database, id: &str) -> Box<dyn DueClaim> {
    poll_until(std::time::Duration::from_secs(5), POLL, &format!("timer {id} is claimable again"), async || {
        let claim = db.claim_due(10).await.expect("claim");
        if claim.rows().iter().any(|row| row.id == id) { Ok(claim) } else { Err(format!("{} other rows", claim.rows().len())) }
    })
    .await
}

#[tokio::test]
async fn postgres_a_claim_dropped_before_its_commit_leaves_the_timer_to_the_next_claim() {
    let store = private_postgres().await;
    let db = &store.db;
    let alice = user();
    let due = id(db.insert(&timer(&alice, Duration::milliseconds(-10))).await.expect("insert"));

    let first = db.claim_due(10).await.expect("claim");
    assert_eq!(first.rows().iter().map(|n| n.id.clone()).collect::<Vec<_>>(), vec![due.clone()]);
    assert!(db.claim_due(10).await.expect("claim").rows().is_empty(), "another node skips a claimed timer");
    assert!(db.undelivered(&alice).await.expect("undelivered").is_empty(), "an uncommitted claim has fired nothing yet");
    drop(first); // the node died between its claim and its publish

    let second = claim_when_free(db, &due).await;
    second.commit().await.expect("commit");
    let waiting = db.undelivered(&alice).await.expect("undelivered");
    assert_eq!(waiting.iter().map(|n| n.id.clone()).collect::<Vec<_>>(), vec![due], "fired once the second claim committed");
    assert!(db.claim_due(10).await.expect("claim").rows().is_empty());
    assert_eq!(db.count_pending().await.expect("count"), 0);
}

#[tokio::test]
async fn postgres_a_claim_whose_holder_stalls_is_ended_by_the_database_after_twice_the_claim_hold() {
    let store = private_postgres().await;
    let db = &store.db;
    let due = id(db.insert(&timer(&user(), Duration::milliseconds(-10))).await.expect("insert"));
    let stalled = db.claim_due(10).await.expect("claim");
    assert_eq!(stalled.rows().len(), 1);
    let claimed = tokio::time::Instant::now();
    // A holder that neither commits nor drops: its connection stays open, idle in the transaction.
    std::mem::forget(stalled);
    wait_until_within(CLAIM_HOLD * 2 + std::time::Duration::from_secs(5), "the stalled claim is ended", || async {
        !db.claim_due(10).await.expect("claim").rows().is_empty()
    })
    .await;
    let waited = claimed.elapsed();
    assert!(waited >= CLAIM_HOLD * 2 - std::time::Duration::from_millis(200), "not before its hold ran out: {waited:?} ({due})");
}
