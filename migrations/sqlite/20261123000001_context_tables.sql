-- Context tables the gateway reads (profile, finances, social), SQLite flavour
-- of migrations/postgres/20261123000001_context_tables.sql for the embedded default.
--
-- Type mapping: uuid -> TEXT (lowercase, hyphenated); jsonb and text[] -> TEXT
-- holding JSON; timestamptz -> TEXT ISO-8601 UTC ('YYYY-MM-DDTHH:MM:SS.sssZ');
-- date -> TEXT 'YYYY-MM-DD'; numeric -> REAL; boolean -> INTEGER 0/1.
-- No auth.users here, so profiles.id has no foreign key. No triggers: the
-- gateway invalidates its own cache for writes it makes.
-- Non-integer primary keys are NOT NULL explicitly (SQLite would allow NULL).

CREATE TABLE IF NOT EXISTS profiles (
    id                 TEXT NOT NULL PRIMARY KEY,
    email              TEXT,
    full_name          TEXT,
    nickname           TEXT,
    region             TEXT,
    language           TEXT,
    vehicle_type       TEXT,
    vehicle_make_model TEXT,
    fuel_type          TEXT,
    towing             TEXT,
    second_vehicle     TEXT,
    max_driving        TEXT,
    camp_types         TEXT,
    accessibility      TEXT,
    pets               TEXT,
    travel_style       TEXT,  -- JSON array of strings
    interests          TEXT,  -- JSON array of strings
    role               TEXT DEFAULT 'user',
    created_at         TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at         TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS user_settings (
    user_id              TEXT NOT NULL PRIMARY KEY,
    regional_preferences TEXT,  -- JSON {currency, units, timezone}
    privacy_preferences  TEXT,
    pam_preferences      TEXT,
    display_preferences  TEXT,
    created_at           TEXT,
    updated_at           TEXT
);

CREATE TABLE IF NOT EXISTS expenses (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    amount      REAL NOT NULL CHECK (amount >= 0),
    category    TEXT NOT NULL,
    date        TEXT NOT NULL DEFAULT (date('now')),
    description TEXT,
    created_at  TEXT
);
CREATE INDEX IF NOT EXISTS idx_expenses_user_date ON expenses (user_id, date);

CREATE TABLE IF NOT EXISTS budgets (
    id              TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', (random() & 3) + 1, 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))),
    user_id         TEXT NOT NULL,
    category        TEXT NOT NULL,
    name            TEXT,
    budgeted_amount REAL NOT NULL,
    monthly_limit   REAL NOT NULL DEFAULT 0,
    alert_threshold REAL DEFAULT 80,
    start_date      TEXT NOT NULL,
    end_date        TEXT NOT NULL,
    created_at      TEXT
);

CREATE TABLE IF NOT EXISTS income_entries (
    id          TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', (random() & 3) + 1, 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))),
    user_id     TEXT NOT NULL,
    source      TEXT NOT NULL,
    amount      REAL NOT NULL,
    date        TEXT NOT NULL DEFAULT (date('now')),
    type        TEXT DEFAULT 'regular',
    description TEXT,
    created_at  TEXT
);

CREATE TABLE IF NOT EXISTS user_friendships (
    id           TEXT NOT NULL PRIMARY KEY,
    requester_id TEXT,
    addressee_id TEXT,
    status       TEXT DEFAULT 'pending'
                 CHECK (status IN ('pending', 'accepted', 'blocked', 'declined')),
    created_at   TEXT,
    updated_at   TEXT,
    UNIQUE (requester_id, addressee_id)
);

CREATE TABLE IF NOT EXISTS friend_locations (
    id            TEXT NOT NULL PRIMARY KEY,
    user_id       TEXT NOT NULL,
    latitude      REAL NOT NULL,
    longitude     REAL NOT NULL,
    location_name TEXT,
    status        TEXT NOT NULL DEFAULT 'traveling',
    is_public     INTEGER DEFAULT 1,
    last_updated  TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_at    TEXT
);

CREATE TABLE IF NOT EXISTS group_events (
    id            TEXT NOT NULL PRIMARY KEY,
    group_id      TEXT,
    title         TEXT NOT NULL,
    description   TEXT,
    event_type    TEXT,
    start_date    TEXT NOT NULL,  -- timestamp, ISO-8601 UTC
    end_date      TEXT,
    location      TEXT,           -- JSON
    max_attendees INTEGER,
    organizer_id  TEXT,
    status        TEXT DEFAULT 'draft',
    visibility    TEXT DEFAULT 'group_only',
    created_at    TEXT,
    updated_at    TEXT
);
