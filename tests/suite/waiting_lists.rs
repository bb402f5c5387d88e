//! What waits for a user is kept per kind, over real sockets, on SQLite and on Postgres (a private
//! database per test): on connect a socket gets the undelivered alerts first, newest first, at most
//! `WAITING_ALERTS`, then the undismissed fired timers, oldest fired first, at most
//! `WAITING_TIMERS`, each kind within its own `WAITING_BYTES_PER_KIND`. So 200 fired timers do not
//! keep a newer alert out, 150 alerts come the newest 100 first and the rest on a later connect,
//! and large timers do not use a small alert's share.
//!
//! The rows are written straight into the database (hundreds, with chosen fire times).

use chrono::{Duration, Utc};
use pam_actors::{WAITING_ALERTS, WAITING_BYTES_PER_KIND, WAITING_TIMERS};
use serde_json::Value;

use crate::common::db::{Backend, test_db};
use crate::common::push::*;
use crate::common::v2::connect_welcomed;
use crate::common::*;

fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|frame| frame["id"].as_str().unwrap_or_else(|| panic!("a push with an id: {frame}")).to_string()).collect()
}

async fn fired_timers_never_crowd_out_a_newer_alert(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let user = fresh_user();
    let now = Utc::now();
    // 200 timers that rang over the last 200 minutes, none dismissed, then one alert.
    let timers: Vec<Waiting> =
        (0..200).map(|i| Waiting::timer(&format!("t{i}"), &format!("timer {i}"), now - Duration::minutes(200 - i))).collect();
    let timer_ids = store_waiting(&db.url, &user, &timers).await;
    let alert = store_waiting(&db.url, &user, &[Waiting::alert("Fuel: 100 % of the budget", now - Duration::seconds(10))]).await;

    let mut socket = connect_user(&app, &user).await;
    let frames = next_frames(&mut socket, 1 + WAITING_TIMERS).await;
    assert_eq!(frames[0]["type"], "proactive_alert", "the alert comes first: {}", frames[0]);
    assert_eq!(ids(&frames[..1]), alert);
    assert_eq!(frames[0]["content"]["message"], "Fuel: 100 % of the budget");
    assert!(frames[1..].iter().all(|frame| frame["type"] == "timer_expired"), "then the timers");
    assert_eq!(ids(&frames[1..]), timer_ids[..WAITING_TIMERS], "the oldest fired timers, in the order they rang");
    assert_eq!(frames_before_pong(&mut socket).await, Vec::<Value>::new(), "at most {WAITING_TIMERS} timers");
    app.shutdown().await;
}

#[tokio::test]
async fn two_hundred_fired_timers_do_not_keep_a_newer_alert_from_a_connect_on_sqlite() {
    fired_timers_never_crowd_out_a_newer_alert(Backend::Sqlite).await;
}

#[tokio::test]
async fn two_hundred_fired_timers_do_not_keep_a_newer_alert_from_a_connect_on_postgres() {
    fired_timers_never_crowd_out_a_newer_alert(Backend::Postgres).await;
}

async fn the_newest_alerts_come_first_and_the_rest_later(backend: Backend) {
    const ALERTS: usize = 150;
    let db = test_db(backend).await;
    let app = start(&db).await;
    let user = fresh_user();
    let now = Utc::now();
    // Raised a second apart, the last one newest.
    let alerts: Vec<Waiting> =
        (0..ALERTS).map(|i| Waiting::alert(&format!("alert {i}"), now - Duration::seconds((ALERTS - i) as i64))).collect();
    let mut newest_first = store_waiting(&db.url, &user, &alerts).await;
    newest_first.reverse();

    let mut first = connect_user(&app, &user).await;
    let frames = next_frames(&mut first, WAITING_ALERTS).await;
    assert!(frames.iter().all(|frame| frame["type"] == "proactive_alert"), "{frames:?}");
    assert_eq!(ids(&frames), newest_first[..WAITING_ALERTS], "the newest {WAITING_ALERTS}, newest first");
    assert_eq!(frames[0]["content"]["message"], format!("alert {}", ALERTS - 1));
    assert_eq!(frames_before_pong(&mut first).await, Vec::<Value>::new(), "at most {WAITING_ALERTS} alerts");
    // The client's receipt of these (its proof) marks them delivered; here the test marks them.
    mark_delivered_in_db(&db.url, &newest_first[..WAITING_ALERTS]).await;
    drop(first);

    let mut second = connect_user(&app, &user).await;
    let frames = next_frames(&mut second, ALERTS - WAITING_ALERTS).await;
    assert_eq!(ids(&frames), newest_first[WAITING_ALERTS..], "the older ones on the next connect, newest first");
    assert_eq!(frames_before_pong(&mut second).await, Vec::<Value>::new());
    mark_delivered_in_db(&db.url, &newest_first[WAITING_ALERTS..]).await;
    drop(second);

    let mut third = connect_user(&app, &user).await;
    assert_eq!(frames_before_pong(&mut third).await, Vec::<Value>::new(), "each alert is delivered once");
    app.shutdown().await;
}

