//! `ContextStore` on both backends against exact seeded data: profile + regional preferences,
//! month-to-date spend/budgets/income, friends in both directions with their latest public
//! location, upcoming published events, and the demo traveller seed.
//!
//! Postgres is required (`PAM_TEST_DATABASE_URL`, started by `./scripts/test.sh`). Per-user data
//! goes into the shared test database under fresh random user ids. `group_events` is not per user,
//! so the event and demo-seed tests each get a private, throw-away Postgres database.
//!
//! Dates are derived from the database's own current date, so the tests pass on any day of the
//! month (on the 1st, "first of the month" and "today" are the same day).

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, SubsecRound, Utc};
use pam_actors::{CategorySpend, ContextStore, EventSummary, FinancialContext, Friend, ProfileContext};
use pam_gateway::storage::database::Database;
use pam_gateway::storage::demo_seed::seed_demo_traveller;
use pam_protocol::UserId;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::common::db::{private_postgres, shared_postgres, sqlite};

// ---------------------------------------------------------------------------------------------
// Seeding helpers: one SQL text for both backends (`$n` becomes `?n` on SQLite), typed binds.

enum Arg {
    Id(Uuid),
    Text(String),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    Ts(DateTime<Utc>),
    Json(Value),
    List(Vec<String>),
}

fn text(s: &str) -> Arg {
    Arg::Text(s.to_string())
}

