-- Server pushes and timers (`timer_expired`, `proactive_alert`), one row each.
--
-- A push is stored first (fire_at = fired_at = now) and then delivered; a timer is a
-- `timer_expired` row with fired_at NULL until a node claims it (FOR UPDATE SKIP LOCKED, so
-- exactly one node fires it). Additive and idempotent like the other migrations.

CREATE TABLE IF NOT EXISTS pam_notifications (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('timer_expired', 'proactive_alert')),
    payload      jsonb NOT NULL,                   -- the frame's fields (label, timer_type, message, content, …)
    fire_at      timestamptz NOT NULL DEFAULT now(), -- timers: when to fire; pushes: now
    fired_at     timestamptz,
    delivered_at timestamptz,
    dismissed_at timestamptz,
    expires_at   timestamptz,
    dedupe_key   text,                             -- e.g. 'budget:{budget_id}:{yyyy-mm}:{threshold}'
    created_at   timestamptz DEFAULT now()
);
-- Inserts that dedupe must repeat the predicate:
--   ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL
CREATE UNIQUE INDEX IF NOT EXISTS uq_pam_notifications_user_dedupe
    ON pam_notifications (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_pam_notifications_due
    ON pam_notifications (fire_at) WHERE fired_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_pam_notifications_user_open
    ON pam_notifications (user_id) WHERE dismissed_at IS NULL;
