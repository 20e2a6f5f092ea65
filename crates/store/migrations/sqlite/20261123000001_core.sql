-- Identities keep their full JSON document (traits, credentials, addresses) in `data`, so an
-- identity is read in one row. The side tables exist for uniqueness and lookups only and are
-- rewritten in the same transaction as `data`.
CREATE TABLE identities (
    id          TEXT PRIMARY KEY,
    schema_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    external_id TEXT UNIQUE,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE identity_credential_identifiers (
    kind        TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    PRIMARY KEY (kind, identifier)
);
CREATE INDEX identity_credential_identifiers_identity ON identity_credential_identifiers(identity_id);

CREATE TABLE identity_addresses (
    kind        TEXT NOT NULL,
    via         TEXT NOT NULL,
    value       TEXT NOT NULL,
    identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    PRIMARY KEY (kind, via, value)
);
CREATE INDEX identity_addresses_identity ON identity_addresses(identity_id);

-- Only the SHA-256 of a session token is stored.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    active      INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX sessions_identity ON sessions(identity_id, id);
CREATE INDEX sessions_expires_at ON sessions(expires_at);

CREATE TABLE flows (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    -- Set once by the submit that completes the flow, so a replayed submit cannot win too.
    completed  INTEGER NOT NULL DEFAULT 0,
    data       TEXT NOT NULL
);
CREATE INDEX flows_expires_at ON flows(expires_at);

CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
