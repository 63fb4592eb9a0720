-- Admin API credentials (API keys and operator certificates, each with a role), indexes for the
-- certificate search, and the audit trail made append-only at the database level.

CREATE TABLE operators (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('api_key', 'certificate')),
    role          TEXT NOT NULL CHECK (role IN ('admin', 'registrar', 'auditor')),
    lookup        TEXT NOT NULL UNIQUE,  -- API key id, or the certificate's SHA-256 fingerprint (hex)
    secret_sha256 BYTEA,                 -- API key: SHA-256 of the whole key; never the key itself
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE INDEX certificates_product ON certificates (product);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX devices_lot ON devices (lot);

-- Tampering with the trail then takes a deliberate DROP TRIGGER; `audit verify` catches the rest.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
