-- Server pushes and timers, SQLite flavour of
-- migrations/postgres/20261130000001_notifications.sql (uuid and timestamptz as TEXT,
-- timestamps written as '%Y-%m-%dT%H:%M:%fZ' UTC so they compare as text; jsonb as JSON TEXT).

CREATE TABLE IF NOT EXISTS pam_notifications (
    id           TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', (random() & 3) + 1, 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))),
    user_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('timer_expired', 'proactive_alert')),
    payload      TEXT NOT NULL,
    fire_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    fired_at     TEXT,
    delivered_at TEXT,
    dismissed_at TEXT,
    expires_at   TEXT,
    dedupe_key   TEXT,
    created_at   TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_pam_notifications_user_dedupe
    ON pam_notifications (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_pam_notifications_due
    ON pam_notifications (fire_at) WHERE fired_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_pam_notifications_user_open
    ON pam_notifications (user_id) WHERE dismissed_at IS NULL;
