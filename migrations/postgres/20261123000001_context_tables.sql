-- Context tables the gateway reads (profile, finances, social).
--
-- Safe against the shared production (Supabase) database: every statement is
-- additive and idempotent. Existing tables are left exactly as they are; this
-- file only creates what is missing (plain Postgres in tests and CI).

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Supabase owns the `auth` schema and the migration role may lack CREATE on it
-- (or on the database), and `CREATE ... IF NOT EXISTS` checks privileges before
-- it checks existence. So only attempt the DDL when the object is really missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
        CREATE SCHEMA auth;
    END IF;
    -- Catalog lookup, not to_regclass(): that needs USAGE on the schema.
    IF NOT EXISTS (
        SELECT 1
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'auth' AND c.relname = 'users'
    ) THEN
        CREATE TABLE auth.users (id uuid PRIMARY KEY);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS profiles (
    id                 uuid PRIMARY KEY REFERENCES auth.users (id),
    email              text,
    full_name          text,
    nickname           text,
    region             text,
    language           text,
    vehicle_type       text,
    vehicle_make_model text,
    fuel_type          text,
    towing             text,
    second_vehicle     text,
    max_driving        text,
    camp_types         text,
    accessibility      text,
    pets               text,
    travel_style       text[],
    interests          text[],
    role               text DEFAULT 'user',
    created_at         timestamptz DEFAULT now(),
    updated_at         timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_settings (
    user_id              uuid PRIMARY KEY,
    regional_preferences jsonb,  -- {currency, units, timezone}
    privacy_preferences  jsonb,
    pam_preferences      jsonb,
    display_preferences  jsonb,
    created_at           timestamptz,
    updated_at           timestamptz
);

CREATE TABLE IF NOT EXISTS expenses (
    id          bigserial PRIMARY KEY,
    user_id     uuid NOT NULL,
    amount      numeric(10,2) NOT NULL CHECK (amount >= 0),
    category    text NOT NULL,
    date        date NOT NULL DEFAULT CURRENT_DATE,
    description text,
    created_at  timestamptz
);
CREATE INDEX IF NOT EXISTS idx_expenses_user_date ON expenses (user_id, date);

CREATE TABLE IF NOT EXISTS budgets (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL,
    category        text NOT NULL,
    name            text,
    budgeted_amount numeric(12,2) NOT NULL,
    monthly_limit   numeric(10,2) NOT NULL DEFAULT 0,
    alert_threshold numeric(5,2) DEFAULT 80,
    start_date      date NOT NULL,
    end_date        date NOT NULL,
    created_at      timestamptz
);

CREATE TABLE IF NOT EXISTS income_entries (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL,
    source      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    date        date NOT NULL DEFAULT CURRENT_DATE,
    type        text DEFAULT 'regular',
    description text,
    created_at  timestamptz
);

CREATE TABLE IF NOT EXISTS user_friendships (
    id           uuid PRIMARY KEY,
    requester_id uuid,
    addressee_id uuid,
    status       text DEFAULT 'pending'
                 CHECK (status IN ('pending', 'accepted', 'blocked', 'declined')),
    created_at   timestamptz,
    updated_at   timestamptz,
    UNIQUE (requester_id, addressee_id)
);

CREATE TABLE IF NOT EXISTS friend_locations (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL,
    latitude      numeric(10,8) NOT NULL,
    longitude     numeric(11,8) NOT NULL,
    location_name text,
    status        text NOT NULL DEFAULT 'traveling',
    is_public     boolean DEFAULT true,
    last_updated  timestamptz DEFAULT now(),
    created_at    timestamptz
);

CREATE TABLE IF NOT EXISTS group_events (
    id            uuid PRIMARY KEY,
    group_id      uuid,
    title         text NOT NULL,
    description   text,
    event_type    text,
    start_date    timestamptz NOT NULL,
    end_date      timestamptz,
    location      jsonb,
    max_attendees int,
    organizer_id  uuid,
    status        text DEFAULT 'draft',
    visibility    text DEFAULT 'group_only',
    created_at    timestamptz,
    updated_at    timestamptz
);
