-- The certificates table's references (to its device, to the certificate it supersedes) are
-- checked at COMMIT instead of after each statement. A broken reference still refuses the
-- whole transaction; what changes is that SQLite no longer keeps a statement journal (a copy of
-- every page a statement is about to change) for the group commit's multi-row INSERT, which
-- was a fifth of the writer's work.
--
-- SQLite cannot alter a constraint, so the table is rebuilt under the same name, rows and
-- indexes, inside this migration's transaction: on any failure nothing changes. It copies every
-- certificate once (about a minute and the table's size again on disk per million).

CREATE TABLE certificates_rebuilt (
    serial        TEXT PRIMARY KEY NOT NULL,  -- hex, lowercase; random, >= 64 bits
    issuer        TEXT NOT NULL,              -- issuing CA id (e.g. 'basic')
    device_serial TEXT NOT NULL REFERENCES devices (serial) DEFERRABLE INITIALLY DEFERRED,
    product       TEXT NOT NULL,
    policy_oid    TEXT NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    spki_sha256   BLOB NOT NULL,
    der           BLOB NOT NULL,
    status        TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'on_hold', 'revoked')),
    revoked_at    INTEGER,
    revocation_reason TEXT,
    authorized_by TEXT NOT NULL,              -- 'token' or 'station:<name>' or 'certificate:<serial>'
    supersedes    TEXT REFERENCES certificates_rebuilt (serial) DEFERRABLE INITIALLY DEFERRED,
    issued_at     INTEGER NOT NULL
);

INSERT INTO certificates_rebuilt
    (serial, issuer, device_serial, product, policy_oid, not_before, not_after, spki_sha256, der,
     status, revoked_at, revocation_reason, authorized_by, supersedes, issued_at)
SELECT serial, issuer, device_serial, product, policy_oid, not_before, not_after, spki_sha256, der,
       status, revoked_at, revocation_reason, authorized_by, supersedes, issued_at
FROM certificates ORDER BY rowid;

DROP TABLE certificates;
-- Renaming also rewrites the table's reference to itself.
ALTER TABLE certificates_rebuilt RENAME TO certificates;

CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_spki ON certificates (spki_sha256);
CREATE UNIQUE INDEX certificates_supersedes_once ON certificates (supersedes) WHERE supersedes IS NOT NULL;
CREATE INDEX certificates_revoked ON certificates (issuer, status) WHERE status <> 'valid';
CREATE INDEX certificates_product ON certificates (product);
CREATE INDEX certificates_not_after ON certificates (not_after);
