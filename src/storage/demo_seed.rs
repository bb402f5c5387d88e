//! One demo traveller, seeded once, so the context loaders have something real to read: a profile
//! with regional preferences, this month's expenses, active budgets, an income entry, two accepted
//! friends (one in each direction) with public locations, and a published group event ~10 days out.
//!
//! All dates come from the database's own clock (`CURRENT_DATE` / `date('now')`), clamped to the
//! first of the month, so every expense is month to date whatever day the seed runs. Friends and
//! the event have fixed ids and are shared by every demo user seeded into the same database; the
//! event's start is moved forward again each time a new demo user is seeded.

use anyhow::Context;
use pam_protocol::UserId;
use serde_json::json;
use sqlx::SqlitePool;
use uuid::Uuid;

use super::database::Database;

/// Friend who accepted the demo user's request (demo user is the requester).
pub const DEMO_FRIEND_BEND: Uuid = Uuid::from_u128(0x7f1c2a4e_9b3d_4e5f_8a6b_1c2d3e4f5a01);
/// Friend whose request the demo user accepted (demo user is the addressee).
pub const DEMO_FRIEND_MOAB: Uuid = Uuid::from_u128(0x7f1c2a4e_9b3d_4e5f_8a6b_1c2d3e4f5a02);
/// The published group event.
pub const DEMO_EVENT: Uuid = Uuid::from_u128(0x7f1c2a4e_9b3d_4e5f_8a6b_1c2d3e4f5e01);
const DEMO_GROUP: Uuid = Uuid::from_u128(0x7f1c2a4e_9b3d_4e5f_8a6b_1c2d3e4f5b01);
const LOCATION_BEND: Uuid = Uuid::from_u128(0x7f1c2a4e_9b3d_4e5f_8a6b_1c2d3e4f5c01);
const LOCATION_MOAB: Uuid = Uuid::from_u128(0x7f1c2a4e_9b3d_4e5f_8a6b_1c2d3e4f5c02);

const TRAVEL_STYLE: [&str; 2] = ["slow travel", "boondocking"];
const INTERESTS: [&str; 3] = ["hiking", "photography", "national parks"];

/// (days before today — clamped to the 1st of the month, category, amount, description).
const EXPENSES: [(i32, &str, f64, &str); 8] = [
    (1, "fuel", 84.20, "Diesel — Bend, OR"),
    (5, "fuel", 76.55, "Diesel — Sisters, OR"),
    (9, "fuel", 91.10, "Diesel — Klamath Falls, OR"),
    (0, "food", 42.30, "Farmers market"),
    (3, "food", 118.75, "Groceries"),
    (2, "camping", 38.00, "Tumalo State Park"),
    (6, "camping", 45.00, "Crater Lake RV site"),
    (4, "maintenance", 24.99, "Propane refill"),
];

/// (category, name, budgeted_amount, monthly_limit, alert_threshold %) — food has no monthly
/// limit, so its budgeted amount applies. Maintenance sits just under its 90 % alert (24.99 of
/// 30.00): logging one more maintenance expense of $2.01 or more sends a budget alert (the demo).
const BUDGETS: [(&str, &str, f64, f64, f64); 4] = [
    ("fuel", "Fuel", 400.00, 400.00, 80.0),
    ("food", "Groceries & eating out", 600.00, 0.00, 80.0),
    ("camping", "Campsites", 250.00, 300.00, 80.0),
    ("maintenance", "Propane & upkeep", 30.00, 30.00, 90.0),
];

struct DemoFriend {
    id: Uuid,
    location_id: Uuid,
    full_name: &'static str,
    nickname: &'static str,
    region: &'static str,
    location_name: &'static str,
    latitude: f64,
    longitude: f64,
    status: &'static str,
    /// Whether the demo user sent the request.
    demo_user_requested: bool,
}

const FRIENDS: [DemoFriend; 2] = [
    DemoFriend {
        id: DEMO_FRIEND_BEND,
        location_id: LOCATION_BEND,
        full_name: "Jordan Lee",
        nickname: "Jordy",
        region: "Pacific Northwest",
        location_name: "Bend, OR",
        latitude: 44.0582,
        longitude: -121.3153,
        status: "camped",
        demo_user_requested: true,
    },
    DemoFriend {
        id: DEMO_FRIEND_MOAB,
        location_id: LOCATION_MOAB,
        full_name: "Maya Torres",
        nickname: "Maya",
        region: "Desert Southwest",
        location_name: "Moab, UT",
        latitude: 38.5733,
        longitude: -109.5498,
        status: "traveling",
        demo_user_requested: false,
    },
];

const EVENT_TITLE: &str = "Pacific Northwest RV Meetup";
const EVENT_DESCRIPTION: &str = "Potluck, rig tours and a sunset hike. All travellers welcome.";

