-- Conversation tables the gateway writes (one row per user/assistant message).
--
-- Additive and idempotent: safe to run against the shared production database,
-- where these tables may already exist.

CREATE TABLE IF NOT EXISTS pam_conversations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid,
    session_id    text NOT NULL,  -- free text from the client ('default' is valid); never a uuid
    title         text DEFAULT 'PAM Conversation',
    context       jsonb DEFAULT '{}'::jsonb,
    is_active     boolean DEFAULT true,
    last_activity timestamptz DEFAULT now(),
    message_count integer DEFAULT 0,
    created_at    timestamptz DEFAULT now(),
    updated_at    timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_pam_conversations_user_active_activity
    ON pam_conversations (user_id, is_active, last_activity DESC);
CREATE INDEX IF NOT EXISTS idx_pam_conversations_session
    ON pam_conversations (session_id);

CREATE TABLE IF NOT EXISTS pam_messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid REFERENCES pam_conversations (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content         text NOT NULL,
    intent          text,
    confidence      numeric(3,2),
    entities        jsonb DEFAULT '{}'::jsonb,
    metadata        jsonb DEFAULT '{}'::jsonb,  -- model, provider, latency, ui_actions
    created_at      timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_pam_messages_conversation_created
    ON pam_messages (conversation_id, created_at DESC);

-- Idempotent chats: the client's message id, unique per conversation.
-- Nullable and only indexed when set, so existing rows can never violate it.
-- Upserts must repeat the predicate:
--   ON CONFLICT (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL
ALTER TABLE pam_messages ADD COLUMN IF NOT EXISTS client_msg_id text;
CREATE UNIQUE INDEX IF NOT EXISTS uq_pam_messages_conversation_client_msg
    ON pam_messages (conversation_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
