//! `NotificationStore` on both backends: pushes stored fired and delivered once, dedupe keys,
//! the per-user pending limit, due timers claimed exactly once (also by racing claimers),
//! redelivery of fired timers until dismissed, expiry, and dismissal of the user's own rows only.
//!
//! Postgres tests get a private database: `claim_due` takes due rows of every user.

use chrono::{Duration, Utc};
use pam_actors::{Inserted, NewNotification, NotificationKind, NotificationStore};
use pam_gateway::storage::database::Database;
use pam_protocol::UserId;
use serde_json::json;
use uuid::Uuid;

use crate::common::db::{private_postgres, sqlite};

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
    let claimed: Vec<String> = a.expect("claim").into_iter().chain(b.expect("claim")).map(|n| n.id).collect();
    assert_eq!(claimed, vec![due.clone()], "exactly one claimer gets the due timer, the future one stays");
    assert!(db.claim_due(10).await.expect("claim").is_empty());
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
