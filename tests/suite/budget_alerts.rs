//! Budget alerts over real sockets, on SQLite and Postgres (triggers queue every change; Postgres's
//! NOTIFY only wakes the watcher):
//! an expense that takes a category past its budget's `alert_threshold` sends one
//! `proactive_alert`, another expense past the same threshold sends none, crossing 100 % sends one
//! more; two nodes on one Postgres + Redis send each alert once; the demo traveller's seeded
//! maintenance spend sits just under its threshold, so one more expense alerts.

use std::time::Duration;

use chrono::Datelike;

use pam_gateway::Settings;
use serde_json::{Value, json};

use crate::common::db::{Backend, TestDb, test_db};
use crate::common::nodes::two_nodes;
use crate::common::push::{frames_before_pong, fresh_user, next_frame, pushes_of, send, start, wait_delivered};
use crate::common::*;

/// Writes expenses and budgets straight into the gateway's database, as the app does.
enum Writer {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Writer {
    async fn open(db: &TestDb) -> Self {
        if db.url.starts_with("sqlite:") {
            Writer::Sqlite(sqlx::SqlitePool::connect(&db.url).await.expect("the SQLite file opens"))
        } else {
            Writer::Postgres(sqlx::PgPool::connect(&db.url).await.expect("Postgres answers"))
        }
    }

    /// A budget for this month: `limit` as its monthly limit, `threshold` % (NULL = default 80).
    async fn budget(&self, user: &str, category: &str, limit: f64, threshold: Option<f64>) -> String {
        let id = uuid::Uuid::new_v4();
        match self {
            Writer::Sqlite(pool) => sqlx::query(
                "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5, date('now', 'start of month'), date('now', 'start of month', '+1 month', '-1 day'))",
            )
            .bind(id.to_string())
            .bind(user)
            .bind(category)
            .bind(limit)
            .bind(threshold)
            .execute(pool)
            .await
            .map(drop),
            Writer::Postgres(pool) => sqlx::query(
                "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date)
                 VALUES ($1, $2::uuid, $3, $3, $4, $4, $5, date_trunc('month', CURRENT_DATE)::date,
                         (date_trunc('month', CURRENT_DATE) + interval '1 month - 1 day')::date)",
            )
            .bind(id)
            .bind(user)
            .bind(category)
            .bind(limit)
            .bind(threshold)
            .execute(pool)
            .await
            .map(drop),
        }
        .expect("the budget is stored");
        id.to_string()
    }

    /// An expense dated today.
    async fn expense(&self, user: &str, category: &str, amount: f64) {
        match self {
            Writer::Sqlite(pool) => sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES (?1, ?2, ?3, date('now'))")
                .bind(user)
                .bind(amount)
                .bind(category)
                .execute(pool)
                .await
                .map(drop),
            Writer::Postgres(pool) => {
                sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES ($1::uuid, $2::numeric, $3, CURRENT_DATE)")
                    .bind(user)
                    .bind(amount.to_string())
                    .bind(category)
                    .execute(pool)
                    .await
                    .map(drop)
            }
        }
        .expect("the expense is stored");
    }

    /// Waits until `nodes` gateways LISTEN on this Postgres database (a change made before would
    /// not be notified to them); nothing to wait for on SQLite.
    async fn wait_listening(&self, nodes: i64) {
        let Writer::Postgres(pool) = self else { return };
        wait_until("the gateways listen for changes", || async {
            let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'";
            sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap() == nodes
        })
        .await;
    }

    /// Waits until the gateway evaluated the last change: the durable queue (both backends) is
    /// empty once every queued user was evaluated.
    async fn settled(&self) {
        match self {
            Writer::Sqlite(pool) => {
                wait_until("the change is evaluated", || async {
                    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pam_budget_checks").fetch_one(pool).await.unwrap() == 0
                })
                .await
            }
            Writer::Postgres(pool) => {
                wait_until("the change is evaluated", || async {
                    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pam_budget_checks").fetch_one(pool).await.unwrap() == 0
                })
                .await
            }
        }
    }

