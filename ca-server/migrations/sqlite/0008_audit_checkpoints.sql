-- Signed checkpoints of the audit trail's head (ca-server/src/audit/checkpoint.rs): the
-- sequence number and hash of the newest event at `at`, signed by the CA's audit key. One per
-- sequence number (replicas signing the same head keep the first). Append-only like the trail.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY NOT NULL,
    head_hash  BLOB NOT NULL,
    at         INTEGER NOT NULL,
    signature  BLOB NOT NULL,   -- ECDSA, DER, over the checkpoint statement
    signer     BLOB NOT NULL    -- DER certificate of the audit key, issued by the root
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