async fn exec(db: &Database, sql: &'static str, args: Vec<Arg>) {
    match db {
        Database::Postgres(pool) => {
            let mut query = sqlx::query(sql);
            for arg in args {
                query = match arg {
                    Arg::Id(v) => query.bind(v),
                    Arg::Text(v) => query.bind(v),
                    Arg::Num(v) => query.bind(v),
                    Arg::Bool(v) => query.bind(v),
                    Arg::Date(v) => query.bind(v),
                    Arg::Ts(v) => query.bind(v),
                    Arg::Json(v) => query.bind(v),
                    Arg::List(v) => query.bind(v),
                };
            }
            query.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        Database::Sqlite(pool) => {
            let sqlite_sql = sql.replace('$', "?");
            let mut query = sqlx::query(AssertSqlSafe(sqlite_sql));
            for arg in args {
                query = match arg {
                    Arg::Id(v) => query.bind(v.to_string()),
                    Arg::Text(v) => query.bind(v),
                    Arg::Num(v) => query.bind(v),
                    Arg::Bool(v) => query.bind(i64::from(v)),
                    Arg::Date(v) => query.bind(v.format("%Y-%m-%d").to_string()),
                    Arg::Ts(v) => query.bind(v.to_rfc3339_opts(SecondsFormat::Millis, true)),
                    Arg::Json(v) => query.bind(v.to_string()),
                    Arg::List(v) => query.bind(serde_json::to_string(&v).unwrap()),
                };
            }
            query.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// The database's own current date (what the store's month-to-date window uses).
async fn db_today(db: &Database) -> NaiveDate {
    match db {
        Database::Postgres(pool) => sqlx::query_scalar("SELECT CURRENT_DATE").fetch_one(pool).await.unwrap(),
        Database::Sqlite(pool) => {
            let today: String = sqlx::query_scalar("SELECT date('now')").fetch_one(pool).await.unwrap();
            NaiveDate::parse_from_str(&today, "%Y-%m-%d").unwrap()
        }
    }
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(chrono::Datelike::day(&day)) - 1)
}

fn new_user() -> (Uuid, UserId) {
    let id = Uuid::new_v4();
    (id, UserId::parse(&id.to_string()).unwrap())
}

async fn add_user(db: &Database, id: Uuid) {
    if let Database::Postgres(pool) = db {
        sqlx::query("INSERT INTO auth.users (id) VALUES ($1) ON CONFLICT DO NOTHING").bind(id).execute(pool).await.unwrap();
    }
}

async fn add_profile(db: &Database, id: Uuid, full_name: Option<&str>, nickname: Option<&str>) {
    add_user(db, id).await;
    exec(db, "INSERT INTO profiles (id) VALUES ($1)", vec![Arg::Id(id)]).await;
    if let Some(full_name) = full_name {
        exec(db, "UPDATE profiles SET full_name = $2 WHERE id = $1", vec![Arg::Id(id), text(full_name)]).await;
    }
    if let Some(nickname) = nickname {
        exec(db, "UPDATE profiles SET nickname = $2 WHERE id = $1", vec![Arg::Id(id), text(nickname)]).await;
    }
}

async fn add_expense(db: &Database, user: Uuid, category: &str, amount: f64, date: NaiveDate) {
    exec(
        db,
        "INSERT INTO expenses (user_id, amount, category, date, description) VALUES ($1, $2, $3, $4, 'test')",
        vec![Arg::Id(user), Arg::Num(amount), text(category), Arg::Date(date)],
    )
    .await;
}

async fn add_budget(db: &Database, user: Uuid, category: &str, budgeted: f64, monthly: f64, start: NaiveDate, end: NaiveDate) {
    exec(
        db,
        "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, start_date, end_date)
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7)",
        vec![
            Arg::Id(Uuid::new_v4()),
            Arg::Id(user),
            text(category),
            Arg::Num(budgeted),
            Arg::Num(monthly),
            Arg::Date(start),
            Arg::Date(end),
        ],
    )
    .await;
}

async fn add_income(db: &Database, user: Uuid, amount: f64, date: NaiveDate) {
    exec(
        db,
        "INSERT INTO income_entries (id, user_id, source, amount, date) VALUES ($1, $2, 'test', $3, $4)",
        vec![Arg::Id(Uuid::new_v4()), Arg::Id(user), Arg::Num(amount), Arg::Date(date)],
    )
    .await;
}

async fn add_friendship(db: &Database, requester: Uuid, addressee: Uuid, status: &str) {
    exec(
        db,
        "INSERT INTO user_friendships (id, requester_id, addressee_id, status) VALUES ($1, $2, $3, $4)",
        vec![Arg::Id(Uuid::new_v4()), Arg::Id(requester), Arg::Id(addressee), text(status)],
    )
    .await;
}

struct Place<'a> {
    name: &'a str,
    latitude: f64,
    longitude: f64,
    status: &'a str,
    public: bool,
    updated: DateTime<Utc>,
}

async fn add_location(db: &Database, user: Uuid, place: Place<'_>) {
    exec(
        db,
        "INSERT INTO friend_locations (id, user_id, latitude, longitude, location_name, status, is_public, last_updated, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        vec![
            Arg::Id(Uuid::new_v4()),
            Arg::Id(user),
            Arg::Num(place.latitude),
            Arg::Num(place.longitude),
            text(place.name),
            text(place.status),
            Arg::Bool(place.public),
            Arg::Ts(place.updated),
        ],
    )
    .await;
}

