-- Turns given up on without an answer: still running when a node's shutdown grace ended
-- (`shutdown`), or left open by a node that died and ended for their clients by another
-- (`crash`). The process that abandons a turn is gone moments later, so its own counter is
-- rarely scraped; this table outlives it, and every node exports the last 15 minutes of it
-- (`pam_turns_abandoned_recent{cause}`) for the PamTurnsAbandoned alert.
--
-- One row per turn and accepting incarnation (node id + boot id, '' when unknown): the drain
-- that abandons a turn, each node that ends it as an orphan and a repeat that finds its node
-- gone all insert the same key, so it is counted once. Rows older than a week are deleted by
-- the gateway (the alert looks back 15 minutes; the week is for whoever investigates).
-- Additive only: a new table, no change to a table the app owns.

CREATE TABLE IF NOT EXISTS pam_abandoned_turns (
    user_id       uuid NOT NULL,
    client_msg_id text NOT NULL,
    node          text NOT NULL,
    boot          text NOT NULL DEFAULT '',
    cause         text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_msg_id, node, boot)
);
CREATE INDEX IF NOT EXISTS pam_abandoned_turns_recorded_at ON pam_abandoned_turns (recorded_at);
