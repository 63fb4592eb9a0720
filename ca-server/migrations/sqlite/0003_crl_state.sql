-- The latest CRL of each CA: its number only ever grows (RFC 5280 §5.2.3).
CREATE TABLE crl_state (
    issuer           TEXT PRIMARY KEY NOT NULL,
    number           INTEGER NOT NULL,  -- the last number handed out
    published_number INTEGER,           -- the number of the CRL stored in `der`
    this_update      INTEGER,
    next_update      INTEGER,
    der              BLOB
);
CREATE INDEX certificates_revoked ON certificates (issuer, status) WHERE status <> 'valid';
