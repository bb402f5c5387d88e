-- Budget alerts on SQLite: the counterpart of Postgres's `pam_context_changed` NOTIFY triggers
-- for expenses and budgets. SQLite cannot notify another connection, so every change queues
-- the affected user here (one row per user; `version` grows with each change) and the gateway
-- polls the queue, evaluates the user's budgets, and removes the row if its version is still
-- the one it evaluated. Any writer takes this path: the gateway, the demo seed, the sqlite3 CLI.

CREATE TABLE IF NOT EXISTS pam_budget_checks (
    user_id TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL DEFAULT 1
);

CREATE TRIGGER IF NOT EXISTS pam_budget_check_expense_insert AFTER INSERT ON expenses
BEGIN
    INSERT INTO pam_budget_checks (user_id) VALUES (NEW.user_id)
        ON CONFLICT (user_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER IF NOT EXISTS pam_budget_check_expense_update AFTER UPDATE ON expenses
BEGIN
    INSERT INTO pam_budget_checks (user_id) VALUES (NEW.user_id)
        ON CONFLICT (user_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER IF NOT EXISTS pam_budget_check_budget_insert AFTER INSERT ON budgets
BEGIN
    INSERT INTO pam_budget_checks (user_id) VALUES (NEW.user_id)
        ON CONFLICT (user_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER IF NOT EXISTS pam_budget_check_budget_update AFTER UPDATE ON budgets
BEGIN
    INSERT INTO pam_budget_checks (user_id) VALUES (NEW.user_id)
        ON CONFLICT (user_id) DO UPDATE SET version = version + 1;
END;
