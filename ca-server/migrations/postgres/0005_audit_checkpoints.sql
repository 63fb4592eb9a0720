-- Signed checkpoints of the audit trail's head (ca-server/src/audit/checkpoint.rs): the
-- sequence number and hash of the newest event at `at`, signed by the CA's audit key. One per
-- sequence number (replicas signing the same head keep the first). Append-only like the trail.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    head_hash  BYTEA NOT NULL,
    at         BIGINT NOT NULL,
    signature  BYTEA NOT NULL,   -- ECDSA, DER, over the checkpoint statement
    signer     BYTEA NOT NULL    -- DER certificate of the audit key, issued by the root
);

CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
