-- Profile images (Clerk's `image_url`), as the server encoded them again: one per identity at
-- most, named by a new id on every upload; the identity's document names the current one.
CREATE TABLE profile_images (
    id           TEXT PRIMARY KEY,
    identity_id  TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    bytes        BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX profile_images_identity ON profile_images(identity_id);
