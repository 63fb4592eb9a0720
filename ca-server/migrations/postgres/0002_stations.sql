-- Manufacturing stations (registration authorities), their certificates from the station CA and
-- per-hour issuance counts (PostgreSQL; the same model as migrations/sqlite/0004_stations.sql).
CREATE TABLE stations (
    name                TEXT PRIMARY KEY,
    products            TEXT NOT NULL,     -- product ids in scope, comma-separated
    rate_limit_per_hour BIGINT,           -- NULL: the device product's policy default
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at          BIGINT NOT NULL,
    disabled_at         BIGINT,
    token_hash          BYTEA,              -- SHA-256 of the station's one-time enrollment token
    token_expires_at    BIGINT,
    token_used_at       BIGINT
);

CREATE TABLE station_certificates (
    serial            TEXT PRIMARY KEY,
    station           TEXT NOT NULL REFERENCES stations (name),
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    spki_sha256       BYTEA NOT NULL,
    der               BYTEA NOT NULL,
    status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revoked_at        BIGINT,
    revocation_reason TEXT,
    issued_at         BIGINT NOT NULL
);
CREATE INDEX station_certificates_station ON station_certificates (station);

CREATE TABLE station_usage (
    station      TEXT NOT NULL REFERENCES stations (name),
    window_start BIGINT NOT NULL,         -- start of the UTC hour
    issued       BIGINT NOT NULL,
    PRIMARY KEY (station, window_start)
);