fn regional_preferences() -> serde_json::Value {
    json!({"currency": "USD", "units": "imperial", "timezone": "America/Los_Angeles"})
}

fn event_location() -> serde_json::Value {
    json!({"name": "Hood River County Fairgrounds, OR", "latitude": 45.6265, "longitude": -121.5433})
}

/// Seeds the demo traveller `user` once. `Ok(false)` when their profile already exists (nothing
/// is written then); everything is written in one transaction otherwise.
pub async fn seed_demo_traveller(db: &Database, user: &UserId) -> anyhow::Result<bool> {
    match db {
        Database::Postgres(pool) => {
            let id = Uuid::parse_str(user.as_str()).context("demo user id is not a uuid")?;
            seed_postgres(pool, id).await.context("seeding the demo traveller (Postgres)")
        }
        Database::Sqlite(pool) => seed_sqlite(pool, user.as_str()).await.context("seeding the demo traveller (SQLite)"),
    }
}

async fn seed_postgres(pool: &crate::storage::postgres_pool::PostgresPool, user: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO auth.users (id) VALUES ($1) ON CONFLICT DO NOTHING").persistent(false).bind(user).execute(&mut *tx).await?;
    let created = sqlx::query(
        "INSERT INTO profiles (id, email, full_name, nickname, region, language, vehicle_type, vehicle_make_model, fuel_type,
                               towing, pets, travel_style, interests, created_at, updated_at)
         VALUES ($1, 'sam.rivers@example.com', 'Sam Rivers', 'Sam', 'Pacific Northwest', 'en', 'Class C motorhome',
                 'Winnebago Minnie Winnie 22M', 'diesel', 'none', 'one dog', $2, $3, now(), now())
         ON CONFLICT (id) DO NOTHING",
    )
    .persistent(false)
    .bind(user)
    .bind(&TRAVEL_STYLE[..])
    .bind(&INTERESTS[..])
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if created == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO user_settings (user_id, regional_preferences, created_at, updated_at) VALUES ($1, $2, now(), now())
         ON CONFLICT (user_id) DO NOTHING",
    )
    .persistent(false)
    .bind(user)
    .bind(regional_preferences())
    .execute(&mut *tx)
    .await?;
    for (days_ago, category, amount, description) in EXPENSES {
        sqlx::query(
            "INSERT INTO expenses (user_id, amount, category, date, description, created_at)
             VALUES ($1, $2, $3, GREATEST(CURRENT_DATE - $4::int, date_trunc('month', CURRENT_DATE)::date), $5, now())",
        )
        .persistent(false)
        .bind(user)
        .bind(amount)
        .bind(category)
        .bind(days_ago)
        .bind(description)
        .execute(&mut *tx)
        .await?;
    }
    for (category, name, budgeted, monthly, threshold) in BUDGETS {
        sqlx::query(
            "INSERT INTO budgets (user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, date_trunc('month', CURRENT_DATE)::date,
                     (date_trunc('month', CURRENT_DATE) + interval '1 month - 1 day')::date, now())",
        ).persistent(false)
        .bind(user)
        .bind(category)
        .bind(name)
        .bind(budgeted)
        .bind(monthly)
        .bind(threshold)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO income_entries (user_id, source, amount, date, type, description, created_at)
         VALUES ($1, 'Remote consulting', 1850.00, date_trunc('month', CURRENT_DATE)::date, 'regular', 'Monthly retainer', now())",
    )
    .persistent(false)
    .bind(user)
    .execute(&mut *tx)
    .await?;
    for friend in &FRIENDS {
        sqlx::query("INSERT INTO auth.users (id) VALUES ($1) ON CONFLICT DO NOTHING")
            .persistent(false)
            .bind(friend.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO profiles (id, full_name, nickname, region, created_at, updated_at) VALUES ($1, $2, $3, $4, now(), now())
             ON CONFLICT (id) DO NOTHING",
        )
        .persistent(false)
        .bind(friend.id)
        .bind(friend.full_name)
        .bind(friend.nickname)
        .bind(friend.region)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO friend_locations (id, user_id, latitude, longitude, location_name, status, is_public, last_updated, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, true, now(), now())
             ON CONFLICT (id) DO NOTHING",
        )
        .persistent(false)
        .bind(friend.location_id)
        .bind(friend.id)
        .bind(friend.latitude)
        .bind(friend.longitude)
        .bind(friend.location_name)
        .bind(friend.status)
        .execute(&mut *tx)
        .await?;
        let (requester, addressee) = if friend.demo_user_requested { (user, friend.id) } else { (friend.id, user) };
        sqlx::query(
            "INSERT INTO user_friendships (id, requester_id, addressee_id, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'accepted', now(), now())
             ON CONFLICT DO NOTHING",
        )
        .persistent(false)
        .bind(Uuid::new_v4())
        .bind(requester)
        .bind(addressee)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO group_events (id, group_id, title, description, event_type, start_date, end_date, location, max_attendees,
                                   organizer_id, status, visibility, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'meetup',
                 date_trunc('day', now() + interval '10 days') + interval '17 hours',
                 date_trunc('day', now() + interval '12 days') + interval '11 hours',
                 $5, 40, $6, 'published', 'public', now(), now())
         ON CONFLICT (id) DO UPDATE SET start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date,
                                        status = 'published', updated_at = now()",
    )
    .persistent(false)
    .bind(DEMO_EVENT)
    .bind(DEMO_GROUP)
    .bind(EVENT_TITLE)
    .bind(EVENT_DESCRIPTION)
    .bind(event_location())
    .bind(DEMO_FRIEND_BEND)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn seed_sqlite(pool: &SqlitePool, user: &str) -> Result<bool, sqlx::Error> {
    let to_json = |items: &[&str]| serde_json::to_string(items).unwrap_or_else(|_| "[]".into());
    // The first statement writes, so the deferred transaction takes the write lock at once.
    let mut tx = pool.begin().await?;
    let created = sqlx::query(
        "INSERT INTO profiles (id, email, full_name, nickname, region, language, vehicle_type, vehicle_make_model, fuel_type,
                               towing, pets, travel_style, interests, created_at, updated_at)
         VALUES (?1, 'sam.rivers@example.com', 'Sam Rivers', 'Sam', 'Pacific Northwest', 'en', 'Class C motorhome',
                 'Winnebago Minnie Winnie 22M', 'diesel', 'none', 'one dog', ?2, ?3,
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(user)
    .bind(to_json(&TRAVEL_STYLE))
    .bind(to_json(&INTERESTS))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if created == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO user_settings (user_id, regional_preferences, created_at, updated_at) VALUES (?1, ?2,
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(regional_preferences().to_string())
    .execute(&mut *tx)
    .await?;
    for (days_ago, category, amount, description) in EXPENSES {
        sqlx::query(
            "INSERT INTO expenses (user_id, amount, category, date, description, created_at)
             VALUES (?1, ?2, ?3, max(date('now', printf('-%d days', ?4)), date('now', 'start of month')), ?5,
                     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        )
        .bind(user)
        .bind(amount)
        .bind(category)
        .bind(days_ago)
        .bind(description)
        .execute(&mut *tx)
        .await?;
    }
    for (category, name, budgeted, monthly, threshold) in BUDGETS {
        sqlx::query(
            "INSERT INTO budgets (id, user_id, category, name, budgeted_amount, monthly_limit, alert_threshold, start_date, end_date, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, date('now', 'start of month'),
                     date('now', 'start of month', '+1 month', '-1 day'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(user)
        .bind(category)
        .bind(name)
        .bind(budgeted)
        .bind(monthly)
        .bind(threshold)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO income_entries (id, user_id, source, amount, date, type, description, created_at)
         VALUES (?1, ?2, 'Remote consulting', 1850.00, date('now', 'start of month'), 'regular', 'Monthly retainer',
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(user)
    .execute(&mut *tx)
    .await?;
    for friend in &FRIENDS {
        let friend_id = friend.id.to_string();
        sqlx::query(
            "INSERT INTO profiles (id, full_name, nickname, region, created_at, updated_at) VALUES (?1, ?2, ?3, ?4,
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&friend_id)
        .bind(friend.full_name)
        .bind(friend.nickname)
        .bind(friend.region)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO friend_locations (id, user_id, latitude, longitude, location_name, status, is_public, last_updated, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1,
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(friend.location_id.to_string())
        .bind(&friend_id)
        .bind(friend.latitude)
        .bind(friend.longitude)
        .bind(friend.location_name)
        .bind(friend.status)
        .execute(&mut *tx)
        .await?;
        let (requester, addressee) = if friend.demo_user_requested { (user, friend_id.as_str()) } else { (friend_id.as_str(), user) };
        sqlx::query(
            "INSERT INTO user_friendships (id, requester_id, addressee_id, status, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'accepted',
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(requester)
        .bind(addressee)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO group_events (id, group_id, title, description, event_type, start_date, end_date, location, max_attendees,
                                   organizer_id, status, visibility, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'meetup',
                 strftime('%Y-%m-%dT17:00:00.000Z', 'now', '+10 days'),
                 strftime('%Y-%m-%dT11:00:00.000Z', 'now', '+12 days'),
                 ?5, 40, ?6, 'published', 'public',
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         ON CONFLICT (id) DO UPDATE SET start_date = excluded.start_date, end_date = excluded.end_date,
                                        status = 'published', updated_at = excluded.updated_at",
    )
    .bind(DEMO_EVENT.to_string())
    .bind(DEMO_GROUP.to_string())
    .bind(EVENT_TITLE)
    .bind(EVENT_DESCRIPTION)
    .bind(event_location().to_string())
    .bind(DEMO_FRIEND_BEND.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
