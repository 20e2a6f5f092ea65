-- The transactional outbox: every identity and session change appends an event in the same
-- transaction as the change, and fans it out to a delivery row per enabled webhook endpoint.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    identity_id TEXT,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX events_created_at ON events(created_at);

CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    -- JSON array of event types; empty = all.
    event_types   TEXT NOT NULL,
    format        TEXT NOT NULL,
    -- JSON array of {secret, expires_at}: the first signs alone after rotation overlaps end.
    secrets       TEXT NOT NULL,
    description   TEXT NOT NULL,
    disabled_reason TEXT,
    failing_since INTEGER,
    lease_owner   TEXT,
    lease_until   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_seq       INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    -- pending, succeeded, failed (retries exhausted), skipped (filtered out)
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    -- Bumped by resend and replay, so an attempt in flight cannot record over them.
    generation      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_pending ON deliveries(endpoint_id, status, event_seq);
CREATE INDEX deliveries_event ON deliveries(event_id);

CREATE TABLE delivery_attempts (
    id          TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL,
    attempted_at INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms  INTEGER NOT NULL,
    response    TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id, attempted_at);
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts(endpoint_id, attempted_at);
