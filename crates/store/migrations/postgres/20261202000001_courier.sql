-- The courier's queue. A message is written in the transaction of the change that causes it
-- (with its email.created event), so it exists if and only if the change does; it is
-- rendered then, so what the admin API shows is what is sent.
CREATE TABLE courier_messages (
    id              TEXT PRIMARY KEY,
    -- queued, processing, sent, abandoned
    status          TEXT NOT NULL,
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    template_type   TEXT NOT NULL,
    locale          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    identity_id     TEXT,
    send_count      BIGINT NOT NULL DEFAULT 0,
    -- When a queued message is due (now, or after a failed attempt's backoff).
    next_attempt_at BIGINT NOT NULL,
    -- The claim of the instance sending a processing message, until lease_until: a message
    -- whose sender died is claimed again after it.
    lease_owner     TEXT,
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX courier_messages_due ON courier_messages(status, next_attempt_at);
CREATE INDEX courier_messages_recipient ON courier_messages(recipient, id);
CREATE INDEX courier_messages_created ON courier_messages(created_at);

-- Every attempt to deliver a message (Kratos's message dispatches).
CREATE TABLE courier_dispatches (
    id         TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES courier_messages(id) ON DELETE CASCADE,
    -- success, failed
    status     TEXT NOT NULL,
    error      TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX courier_dispatches_message ON courier_dispatches(message_id, created_at);