    /// The user's stored budget alerts' dedupe keys, sorted.
    async fn alert_keys(&self, user: &str) -> Vec<String> {
        let sql_sqlite = "SELECT dedupe_key FROM pam_notifications WHERE user_id = ?1 AND dedupe_key LIKE 'budget:%' ORDER BY dedupe_key";
        match self {
            Writer::Sqlite(pool) => sqlx::query_scalar(sql_sqlite).bind(user).fetch_all(pool).await,
            Writer::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT dedupe_key FROM pam_notifications WHERE user_id = $1::uuid AND dedupe_key LIKE 'budget:%' ORDER BY dedupe_key",
                )
                .bind(user)
                .fetch_all(pool)
                .await
            }
        }
        .expect("the alerts are readable")
    }
}

fn month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// Asserts `frame` is the budget alert the protocol describes, at `priority`, naming `words`.
fn assert_budget_alert(frame: &Value, priority: &str, words: &[&str]) {
    assert_eq!(frame["type"], "proactive_alert", "{frame}");
    let content = &frame["content"];
    assert_eq!(content["category"], "financial_guidance", "{frame}");
    assert_eq!(content["alert_type"], "budget_alert", "{frame}");
    assert_eq!(content["priority"], priority, "{frame}");
    assert_eq!(content["actions"], json!(["analyze_expenses"]), "{frame}");
    let message = content["message"].as_str().unwrap();
    for word in words {
        assert!(message.contains(word), "{word:?} in {message:?}");
    }
    assert!(frame["id"].as_str().is_some_and(|id| !id.is_empty()) && frame["timestamp"].is_string(), "{frame}");
}

