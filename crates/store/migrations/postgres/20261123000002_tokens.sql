-- JWT signing keys. The private half is AES-256-GCM encrypted under a key derived from the
-- configured secrets; the public half is the JWK served at /.well-known/jwks.json.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    state       TEXT NOT NULL,
    private_enc TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- When the key started signing (a `next` key is published before it signs).
    activated_at BIGINT,
    drop_after  BIGINT
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
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    rotated_at  BIGINT,
    -- The token this one replaced (rotation marks the parent `rotated` in the same statement).
    parent_hash TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_identity ON refresh_tokens(identity_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens(expires_at);
