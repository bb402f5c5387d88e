-- Conversation tables the gateway writes, SQLite flavour of
-- migrations/postgres/20261123000002_conversations.sql (same type mapping as
-- 20261123000001_context_tables.sql). client_msg_id is part of the table here
-- because an SQLite database is always created by these migrations.
--
-- strftime('%f') gives milliseconds only; the gateway sets created_at itself so
-- the user and assistant rows of one turn are distinct and ordered.

CREATE TABLE IF NOT EXISTS pam_conversations (
    id            TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', (random() & 3) + 1, 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))),
    user_id       TEXT,
    session_id    TEXT NOT NULL,  -- free text from the client ('default' is valid)
    title         TEXT DEFAULT 'PAM Conversation',
    context       TEXT DEFAULT '{}',
    is_active     INTEGER DEFAULT 1,
    last_activity TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    message_count INTEGER DEFAULT 0,
    created_at    TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_pam_conversations_user_active_activity
    ON pam_conversations (user_id, is_active, last_activity DESC);
CREATE INDEX IF NOT EXISTS idx_pam_conversations_session
    ON pam_conversations (session_id);

CREATE TABLE IF NOT EXISTS pam_messages (
    id              TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', (random() & 3) + 1, 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))),
    conversation_id TEXT REFERENCES pam_conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content         TEXT NOT NULL,
    intent          TEXT,
    confidence      REAL,
    entities        TEXT DEFAULT '{}',
    metadata        TEXT DEFAULT '{}',  -- JSON: model, provider, latency, ui_actions
    created_at      TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    client_msg_id   TEXT
);
CREATE INDEX IF NOT EXISTS idx_pam_messages_conversation_created
    ON pam_messages (conversation_id, created_at DESC);

-- Idempotent chats: the client's message id, unique per conversation when set.
-- Upserts must repeat the predicate:
--   ON CONFLICT (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL
CREATE UNIQUE INDEX IF NOT EXISTS uq_pam_messages_conversation_client_msg
    ON pam_messages (conversation_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
