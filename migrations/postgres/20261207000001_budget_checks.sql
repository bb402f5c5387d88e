-- Budget alerts from a durable record, not only from NOTIFY: every change to a user's expenses or
-- budgets queues the user here (one row per user; `version` grows with each change), whoever
-- wrote it and whether or not a gateway was listening. Every node polls the queue, claims a batch
-- for a short lease (`claimed_until`, SKIP LOCKED so nodes split the work), evaluates each user's
-- budgets and deletes the row if its version is still the one it evaluated. A change during an
-- evaluation bumps the version and clears the lease, so it is evaluated again at once; a node that
-- dies mid-batch leaves its lease to expire. The NOTIFY triggers stay, for speed: a node that hears
-- one polls at once.
--
-- Statement-level triggers with transition tables: a bulk import queues each user once per
-- statement, not once per row. SECURITY DEFINER: the writers of expenses (e.g. Supabase's
-- `authenticated` role through PostgREST) need no privilege on this table.

CREATE TABLE IF NOT EXISTS pam_budget_checks (
    user_id       uuid PRIMARY KEY,
    version       bigint NOT NULL DEFAULT 1,
    claimed_until timestamptz
);

CREATE OR REPLACE FUNCTION pam_queue_budget_checks() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO pam_budget_checks (user_id)
        SELECT DISTINCT user_id FROM changed_rows WHERE user_id IS NOT NULL
        ON CONFLICT (user_id) DO UPDATE
            SET version = pam_budget_checks.version + 1, claimed_until = NULL;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS pam_budget_checks_insert ON expenses;
CREATE TRIGGER pam_budget_checks_insert AFTER INSERT ON expenses
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION pam_queue_budget_checks();
DROP TRIGGER IF EXISTS pam_budget_checks_update ON expenses;
CREATE TRIGGER pam_budget_checks_update AFTER UPDATE ON expenses
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION pam_queue_budget_checks();
DROP TRIGGER IF EXISTS pam_budget_checks_insert ON budgets;
CREATE TRIGGER pam_budget_checks_insert AFTER INSERT ON budgets
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION pam_queue_budget_checks();
DROP TRIGGER IF EXISTS pam_budget_checks_update ON budgets;
CREATE TRIGGER pam_budget_checks_update AFTER UPDATE ON budgets
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION pam_queue_budget_checks();

-- What changed before this migration existed: every user with a budget that could be active is
-- evaluated once (alerts are deduplicated, so one already sent is not sent again).
INSERT INTO pam_budget_checks (user_id)
    SELECT DISTINCT user_id FROM budgets WHERE end_date >= CURRENT_DATE - 1 AND user_id IS NOT NULL
    ON CONFLICT (user_id) DO NOTHING;
