-- TPM 2.0 key attestation (docs/PROFILE.md §2.3, §6.1).
-- TPM manufacturer roots the operator trusts for EK certificates (`ca-server tpm-roots`).
CREATE TABLE tpm_roots (
    sha256   BLOB PRIMARY KEY NOT NULL,  -- SHA-256 of the certificate's DER
    subject  TEXT NOT NULL,
    der      BLOB NOT NULL,
    added_at INTEGER NOT NULL
);

-- Attestation challenges: a secret sealed to one EK and AK (TPM2_MakeCredential); only its
-- SHA-256 is stored. Consumed once, in the transaction that commits the certificate.
CREATE TABLE attestation_challenges (
    secret_sha256 BLOB PRIMARY KEY NOT NULL,
    device_serial TEXT NOT NULL REFERENCES devices (serial),
    ek_sha256     BLOB NOT NULL,             -- SHA-256 of the EK certificate
    ak_public     BLOB NOT NULL,             -- the AK's TPMT_PUBLIC
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX attestation_challenges_expiry ON attestation_challenges (expires_at);

-- The TPM a device is bound to since its first attested enrollment; `device reprovision`
-- removes the binding.
CREATE TABLE device_tpms (
    device_serial TEXT PRIMARY KEY NOT NULL REFERENCES devices (serial),
    ek_sha256     BLOB NOT NULL,
    hw_serial     TEXT NOT NULL,             -- TCG hwSerialNum derived from the EK certificate
    bound_at      INTEGER NOT NULL
);