/// Inserts an event; `location` is JSON (or `None` for SQL NULL).
async fn add_event(db: &Database, title: &str, status: &str, start: DateTime<Utc>, location: Option<Value>) {
    let mut args = vec![Arg::Id(Uuid::new_v4()), text(title), text(status), Arg::Ts(start)];
    match location {
        Some(location) => {
            args.push(Arg::Json(location));
            exec(db, "INSERT INTO group_events (id, title, status, start_date, location) VALUES ($1, $2, $3, $4, $5)", args).await;
        }
        None => exec(db, "INSERT INTO group_events (id, title, status, start_date) VALUES ($1, $2, $3, $4)", args).await,
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn category(name: &str, spent: f64, limit: Option<f64>, remaining: Option<f64>, pct: Option<f64>, over: bool) -> CategorySpend {
    CategorySpend { category: name.into(), spent, limit, remaining, utilisation_pct: pct, over_budget: over }
}

// ---------------------------------------------------------------------------------------------
// Profile

async fn profile_scenario(db: &Database) {
    let (_, unknown) = new_user();
    assert_eq!(db.load_profile(&unknown).await.unwrap(), None, "no profile row → None");

    let (id, user) = new_user();
    add_user(db, id).await;
    exec(
        db,
        "INSERT INTO profiles (id, email, full_name, nickname, region, vehicle_type, vehicle_make_model, fuel_type, travel_style, interests)
         VALUES ($1, 'kim@example.com', 'Kim Nguyen', 'Kimmy', 'Queensland', 'Caravan', 'Jayco Journey', 'petrol', $2, $3)",
        vec![Arg::Id(id), Arg::List(vec!["slow travel".into(), "free camping".into()]), Arg::List(vec!["fishing".into()])],
    )
    .await;
    exec(
        db,
        "INSERT INTO user_settings (user_id, regional_preferences) VALUES ($1, $2)",
        vec![Arg::Id(id), Arg::Json(json!({"currency": "AUD", "units": "metric", "timezone": "Australia/Brisbane"}))],
    )
    .await;
    // Another user's settings never leak into this one's profile.
    let (other, other_user) = new_user();
    add_profile(db, other, None, Some("Bo")).await;
    let (settings_only, _) = new_user();
    exec(
        db,
        "INSERT INTO user_settings (user_id, regional_preferences) VALUES ($1, $2)",
        vec![Arg::Id(settings_only), Arg::Json(json!({"currency": "EUR"}))],
    )
    .await;

    assert_eq!(
        db.load_profile(&user).await.unwrap(),
        Some(ProfileContext {
            full_name: Some("Kim Nguyen".into()),
            nickname: Some("Kimmy".into()),
            email: Some("kim@example.com".into()),
            region: Some("Queensland".into()),
            vehicle_type: Some("Caravan".into()),
            vehicle_make_model: Some("Jayco Journey".into()),
            fuel_type: Some("petrol".into()),
            travel_style: vec!["slow travel".into(), "free camping".into()],
            interests: vec!["fishing".into()],
            currency: Some("AUD".into()),
            units: Some("metric".into()),
            timezone: Some("Australia/Brisbane".into()),
        })
    );
    assert_eq!(
        db.load_profile(&other_user).await.unwrap(),
        Some(ProfileContext { nickname: Some("Bo".into()), ..Default::default() }),
        "a profile without settings or arrays"
    );
}

#[tokio::test]
async fn profile_and_regional_preferences_on_postgres() {
    profile_scenario(&shared_postgres().await.db).await;
}

#[tokio::test]
async fn profile_and_regional_preferences_on_sqlite() {
    profile_scenario(&sqlite().await.db).await;
}

// ---------------------------------------------------------------------------------------------
// Financial

async fn financial_scenario(db: &Database) {
    let today = db_today(db).await;
    let first = first_of_month(today);
    let last_month = first - Duration::days(1);
    let tomorrow = today + Duration::days(1);
    let (id, user) = new_user();
    let (other, _) = new_user();

    // Spend this month: fuel 100.00, food 200.00, camping 45.00, laundry 12.34 (no budget).
    add_expense(db, id, "fuel", 50.25, first).await;
    add_expense(db, id, "fuel", 30.10, today).await;
    add_expense(db, id, "fuel", 19.65, today).await;
    add_expense(db, id, "food", 79.50, first).await;
    add_expense(db, id, "food", 120.50, today).await;
    add_expense(db, id, "camping", 45.00, today).await;
    add_expense(db, id, "laundry", 12.34, today).await;
    // Ignored: last month, dated after today, another user.
    add_expense(db, id, "fuel", 500.00, last_month).await;
    add_expense(db, id, "fuel", 999.00, tomorrow).await;
    add_expense(db, other, "fuel", 1000.00, today).await;

    // fuel: monthly_limit > 0 wins over budgeted_amount.
    add_budget(db, id, "fuel", 999.00, 80.00, first, today + Duration::days(30)).await;
    // food: monthly_limit 0 → budgeted_amount applies.
    add_budget(db, id, "food", 600.00, 0.00, first, today + Duration::days(30)).await;
    // camping: two active budgets sum; the second is active on exactly today (inclusive edges).
    add_budget(db, id, "camping", 0.00, 100.00, first, today + Duration::days(30)).await;
    add_budget(db, id, "camping", 50.00, 0.00, today, today).await;
    // propane: a budget without spend.
    add_budget(db, id, "propane", 40.00, 40.00, first, today + Duration::days(30)).await;
    // Ignored: expired yesterday, starts tomorrow, another user's.
    add_budget(db, id, "food", 10_000.00, 10_000.00, first - Duration::days(40), today - Duration::days(1)).await;
    add_budget(db, id, "fuel", 10_000.00, 10_000.00, tomorrow, tomorrow + Duration::days(30)).await;
    add_budget(db, other, "laundry", 5.00, 5.00, first, today + Duration::days(30)).await;

    add_income(db, id, 1500.00, first).await;
    add_income(db, id, 250.75, today).await;
    add_income(db, id, 999.00, last_month).await;
    add_income(db, id, 50.00, tomorrow).await;
    add_income(db, other, 10_000.00, today).await;

    let financial = db.load_financial(&user).await.unwrap();
    assert_eq!(
        financial,
        FinancialContext {
            month: today.format("%Y-%m").to_string(),
            total_spent: 357.34,
            total_budget: 870.00,
            // 870 - (100 + 200 + 45 + 0): laundry has no budget.
            total_remaining: 525.00,
            income_total: 1750.75,
            categories: vec![
                category("camping", 45.00, Some(150.00), Some(105.00), Some(30.0), false),
                category("food", 200.00, Some(600.00), Some(400.00), Some(33.3), false),
                category("fuel", 100.00, Some(80.00), Some(-20.00), Some(125.0), true),
                category("laundry", 12.34, None, None, None, false),
                category("propane", 0.00, Some(40.00), Some(40.00), Some(0.0), false),
            ],
        }
    );

    // A user with nothing at all.
    let (_, empty) = new_user();
    assert_eq!(
        db.load_financial(&empty).await.unwrap(),
        FinancialContext { month: today.format("%Y-%m").to_string(), ..Default::default() }
    );
}

#[tokio::test]
async fn month_to_date_spend_budgets_and_income_on_postgres() {
    financial_scenario(&shared_postgres().await.db).await;
}

#[tokio::test]
async fn month_to_date_spend_budgets_and_income_on_sqlite() {
    financial_scenario(&sqlite().await.db).await;
}

// ---------------------------------------------------------------------------------------------
// Friends

async fn friends_scenario(db: &Database) {
    let now = Utc::now().trunc_subsecs(0);
    let (id, user) = new_user();
    add_profile(db, id, Some("Me Myself"), None).await;
    let (zoe, ace, anon, pending, declined, blocked, stranger1, stranger2) =
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    add_profile(db, zoe, Some("Zoe Park"), Some("Z")).await;
    add_profile(db, ace, None, Some("Ace")).await; // nickname only
    // `anon` has no profile row at all → "a friend".
    add_profile(db, pending, Some("Pending Pat"), None).await;
    add_profile(db, declined, Some("Declined Dee"), None).await;
    add_profile(db, blocked, Some("Blocked Bob"), None).await;
    add_profile(db, stranger1, Some("Stranger One"), None).await;
    add_profile(db, stranger2, Some("Stranger Two"), None).await;

    add_friendship(db, id, zoe, "accepted").await; // the user asked
    add_friendship(db, ace, id, "accepted").await; // the user was asked
    add_friendship(db, id, anon, "accepted").await;
    add_friendship(db, id, pending, "pending").await;
    add_friendship(db, declined, id, "declined").await;
    add_friendship(db, id, blocked, "blocked").await;
    add_friendship(db, stranger1, stranger2, "accepted").await; // not the user's

    let place = |name, public, minutes_ago| Place {
        name,
        latitude: 44.0582,
        longitude: -121.3153,
        status: "traveling",
        public,
        updated: now - Duration::minutes(minutes_ago),
    };
    add_location(db, zoe, Place { latitude: 43.1, longitude: -120.5, status: "camped", ..place("Old Town", true, 120) }).await;
    add_location(db, zoe, Place { status: "camped", ..place("Bend, OR", true, 60) }).await;
    add_location(db, zoe, place("Secret Spot", false, 10)).await; // newest but private
    add_location(db, ace, place("Hidden Hollow", false, 5)).await; // only private
    add_location(db, pending, place("Pending Place", true, 5)).await;
    add_location(db, stranger1, place("Stranger Place", true, 5)).await;

    let social = db.load_social(&user).await.unwrap();
    assert_eq!(
        social.friends,
        vec![
            Friend { user_id: ace.to_string(), name: "Ace".into(), ..Default::default() },
            Friend {
                user_id: zoe.to_string(),
                name: "Zoe Park".into(),
                location_name: Some("Bend, OR".into()),
                latitude: Some(44.0582),
                longitude: Some(-121.3153),
                status: Some("camped".into()),
            },
            Friend { user_id: anon.to_string(), name: "a friend".into(), ..Default::default() },
        ],
        "accepted friendships in both directions, sorted by name, latest public location"
    );

    // The friendship is visible from the other side too.
    let zoe_user = UserId::parse(&zoe.to_string()).unwrap();
    let from_zoe = db.load_social(&zoe_user).await.unwrap();
    assert_eq!(from_zoe.friends.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["Me Myself"]);
    assert_eq!(from_zoe.friends[0].location_name, None);
}

#[tokio::test]
async fn friends_in_both_directions_with_latest_public_location_on_postgres() {
    friends_scenario(&shared_postgres().await.db).await;
}

#[tokio::test]
async fn friends_in_both_directions_with_latest_public_location_on_sqlite() {
    friends_scenario(&sqlite().await.db).await;
}

// ---------------------------------------------------------------------------------------------
// Events (not per user: each test has a database of its own)

async fn events_scenario(db: &Database) {
    let now = Utc::now().trunc_subsecs(0);
    let day = |n: i64| now + Duration::days(n);
    add_event(db, "Middle", "published", day(30), None).await;
    add_event(db, "Edge of window", "published", day(89), Some(json!({"lat": 1.5}))).await;
    add_event(db, "Soonest", "published", day(1), Some(json!({"name": "Quartzsite, AZ", "lat": 33.66}))).await;
    add_event(db, "Bare string", "published", day(10), Some(json!("Moab, UT"))).await;
    add_event(db, "Draft", "draft", day(2), None).await;
    add_event(db, "Cancelled", "cancelled", day(3), None).await;
    add_event(db, "Yesterday", "published", day(-1), None).await;
    add_event(db, "91 days out", "published", day(91), None).await;
    add_event(db, "100 days out", "published", day(100), None).await;

    let (_, user) = new_user();
    let social = db.load_social(&user).await.unwrap();
    assert!(social.friends.is_empty());
    assert_eq!(
        social.events,
        vec![
            EventSummary { title: "Soonest".into(), start_date: iso(day(1)), location: Some("Quartzsite, AZ".into()) },
            EventSummary { title: "Bare string".into(), start_date: iso(day(10)), location: Some("Moab, UT".into()) },
            EventSummary { title: "Middle".into(), start_date: iso(day(30)), location: None },
            EventSummary { title: "Edge of window".into(), start_date: iso(day(89)), location: Some(r#"{"lat":1.5}"#.into()) },
        ]
    );
}

async fn events_cap_scenario(db: &Database) {
    let now = Utc::now().trunc_subsecs(0);
    // Inserted latest first, so the order must come from the query.
    for n in (1..=30).rev() {
        add_event(db, &format!("Event {n:02}"), "published", now + Duration::days(n), None).await;
    }
    let (_, user) = new_user();
    let events = db.load_social(&user).await.unwrap().events;
    let expected: Vec<String> = (1..=25).map(|n| format!("Event {n:02}")).collect();
    assert_eq!(events.iter().map(|e| e.title.clone()).collect::<Vec<_>>(), expected, "≤ 25, soonest first");
}

#[tokio::test]
async fn published_events_in_the_next_90_days_on_postgres() {
    events_scenario(&private_postgres().await.db).await;
}

#[tokio::test]
async fn published_events_in_the_next_90_days_on_sqlite() {
    events_scenario(&sqlite().await.db).await;
}

#[tokio::test]
async fn at_most_25_events_on_postgres() {
    events_cap_scenario(&private_postgres().await.db).await;
}

#[tokio::test]
async fn at_most_25_events_on_sqlite() {
    events_cap_scenario(&sqlite().await.db).await;
}

// ---------------------------------------------------------------------------------------------
// Demo seed

async fn demo_seed_scenario(db: &Database) {
    let (_, user) = new_user();
    assert!(seed_demo_traveller(db, &user).await.unwrap(), "first call seeds");
    assert!(!seed_demo_traveller(db, &user).await.unwrap(), "second call finds the profile and writes nothing");

    let profile = db.load_profile(&user).await.unwrap().expect("demo profile");
    assert_eq!(profile.full_name.as_deref(), Some("Sam Rivers"));
    assert_eq!(profile.vehicle_make_model.as_deref(), Some("Winnebago Minnie Winnie 22M"));
    assert_eq!(
        (profile.currency.as_deref(), profile.units.as_deref(), profile.timezone.as_deref()),
        (Some("USD"), Some("imperial"), Some("America/Los_Angeles"))
    );
    assert!(!profile.travel_style.is_empty() && !profile.interests.is_empty());

    let financial = db.load_financial(&user).await.unwrap();
    let by_name = |name: &str| financial.categories.iter().find(|c| c.category == name).cloned().unwrap();
    let fuel = by_name("fuel");
    assert_eq!((fuel.spent, fuel.limit), (251.85, Some(400.00)), "three fuel entries this month");
    assert_eq!(by_name("food").limit, Some(600.00), "monthly_limit 0 → budgeted_amount");
    assert_eq!(by_name("camping").limit, Some(300.00));
    assert_eq!(financial.total_spent, 520.89);
    assert_eq!(financial.income_total, 1850.00);

    let social = db.load_social(&user).await.unwrap();
    let friends: Vec<_> = social.friends.iter().map(|f| (f.name.as_str(), f.location_name.as_deref())).collect();
    assert_eq!(friends, [("Jordan Lee", Some("Bend, OR")), ("Maya Torres", Some("Moab, UT"))]);
    assert_eq!(social.events.len(), 1);
    assert_eq!(social.events[0].title, "Pacific Northwest RV Meetup");

    // A second demo user in the same database shares the fixed friends and event.
    let (_, second) = new_user();
    assert!(seed_demo_traveller(db, &second).await.unwrap());
    let social = db.load_social(&second).await.unwrap();
    assert_eq!(social.friends.len(), 2);
    assert_eq!(social.events.len(), 1);
    assert_eq!(db.load_social(&user).await.unwrap().friends.len(), 2, "the first demo user keeps exactly their two friends");
}

#[tokio::test]
async fn demo_traveller_is_seeded_once_on_postgres() {
    demo_seed_scenario(&private_postgres().await.db).await;
}

#[tokio::test]
async fn demo_traveller_is_seeded_once_on_sqlite() {
    demo_seed_scenario(&sqlite().await.db).await;
}
