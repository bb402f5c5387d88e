-- Cache invalidation: table triggers NOTIFY `pam_context_changed` so every
-- gateway node drops the affected user's cached context (L1 and Redis).
--
-- Payload (JSON text): {"table": "<table name>", "user_id": "<uuid>"}
--
-- The trigger arguments name the column(s) holding the affected user id; both
-- the OLD and NEW row are inspected, so a DELETE notifies the old owner and an
-- UPDATE that moves a row notifies both owners (each user id at most once).
-- Re-runnable: the function is replaced and only our own triggers are dropped.

CREATE OR REPLACE FUNCTION pam_notify_context_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
DECLARE
    cols     text[] := CASE WHEN TG_NARGS > 0 THEN TG_ARGV ELSE ARRAY['user_id'] END;
    recs     jsonb[] := ARRAY[]::jsonb[];
    rec      jsonb;
    col      text;
    uid      text;
    notified text[] := ARRAY[]::text[];
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        recs := recs || to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        recs := recs || to_jsonb(NEW);
    END IF;

    FOREACH rec IN ARRAY recs LOOP
        FOREACH col IN ARRAY cols LOOP
            uid := rec ->> col;
            IF uid IS NOT NULL AND NOT (uid = ANY (notified)) THEN
                notified := notified || uid;
                PERFORM pg_notify(
                    'pam_context_changed',
                    jsonb_build_object('table', TG_TABLE_NAME, 'user_id', uid)::text
                );
            END IF;
        END LOOP;
    END LOOP;

    RETURN NULL;  -- AFTER trigger: the return value is ignored
END
$$;

DROP TRIGGER IF EXISTS pam_notify_context_changed ON profiles;
CREATE TRIGGER pam_notify_context_changed
    AFTER INSERT OR UPDATE OR DELETE ON profiles
    FOR EACH ROW EXECUTE FUNCTION pam_notify_context_changed('id');

DROP TRIGGER IF EXISTS pam_notify_context_changed ON user_settings;
CREATE TRIGGER pam_notify_context_changed
    AFTER INSERT OR UPDATE OR DELETE ON user_settings
    FOR EACH ROW EXECUTE FUNCTION pam_notify_context_changed('user_id');

DROP TRIGGER IF EXISTS pam_notify_context_changed ON expenses;
CREATE TRIGGER pam_notify_context_changed
    AFTER INSERT OR UPDATE OR DELETE ON expenses
    FOR EACH ROW EXECUTE FUNCTION pam_notify_context_changed('user_id');

DROP TRIGGER IF EXISTS pam_notify_context_changed ON budgets;
CREATE TRIGGER pam_notify_context_changed
    AFTER INSERT OR UPDATE OR DELETE ON budgets
    FOR EACH ROW EXECUTE FUNCTION pam_notify_context_changed('user_id');

DROP TRIGGER IF EXISTS pam_notify_context_changed ON income_entries;
CREATE TRIGGER pam_notify_context_changed
    AFTER INSERT OR UPDATE OR DELETE ON income_entries
    FOR EACH ROW EXECUTE FUNCTION pam_notify_context_changed('user_id');

-- A friendship is part of both users' social context.
DROP TRIGGER IF EXISTS pam_notify_context_changed ON user_friendships;
CREATE TRIGGER pam_notify_context_changed
    AFTER INSERT OR UPDATE OR DELETE ON user_friendships
    FOR EACH ROW EXECUTE FUNCTION pam_notify_context_changed('requester_id', 'addressee_id');
