-- Turns given up on without an answer, SQLite flavour of
-- migrations/postgres/20261214000001_abandoned_turns.sql: one row per turn and accepting
-- incarnation, so it is counted once however many writers record it; the last 15 minutes are
-- exported as `pam_turns_abandoned_recent{cause}` by the next process on this database.
-- recorded_at uses the conversation tables' text format, so it compares as text.

CREATE TABLE IF NOT EXISTS pam_abandoned_turns (
    user_id       TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    node          TEXT NOT NULL,
    boot          TEXT NOT NULL DEFAULT '',
    cause         TEXT NOT NULL,
    recorded_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, client_msg_id, node, boot)
);
CREATE INDEX IF NOT EXISTS idx_pam_abandoned_turns_recorded_at ON pam_abandoned_turns (recorded_at);
