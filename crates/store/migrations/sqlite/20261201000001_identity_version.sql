-- Optimistic concurrency on identity writes: an update applies only if `version` is still
-- the one the writer read, and increments it. The document in `data` carries the same value.
ALTER TABLE identities ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
