//! The builtin assistant's timer phrases over real sockets (legacy and v2), on SQLite and on
//! Postgres: "remind me in …", "set a timer for …" and "set an alarm for …" create timers that
//! the REST endpoint lists, "what timers do I have?" lists them, "cancel my timers" cancels them;
//! an alarm fires at the next local time of the user's `user_settings` timezone; a retried v2
//! turn sets its timer once while the same words in a new turn set another; the pending-timer
//! limit is answered in plain words.

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::common::db::{Backend, TestDb, test_db};
use crate::common::fake_llm::legacy_chat;
use crate::common::push::{create_timer, fresh_user, list_timers, start};
use crate::common::v2::{connect_welcomed, frames_until};
use crate::common::*;

async fn ask_legacy(client: &mut WsClient, message: &str) -> String {
    legacy_chat(client, message).await["message"].as_str().unwrap().to_string()
}

async fn ask_v2(client: &mut WsClient, id: &str, message: &str) -> String {
    client.send_json(json!({"type": "chat", "id": id, "message": message})).await;
    let end = frames_until(client, "chat_end").await.pop().unwrap();
    end["message"].as_str().unwrap().to_string()
}

fn fire_at(timer: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(timer["fire_at"].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// Gives `user` a profile whose `user_settings.regional_preferences.timezone` is `tz`.
async fn set_timezone(db: &TestDb, backend: Backend, user: &str, tz: &str) {
    let preferences = json!({"currency": "USD", "timezone": tz}).to_string();
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("INSERT INTO profiles (id) VALUES (?1)").bind(user).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO user_settings (user_id, regional_preferences) VALUES (?1, ?2)")
                .bind(user)
                .bind(&preferences)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let id = uuid::Uuid::parse_str(user).unwrap();
            for statement in ["INSERT INTO auth.users (id) VALUES ($1) ON CONFLICT DO NOTHING", "INSERT INTO profiles (id) VALUES ($1)"] {
                sqlx::query(statement).bind(id).execute(&pool).await.unwrap();
            }
            sqlx::query("INSERT INTO user_settings (user_id, regional_preferences) VALUES ($1, $2::jsonb)")
                .bind(id)
                .bind(&preferences)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

async fn phrases_create_list_and_cancel_timers(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let user = fresh_user();
    let mut old = connect_user(&app, &user).await;
    let (mut new, _) = connect_welcomed(&app, &token_for(&user)).await;

    let before = Utc::now();
    let reminder = ask_legacy(&mut old, "Remind me in 20 minutes to check the tyres").await;
    assert!(reminder.starts_with("Done: I'll remind you to check the tyres at "), "{reminder}");
    assert!(reminder.ends_with(" UTC (your timezone isn't set, so this is UTC)."), "no timezone set: UTC, said so ({reminder})");
    let timer = ask_v2(&mut new, "timer-1", "set a timer for 10 minutes").await;
    assert!(timer.starts_with("Done: timer set for 10 minutes. It goes off at "), "{timer}");
    let after = Utc::now();

    let timers = list_timers(&app, &user).await;
    assert_eq!(timers.len(), 2, "{timers:?}");
    assert_eq!(timers[0]["label"], "Timer (10 minutes)");
    assert_eq!(timers[1]["label"], "check the tyres");
    assert_eq!(timers[1]["message"], "Reminder: check the tyres");
    assert!(fire_at(&timers[0]) >= before + Duration::minutes(10) && fire_at(&timers[0]) <= after + Duration::minutes(10));
    assert!(fire_at(&timers[1]) >= before + Duration::minutes(20) && fire_at(&timers[1]) <= after + Duration::minutes(20));
    // The answer names the time the timer really fires.
    let local = fire_at(&timers[1]).format("%-I:%M %P").to_string();
    assert!(reminder.contains(&local), "{reminder} vs {local}");

    // A retried v2 turn (same id) is answered again without a second timer.
    assert_eq!(ask_v2(&mut new, "timer-1", "set a timer for 10 minutes").await, timer);
    assert_eq!(list_timers(&app, &user).await.len(), 2);

    let listed = ask_legacy(&mut old, "What timers do I have?").await;
    assert!(listed.starts_with("You have 2 timers:\n• Timer (10 minutes): "), "{listed}");
    assert!(listed.contains("\n• check the tyres: "), "{listed}");

    let cancelled = ask_v2(&mut new, "cancel-1", "cancel my timers").await;
    assert!(cancelled.starts_with("Cancelled 2 timers:\n• Timer (10 minutes), due "), "{cancelled}");
    assert!(list_timers(&app, &user).await.is_empty(), "nothing pending after the cancel");
    assert_eq!(ask_legacy(&mut old, "what timers do I have").await, "You have no timers or alarms set.");
    app.shutdown().await;
}

#[tokio::test]
async fn timer_phrases_create_list_and_cancel_timers_on_sqlite() {
    phrases_create_list_and_cancel_timers(Backend::Sqlite).await;
}

#[tokio::test]
async fn timer_phrases_create_list_and_cancel_timers_on_postgres() {
    phrases_create_list_and_cancel_timers(Backend::Postgres).await;
}

async fn an_alarm_is_the_next_local_time_in_the_users_timezone(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let user = fresh_user();
    set_timezone(&db, backend, &user, "America/Los_Angeles").await;
    let la: Tz = "America/Los_Angeles".parse().unwrap();
    let mut old = connect_user(&app, &user).await;
    let (mut new, _) = connect_welcomed(&app, &token_for(&user)).await;

    let morning = ask_legacy(&mut old, "set an alarm for 6:30").await;
    assert!(morning.starts_with("Done: alarm set for 6:30 am "), "{morning}");
    assert!(morning.ends_with(" (your time, America/Los_Angeles)."), "whose clock it is: {morning}");
    let evening = ask_v2(&mut new, "alarm-2", "Set an alarm for 6:30 pm").await;
    assert!(evening.starts_with("Done: alarm set for 6:30 pm "), "{evening}");
    assert!(evening.ends_with(" (your time, America/Los_Angeles)."), "{evening}");

    let now = Utc::now();
    let timers = list_timers(&app, &user).await;
    assert_eq!(timers.len(), 2, "{timers:?}");
    let mut local: Vec<(u32, u32)> = timers.iter().map(|t| fire_at(t).with_timezone(&la)).map(|at| (at.hour(), at.minute())).collect();
    local.sort_unstable();
    assert_eq!(local, [(6, 30), (18, 30)], "both fire at the asked wall-clock time in Los Angeles");
    for timer in &timers {
        assert_eq!(timer["timer_type"], "alarm");
        let ahead = fire_at(timer) - now;
        assert!(ahead > Duration::zero() && ahead <= Duration::hours(25), "the next occurrence: {timer}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_alarm_fires_at_the_next_local_time_of_the_users_timezone_on_sqlite() {
    an_alarm_is_the_next_local_time_in_the_users_timezone(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_alarm_fires_at_the_next_local_time_of_the_users_timezone_on_postgres() {
    an_alarm_is_the_next_local_time_in_the_users_timezone(Backend::Postgres).await;
}

#[tokio::test]
async fn over_the_pending_limit_the_assistant_says_so_in_plain_words_and_sets_nothing() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let user = fresh_user();
    for i in 0..50 {
        let (status, body) = create_timer(&app, &user, json!({"label": format!("t{i}"), "duration_s": 3600})).await;
        assert_eq!(status, 201, "{body}");
    }
    // Saying it twice is two turns (never a response-cache repeat): two timers.
    let other = fresh_user();
    let mut twice = connect_user(&app, &other).await;
    for _ in 0..2 {
        assert!(ask_legacy(&mut twice, "set a timer for 5 minutes").await.starts_with("Done: timer set for 5 minutes."));
    }
    assert_eq!(list_timers(&app, &other).await.len(), 2);

    let mut client = connect_user(&app, &user).await;
    let answer = ask_legacy(&mut client, "set a timer for 5 minutes").await;
    assert!(answer.starts_with("You already have 50 timers waiting"), "{answer}");
    assert_eq!(list_timers(&app, &user).await.len(), 50);
    let unclear = ask_legacy(&mut client, "set a timer").await;
    assert!(unclear.starts_with("When should it go off?"), "{unclear}");
    let abilities = ask_legacy(&mut client, "what can you do?").await;
    assert!(abilities.contains("set a timer for 10 minutes") && abilities.contains("cancel my timers"), "{abilities}");
    app.shutdown().await;
}

/// "turn off my 6:30 alarm" dismisses that alarm only; "turn off my alarm" with two alarms asks
/// which and cancels nothing; "cancel my timers" cancels everything.
#[tokio::test]
async fn a_cancel_acts_on_the_timer_it_names_and_asks_when_the_name_is_ambiguous() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let user = fresh_user();
    let mut socket = connect_user(&app, &user).await;
    for phrase in ["set an alarm for 6:30", "set an alarm for 7:15", "set a timer for 10 minutes"] {
        let answer = ask_legacy(&mut socket, phrase).await;
        assert!(answer.starts_with("Done:"), "{phrase}: {answer}");
    }
    assert_eq!(list_timers(&app, &user).await.len(), 3);

    let asked = ask_legacy(&mut socket, "turn off my alarm").await;
    assert!(asked.starts_with("You have 2 alarms:") && asked.contains("Which one"), "{asked}");
    assert_eq!(list_timers(&app, &user).await.len(), 3, "an ambiguous name cancels nothing");

    let one = ask_legacy(&mut socket, "turn off my 6:30 alarm").await;
    assert!(one.starts_with("Cancelled 1 timer:\n• Alarm"), "{one}");
    let left = list_timers(&app, &user).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|t| (fire_at(t).hour(), fire_at(t).minute()) != (6, 30)), "the 6:30 alarm is the one gone: {left:?}");
    let again = ask_legacy(&mut socket, "turn off my 6:30 alarm").await;
    assert!(again.contains("no alarm at 6:30"), "{again}");

    let all = ask_legacy(&mut socket, "cancel my timers").await;
    assert!(all.starts_with("Cancelled 2 timers:"), "{all}");
    assert!(list_timers(&app, &user).await.is_empty());
    app.shutdown().await;
}
