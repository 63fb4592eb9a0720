-- The device registry, enrollment tokens, issued certificates and the audit trail.
-- Times are Unix seconds (UTC).

CREATE TABLE devices (
    serial        TEXT PRIMARY KEY NOT NULL,
    product       TEXT NOT NULL,
    gtin          TEXT NOT NULL,
    lot           TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    registered_at INTEGER NOT NULL
);

CREATE TABLE enrollment_tokens (
    token_hash    BLOB PRIMARY KEY NOT NULL,  -- SHA-256 of the token; the token itself is never stored
    device_serial TEXT NOT NULL REFERENCES devices (serial),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX enrollment_tokens_device ON enrollment_tokens (device_serial);

CREATE TABLE certificates (
    serial        TEXT PRIMARY KEY NOT NULL,  -- hex, lowercase; random, >= 64 bits
    issuer        TEXT NOT NULL,              -- issuing CA id (e.g. 'basic')
    device_serial TEXT NOT NULL REFERENCES devices (serial),
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
    supersedes    TEXT REFERENCES certificates (serial),
    issued_at     INTEGER NOT NULL
);
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_spki ON certificates (spki_sha256);

CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
);
