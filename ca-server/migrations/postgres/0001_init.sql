-- The device registry, enrollment tokens, issued certificates, CRL state and the audit trail
-- (PostgreSQL; the same model as migrations/sqlite). Times are Unix seconds (UTC).

CREATE TABLE devices (
    serial        TEXT PRIMARY KEY,
    product       TEXT NOT NULL,
    gtin          TEXT NOT NULL,
    lot           TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    registered_at BIGINT NOT NULL
);

CREATE TABLE enrollment_tokens (
    token_hash    BYTEA PRIMARY KEY,  -- SHA-256 of the token; the token itself is never stored
    device_serial TEXT NOT NULL REFERENCES devices (serial),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX enrollment_tokens_device ON enrollment_tokens (device_serial);

CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,
    issuer            TEXT NOT NULL,
    device_serial     TEXT NOT NULL REFERENCES devices (serial),
    product           TEXT NOT NULL,
    policy_oid        TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    spki_sha256       BYTEA NOT NULL,
    der               BYTEA NOT NULL,
    status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'on_hold', 'revoked')),
    revoked_at        BIGINT,
    revocation_reason TEXT,
    authorized_by     TEXT NOT NULL,
    supersedes        TEXT REFERENCES certificates (serial),
    issued_at         BIGINT NOT NULL
);
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_spki ON certificates (spki_sha256);
CREATE UNIQUE INDEX certificates_supersedes_once ON certificates (supersedes) WHERE supersedes IS NOT NULL;
CREATE INDEX certificates_revoked ON certificates (issuer, status) WHERE status <> 'valid';

CREATE TABLE audit_events (
    seq       BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash      BYTEA NOT NULL
);

CREATE TABLE crl_state (
    issuer           TEXT PRIMARY KEY,
    number           BIGINT NOT NULL,
    published_number BIGINT,
    this_update      BIGINT,
    next_update      BIGINT,
    der              BYTEA
);
