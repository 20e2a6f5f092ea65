-- Clerk Backend API secret keys created through the admin API; only a SHA-256 is stored.
CREATE TABLE clerk_keys (
    id         TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
