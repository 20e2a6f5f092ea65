-- Codes a recovery or verification flow accepted for checking: counted in one statement so
-- that concurrent guesses all count against the flow's budget.
ALTER TABLE flows ADD COLUMN code_attempts INTEGER NOT NULL DEFAULT 0;

-- Recovery and verification look identities up by address.
CREATE INDEX identity_addresses_value ON identity_addresses(kind, value);