#[tokio::test]
async fn a_hundred_and_fifty_alerts_come_newest_hundred_first_and_the_rest_on_a_later_connect_on_sqlite() {
    the_newest_alerts_come_first_and_the_rest_later(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_hundred_and_fifty_alerts_come_newest_hundred_first_and_the_rest_on_a_later_connect_on_postgres() {
    the_newest_alerts_come_first_and_the_rest_later(Backend::Postgres).await;
}

async fn large_timers_do_not_use_an_alerts_byte_share(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let user = fresh_user();
    let now = Utc::now();
    // 100 timers of 4 KiB each (more than the API takes: the store bounds what it holds too),
    // together far past one kind's share; then one small alert, newer than all of them.
    let timers: Vec<Waiting> = (0..100)
        .map(|i| Waiting::timer(&format!("big {i}"), &format!("{i:03} {}", "m".repeat(4096)), now - Duration::minutes(100 - i)))
        .collect();
    let sizes: Vec<usize> = timers.iter().map(|timer| timer.payload.to_string().len()).collect();
    // How many of the oldest fit in one share (the share counts compact JSON text, as stored).
    let mut fit = 0;
    while fit < sizes.len() && sizes[..=fit].iter().sum::<usize>() <= WAITING_BYTES_PER_KIND {
        fit += 1;
    }
    assert!(sizes.iter().sum::<usize>() > 2 * WAITING_BYTES_PER_KIND, "the timers alone would fill both shares");
    assert!((1..WAITING_TIMERS).contains(&fit), "the byte share, not the count, cuts the timers: {fit}");
    let timer_ids = store_waiting(&db.url, &user, &timers).await;
    let alert = store_waiting(&db.url, &user, &[Waiting::alert("Rain from 3 pm", now - Duration::seconds(5))]).await;

    let (mut socket, _) = connect_welcomed(&app, &token_for(&user)).await;
    let frames = next_frames(&mut socket, 1 + fit).await;
    assert_eq!(ids(&frames[..1]), alert, "the small alert comes, first: {}", frames[0]);
    assert_eq!(frames[0]["content"]["message"], "Rain from 3 pm");
    assert_eq!(ids(&frames[1..]), timer_ids[..fit], "the oldest timers that fit in their share");
    assert!(frames[1]["message"].as_str().is_some_and(|message| message.len() > 4096), "{}", frames[1]["label"]);
    let seqs: Vec<u64> = frames.iter().map(|frame| frame["seq"].as_u64().expect("numbered")).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "numbered in the order sent: {seqs:?}");
    assert_eq!(frames_before_pong(&mut socket).await, Vec::<Value>::new(), "no timer past the share");
    app.shutdown().await;
}

#[tokio::test]
async fn large_timers_do_not_crowd_out_a_small_alert_on_sqlite() {
    large_timers_do_not_use_an_alerts_byte_share(Backend::Sqlite).await;
}

#[tokio::test]
async fn large_timers_do_not_crowd_out_a_small_alert_on_postgres() {
    large_timers_do_not_use_an_alerts_byte_share(Backend::Postgres).await;
}