async fn alerts_once_per_threshold(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let writer = Writer::open(&db).await;
    writer.wait_listening(1).await;
    let user = fresh_user();
    let budget = writer.budget(&user, "fuel", 100.0, None).await;
    writer.expense(&user, "fuel", 70.0).await;
    let mut socket = connect_user(&app, &user).await;

    writer.expense(&user, "fuel", 15.0).await;
    assert_budget_alert(&next_frame(&mut socket).await, "normal", &["fuel", "$85.00", "$100.00"]);

    // Past the same threshold again: nothing. Then past 100 %: the very next push is that one.
    writer.expense(&user, "fuel", 5.0).await;
    writer.settled().await;
    writer.expense(&user, "fuel", 15.0).await;
    assert_budget_alert(&next_frame(&mut socket).await, "high", &["fuel", "$105.00", "$100.00"]);
    assert_eq!(frames_before_pong(&mut socket).await, Vec::<Value>::new(), "nothing else came");

    let month = month();
    assert_eq!(writer.alert_keys(&user).await, [format!("budget:{budget}:{month}:100"), format!("budget:{budget}:{month}:80")]);
    let metrics = app.metrics().await;
    assert_eq!(pushes_of(&metrics, "proactive_alert"), 2.0, "{metrics}");
    assert_eq!(metric(&metrics, "pam_push_delivery_seconds_count{kind=\"proactive_alert\"}"), Some(2.0), "{metrics}");

    // The monitoring JSON lists them, newest first.
    let (_, body) = send(rest::client().get(app.http("/api/v1/monitoring/websockets")).bearer_auth(ADMIN_TOKEN)).await;
    let latest = body["pushes"]["latest"]["proactive_alert"].as_array().unwrap().clone();
    assert_eq!(latest.len(), 2, "{body}");
    assert!(latest.iter().all(|p| p["summary"] == "budget_alert" && p["outcome"] == "online" && p["user_id"] == user.as_str()), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_budget_crossing_alerts_once_per_threshold_on_sqlite() {
    alerts_once_per_threshold(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_budget_crossing_alerts_once_per_threshold_on_postgres() {
    alerts_once_per_threshold(Backend::Postgres).await;
}

async fn one_jump_past_both_thresholds_alerts_once(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let writer = Writer::open(&db).await;
    writer.wait_listening(1).await;
    let user = fresh_user();
    writer.budget(&user, "camping", 200.0, Some(90.0)).await;
    let mut socket = connect_user(&app, &user).await;
    writer.expense(&user, "camping", 250.0).await;
    assert_budget_alert(&next_frame(&mut socket).await, "high", &["camping", "$250.00", "$200.00"]);
    assert_eq!(frames_before_pong(&mut socket).await, Vec::<Value>::new(), "the 90 % alert is superseded, not sent");
    assert_eq!(writer.alert_keys(&user).await.len(), 2, "both thresholds are recorded for this month");
    app.shutdown().await;
}

#[tokio::test]
async fn one_expense_past_both_thresholds_sends_only_the_over_budget_alert_on_sqlite() {
    one_jump_past_both_thresholds_alerts_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn one_expense_past_both_thresholds_sends_only_the_over_budget_alert_on_postgres() {
    one_jump_past_both_thresholds_alerts_once(Backend::Postgres).await;
}

#[tokio::test]
async fn an_offline_user_gets_the_budget_alert_on_the_next_connect_once() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let writer = Writer::open(&db).await;
    let user = fresh_user();
    writer.budget(&user, "food", 50.0, None).await;
    writer.expense(&user, "food", 45.0).await;
    wait_until("the alert is stored", || async { writer.alert_keys(&user).await.len() == 1 }).await;
    let mut socket = connect_user(&app, &user).await;
    let alert = next_frame(&mut socket).await;
    assert_budget_alert(&alert, "normal", &["food", "$45.00", "$50.00"]);
    // Reading on answers the ping after the push: the proof of receipt that marks it delivered.
    assert_eq!(frames_before_pong(&mut socket).await, Vec::<Value>::new());
    wait_delivered(&db.url, alert["id"].as_str().unwrap()).await;
    drop(socket);
    let mut again = connect_user(&app, &user).await;
    assert_eq!(frames_before_pong(&mut again).await, Vec::<Value>::new(), "delivered once");
    app.shutdown().await;
}

#[tokio::test]
async fn two_nodes_on_one_postgres_and_redis_send_each_budget_alert_once() {
    let db = test_db(Backend::Postgres).await;
    let [a, b] = two_nodes(|s: &mut Settings| s.database_url = db.url.clone(), Default::default()).await;
    let writer = Writer::open(&db).await;
    writer.wait_listening(2).await;
    let user = fresh_user();
    writer.budget(&user, "fuel", 400.0, None).await;
    writer.expense(&user, "fuel", 300.0).await;
    let mut on_a = connect_user(&a.app, &user).await;
    let mut on_b = connect_user(&b.app, &user).await;

    // Both nodes hear each NOTIFY and evaluate; each alert reaches both sockets once.
    writer.expense(&user, "fuel", 30.0).await;
    for socket in [&mut on_a, &mut on_b] {
        assert_budget_alert(&next_frame(socket).await, "normal", &["$330.00", "$400.00"]);
    }
    writer.expense(&user, "fuel", 10.0).await;
    writer.expense(&user, "fuel", 80.0).await;
    for socket in [&mut on_a, &mut on_b] {
        assert_budget_alert(&next_frame(socket).await, "high", &["$420.00", "$400.00"]);
        assert_eq!(frames_before_pong(socket).await, Vec::<Value>::new());
    }
    assert_eq!(writer.alert_keys(&user).await.len(), 2);
    // Published once per alert, by whichever node stored it (both nodes share this recorder).
    assert_eq!(pushes_of(&a.app.metrics().await, "proactive_alert"), 2.0);
    a.app.shutdown().await;
    b.app.shutdown().await;
}

#[tokio::test]
async fn the_demo_traveller_is_one_expense_away_from_a_budget_alert() {
    let db = test_db(Backend::Sqlite).await;
    let app = start(&db).await;
    let writer = Writer::open(&db).await;
    let user = fresh_user();
    let gateway_db = pam_gateway::storage::database::Database::connect(&db.url, false).await.unwrap();
    assert!(pam_gateway::storage::demo_seed::seed_demo_traveller(&gateway_db, &pam_protocol::UserId::parse(&user).unwrap()).await.unwrap());
    writer.settled().await;
    assert_eq!(writer.alert_keys(&user).await, Vec::<String>::new(), "the seed itself stays under every threshold");

    let mut socket = connect_user(&app, &user).await;
    writer.expense(&user, "maintenance", 5.0).await;
    assert_budget_alert(&next_frame(&mut socket).await, "normal", &["maintenance", "$29.99", "$30.00"]);
    app.shutdown().await;
}

/// Sets the user's timezone (`user_settings.regional_preferences.timezone`).
async fn set_timezone(writer: &Writer, user: &str, zone: &str) {
    let preferences = json!({"currency": "USD", "units": "imperial", "timezone": zone});
    match writer {
        Writer::Sqlite(pool) => sqlx::query("INSERT INTO user_settings (user_id, regional_preferences) VALUES (?1, ?2)")
            .bind(user)
            .bind(preferences.to_string())
            .execute(pool)
            .await
            .map(drop),
        Writer::Postgres(pool) => sqlx::query("INSERT INTO user_settings (user_id, regional_preferences) VALUES ($1::uuid, $2)")
            .bind(user)
            .bind(&preferences)
            .execute(pool)
            .await
            .map(drop),
    }
    .expect("the user's settings are stored");
}

/// What is still queued for evaluation (durable on both backends).
async fn queued_checks(writer: &Writer) -> i64 {
    match writer {
        Writer::Sqlite(pool) => sqlx::query_scalar("SELECT count(*) FROM pam_budget_checks").fetch_one(pool).await,
        Writer::Postgres(pool) => sqlx::query_scalar("SELECT count(*) FROM pam_budget_checks").fetch_one(pool).await,
    }
    .expect("the queue is readable")
}

async fn a_change_made_while_no_gateway_runs_is_evaluated_at_start(backend: Backend) {
    let db = test_db(backend).await;
    // A first start migrates; then the change is made with no gateway running (nothing listens).
    start(&db).await.shutdown().await;
    let writer = Writer::open(&db).await;
    let user = fresh_user();
    writer.budget(&user, "fuel", 100.0, None).await;
    writer.expense(&user, "fuel", 85.0).await;
    assert!(queued_checks(&writer).await >= 1, "the change is recorded durably");

    let app = start(&db).await;
    wait_until("the change made while down is evaluated", || async { writer.alert_keys(&user).await.len() == 1 }).await;
    let mut socket = connect_user(&app, &user).await;
    assert_budget_alert(&next_frame(&mut socket).await, "normal", &["fuel", "$85.00", "$100.00"]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_budget_change_made_while_the_gateway_is_down_alerts_after_it_starts_on_sqlite() {
    a_change_made_while_no_gateway_runs_is_evaluated_at_start(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_budget_change_made_while_the_gateway_is_down_alerts_after_it_starts_on_postgres() {
    a_change_made_while_no_gateway_runs_is_evaluated_at_start(Backend::Postgres).await;
}

async fn an_expense_on_the_users_local_today_counts(backend: Backend) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let writer = Writer::open(&db).await;
    writer.wait_listening(1).await;
    // UTC+14 and UTC-11: whatever the hour, at least one of them is on another date than UTC;
    // and an expense dated the last day of the month (later this month, unless that is today),
    // which counts now: nothing evaluates the budget again when that day comes.
    for (zone, later_this_month) in [("Pacific/Kiritimati", false), ("Pacific/Pago_Pago", false), ("UTC", true)] {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let local_today = chrono::Utc::now().with_timezone(&tz).date_naive();
        let month_end = (local_today.with_day(1).unwrap() + chrono::Months::new(1)).pred_opt().unwrap();
        let expense_day = if later_this_month { month_end } else { local_today };
        let user = fresh_user();
        set_timezone(&writer, &user, zone).await;
        let (first, last) = (local_today.with_day(1).unwrap(), local_today + chrono::Duration::days(40));
        let budget = uuid::Uuid::new_v4();
        match &writer {
            Writer::Sqlite(pool) => {
                sqlx::query(concat!("INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date)", " VALUES (?1, ?2, 'fuel', 'fuel', 100, 100, NULL, ?3, ?4)"))
                    .bind(budget.to_string())
                    .bind(&user)
                    .bind(first.to_string())
                    .bind(last.to_string())
                    .execute(pool)
                    .await
                    .unwrap();
                sqlx::query(concat!("INSERT INTO expenses (user_id, amount, category, date)", " VALUES (?1, 120, 'fuel', ?2)"))
                    .bind(&user)
                    .bind(expense_day.to_string())
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Writer::Postgres(pool) => {
                sqlx::query(concat!("INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date)", " VALUES ($1, $2::uuid, 'fuel', 'fuel', 100, 100, NULL, $3, $4)"))
                    .bind(budget)
                    .bind(&user)
                    .bind(first)
                    .bind(last)
                    .execute(pool)
                    .await
                    .unwrap();
                sqlx::query(concat!("INSERT INTO expenses (user_id, amount, category, date)", " VALUES ($1::uuid, 120, 'fuel', $2)"))
                    .bind(&user)
                    .bind(expense_day)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        let month = local_today.format("%Y-%m").to_string();
        wait_until(&format!("the {zone} user's local-today expense alerts"), || async {
            writer.alert_keys(&user).await.contains(&format!("budget:{budget}:{month}:100"))
        })
        .await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_expense_dated_the_users_local_today_alerts_in_utc_plus_14_and_minus_11_on_sqlite() {
    an_expense_on_the_users_local_today_counts(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_expense_dated_the_users_local_today_alerts_in_utc_plus_14_and_minus_11_on_postgres() {
    an_expense_on_the_users_local_today_counts(Backend::Postgres).await;
}

async fn a_bulk_import_alerts_once_per_crossing(backend: Backend, users: usize) {
    let db = test_db(backend).await;
    let app = start(&db).await;
    let writer = Writer::open(&db).await;
    writer.wait_listening(1).await;
    let ids: Vec<String> = (0..users).map(|_| fresh_user()).collect();
    // Every user's budget for this month, in one transaction.
    match &writer {
        Writer::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for id in &ids {
                sqlx::query(
                    "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date)
                     VALUES (?1, ?2, 'fuel', 'fuel', 100, 100, NULL, date('now', 'start of month'), date('now', 'start of month', '+1 month', '-1 day'))",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(id)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
        Writer::Postgres(pool) => {
            let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse().unwrap()).collect();
            sqlx::query(
                "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date)
                 SELECT gen_random_uuid(), u, 'fuel', 'fuel', 100, 100, NULL, date_trunc('month', CURRENT_DATE)::date,
                        (date_trunc('month', CURRENT_DATE) + interval '1 month - 1 day')::date
                 FROM unnest($1::uuid[]) u",
            )
            .bind(&uuids)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let queued = tokio::time::Instant::now();
    wait_until_within(Duration::from_secs(90), "the budgets alone are evaluated", || async { queued_checks(&writer).await == 0 }).await;
    eprintln!("{users} users' new budgets evaluated in {:?}", queued.elapsed());
    // One statement, every user's expense past 100 %.
    match &writer {
        Writer::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for id in &ids {
                sqlx::query("INSERT INTO expenses (user_id, amount, category, date) VALUES (?1, 150, 'fuel', date('now'))")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        Writer::Postgres(pool) => {
            let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse().unwrap()).collect();
            sqlx::query(
                "INSERT INTO expenses (user_id, amount, category, date) SELECT u, 150, 'fuel', CURRENT_DATE FROM unnest($1::uuid[]) u",
            )
            .bind(&uuids)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let count_alerts = || async {
        let sql = "SELECT count(*), count(DISTINCT user_id) FROM pam_notifications WHERE dedupe_key LIKE 'budget:%:100'";
        match &writer {
            Writer::Sqlite(pool) => sqlx::query_as::<_, (i64, i64)>(sql).fetch_one(pool).await.unwrap(),
            Writer::Postgres(pool) => sqlx::query_as::<_, (i64, i64)>(sql).fetch_one(pool).await.unwrap(),
        }
    };
    let expected = users as i64;
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(60);
    while count_alerts().await != (expected, expected) {
        assert!(tokio::time::Instant::now() < deadline, "one alert per user within a minute: {:?} of {expected}", count_alerts().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{users} alerts stored {:?} after the import", started.elapsed());
    wait_until("the queue is drained", || async { queued_checks(&writer).await == 0 }).await;
    // Bounded log lines: no warning per row (the recent-errors log holds warnings and errors).
    let (_, body) = send(rest::client().get(app.http("/api/v1/monitoring/errors")).bearer_auth(ADMIN_TOKEN)).await;
    let logged = body.to_string();
    assert!(!logged.contains("budget"), "no budget warnings: {body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_bulk_import_of_3000_expenses_alerts_once_each_within_a_minute_on_postgres() {
    a_bulk_import_alerts_once_per_crossing(Backend::Postgres, 3000).await;
}

#[tokio::test]
async fn a_bulk_import_of_3000_expenses_alerts_once_each_within_a_minute_on_sqlite() {
    a_bulk_import_alerts_once_per_crossing(Backend::Sqlite, 3000).await;
}
