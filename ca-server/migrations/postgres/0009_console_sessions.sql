-- Operator console sessions (`/console/`): one row per signed-in browser. Only the SHA-256 of
-- the session id is stored, so a copy of the database cannot be replayed as a cookie. Kept in
-- the database (not in a process) so every replica behind a load balancer sees the same
-- sessions, and a sign-out or an idle expiry on one holds on all.
CREATE TABLE console_sessions (
    id_sha256     BYTEA PRIMARY KEY NOT NULL,
    operator      TEXT NOT NULL,               -- operator name (API key or certificate name)
    kind          TEXT NOT NULL CHECK (kind IN ('api_key', 'certificate')),
    role          TEXT NOT NULL CHECK (role IN ('admin', 'registrar', 'auditor')),
    lookup        TEXT NOT NULL,               -- API key id, certificate SHA-256, or 'bootstrap'
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);
