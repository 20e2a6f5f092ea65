-- Refresh rotation extends a session only up to an absolute cap (its creation plus the
-- configured maximum lifetime). The rotating INSERT computes the cap and hands it to the
-- trigger in the child row; NULL means no cap. Replaces the trigger of *_tokens.sql.
ALTER TABLE refresh_tokens ADD COLUMN session_cap INTEGER;

DROP TRIGGER refresh_tokens_rotate;
CREATE TRIGGER refresh_tokens_rotate AFTER INSERT ON refresh_tokens
WHEN NEW.parent_hash IS NOT NULL
BEGIN
    UPDATE refresh_tokens SET state = 'rotated', rotated_at = NEW.created_at WHERE token_hash = NEW.parent_hash;
    UPDATE sessions SET expires_at = MAX(expires_at, MIN(NEW.expires_at, COALESCE(NEW.session_cap, NEW.expires_at)))
    WHERE id = NEW.session_id;
END;
