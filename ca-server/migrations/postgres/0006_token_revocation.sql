-- One-time tokens an operator cancels before they are used (`ca-server token revoke`): a
-- revoked token is never consumable again; the row stays for `token list` and the audit trail.
ALTER TABLE enrollment_tokens ADD COLUMN revoked_at BIGINT;
