-- Manufacturing stations (registration authorities): their scope, their own certificates from
-- the station CA, and per-hour issuance counts for rate limiting. Times are Unix seconds (UTC).
CREATE TABLE stations (
    name                TEXT PRIMARY KEY NOT NULL,
    products            TEXT NOT NULL,     -- product ids in scope, comma-separated
    rate_limit_per_hour INTEGER,           -- NULL: the device product's policy default
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at          INTEGER NOT NULL,
    disabled_at         INTEGER,
    token_hash          BLOB,              -- SHA-256 of the station's one-time enrollment token
    token_expires_at    INTEGER,
    token_used_at       INTEGER
);

CREATE TABLE station_certificates (
    serial            TEXT PRIMARY KEY NOT NULL,
    station           TEXT NOT NULL REFERENCES stations (name),
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    spki_sha256       BLOB NOT NULL,
    der               BLOB NOT NULL,
    status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revoked_at        INTEGER,
    revocation_reason TEXT,
    issued_at         INTEGER NOT NULL
);
CREATE INDEX station_certificates_station ON station_certificates (station);

CREATE TABLE station_usage (
    station      TEXT NOT NULL REFERENCES stations (name),
    window_start INTEGER NOT NULL,         -- start of the UTC hour
    issued       INTEGER NOT NULL,
    PRIMARY KEY (station, window_start)
);
