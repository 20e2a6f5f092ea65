-- JWT signing keys. The private half is AES-256-GCM encrypted under a key derived from the
-- configured secrets; the public half is the JWK served at /.well-known/jwks.json.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    state       TEXT NOT NULL,
    private_enc TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    -- When the key started signing (a `next` key is published before it signs).
    activated_at INTEGER,
    drop_after  INTEGER
);
-- One key signs new tokens (`current`) and one waits in the JWKS to be next (`next`), so
-- verifiers learn a key before any token uses it. Two instances racing to create or rotate
-- keys cannot both win.
CREATE UNIQUE INDEX signing_keys_one_current_one_next ON signing_keys(state) WHERE state IN ('current', 'next');

-- Refresh tokens are stored only as a SHA-256 of the token. A family is every token descended
-- from one obtain; reusing a rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    jti         TEXT NOT NULL,
    family_id   TEXT NOT NULL,
    identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    session_id  TEXT NOT NULL,
    state       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    rotated_at  INTEGER,
    -- The token this one replaced (rotation marks the parent `rotated` in the same statement).
    parent_hash TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_identity ON refresh_tokens(identity_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens(expires_at);

-- Rotation is one statement (insert the child only if the parent is still active and its
-- session and identity are); this trigger marks the parent rotated and keeps the session alive
-- as long as its newest refresh token, inside that statement, so no transaction is needed.
CREATE TRIGGER refresh_tokens_rotate AFTER INSERT ON refresh_tokens
WHEN NEW.parent_hash IS NOT NULL
BEGIN
    UPDATE refresh_tokens SET state = 'rotated', rotated_at = NEW.created_at WHERE token_hash = NEW.parent_hash;
    UPDATE sessions SET expires_at = MAX(expires_at, NEW.expires_at) WHERE id = NEW.session_id;
END;
