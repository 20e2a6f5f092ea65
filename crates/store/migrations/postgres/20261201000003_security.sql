-- Brute-force counters (one row per key: identifier, or identifier × IP) and the audit log.
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    consecutive  BIGINT NOT NULL,
    last_failure BIGINT NOT NULL
);
CREATE INDEX login_failures_last ON login_failures(last_failure);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    identity_id TEXT,
    target      TEXT,
    ip          TEXT,
    user_agent  TEXT,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    details     TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_identity ON audit_log(identity_id, at);
