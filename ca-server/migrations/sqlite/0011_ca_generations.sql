-- CA generations (issue 20): every CA (root, basic, substantial, high, station, tls) has
-- generations G1, G2, ...; `name` is what certificates, CRLs and URLs call it (`basic` for G1,
-- `basic-g2` for G2). G1 is adopted from the data directory's files at the first start; later
-- generations are made by `ca-server ca rollover` and live here (certificate, and the key:
-- sealed under the CA passphrase, or the CKA_ID of a PKCS#11 key), so every replica loads them.
CREATE TABLE ca_generations (
    name        TEXT PRIMARY KEY NOT NULL,
    ca          TEXT NOT NULL CHECK (ca IN ('root', 'basic', 'substantial', 'high', 'station', 'tls')),
    generation  INTEGER NOT NULL CHECK (generation >= 1),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'active', 'retiring', 'retired')),
    not_before  INTEGER,
    not_after   INTEGER,
    der         BLOB,                 -- the certificate; NULL while pending (offline root)
    custody     TEXT NOT NULL CHECK (custody IN ('data-dir', 'sealed', 'pkcs11')),
    key         BLOB,                 -- sealed PEM or CKA_ID; NULL for 'data-dir'
    created_at  INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL,
    UNIQUE (ca, generation)
);
-- At most one active and one pending generation per CA, whatever the interleaving.
CREATE UNIQUE INDEX ca_generations_one_active ON ca_generations (ca) WHERE status = 'active';
CREATE UNIQUE INDEX ca_generations_one_pending ON ca_generations (ca) WHERE status = 'pending';
-- Station certificates name their issuing generation too (the station CA rolls over).
ALTER TABLE station_certificates ADD COLUMN issuer TEXT NOT NULL DEFAULT 'station';
-- Counting the valid certificates of each generation (`ca list`, retirement).
CREATE INDEX certificates_issuer_expiry ON certificates (issuer, not_after);
