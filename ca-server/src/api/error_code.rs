//! `ErrorCode`: every stable, machine-readable error code the CA answers with (the first word
//! of an error body and its `X-Error-Code` header). Clients, scripts and dashboards match on
//! these; a code never changes meaning. The README's table of codes is generated from [`ALL`]
//! (`tests` below keep the two equal and every code unique).

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $code:literal,)*) => {
        /// A stable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)*
        }

        /// Every code, in alphabetical order of its text.
        pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

        impl ErrorCode {
            /// The code as sent: `family.reason`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// What the code means, in one line (the README table's second column).
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+).trim_ascii(),)*
                }
            }
        }
    };
}

error_codes! {
    /// the attestation key is not a restricted signing key generated in and fixed to the TPM
    AttestationAkInvalid = "attestation.ak_invalid",
    /// the attestation challenge expired before the CSR arrived; ask for a new one
    AttestationChallengeExpired = "attestation.challenge_expired",
    /// the TPM2_Certify qualifying data is no challenge this CA issued for this device (or the attestation key is not the one the challenge was sealed to)
    AttestationChallengeUnknown = "attestation.challenge_unknown",
    /// the attestation challenge was already used by an issuance (replay)
    AttestationChallengeUsed = "attestation.challenge_used",
    /// the EK public area is not the key the EK certificate certifies
    AttestationEkMismatch = "attestation.ek_mismatch",
    /// the EK certificate does not chain to a TPM manufacturer root in `tpm-roots`
    AttestationEkUntrusted = "attestation.ek_untrusted",
    /// the endorsement key cannot be used for credential activation (the message says why)
    AttestationEkUnusable = "attestation.ek_unusable",
    /// the attested key is not the CSR's public key
    AttestationKeyMismatch = "attestation.key_mismatch",
    /// the attested key lacks fixedTPM, fixedParent, sensitiveDataOrigin or sign: it could leave the TPM or was imported
    AttestationKeyNotFixed = "attestation.key_not_fixed",
    /// the attestation evidence does not parse (the message names the structure)
    AttestationMalformed = "attestation.malformed",
    /// the product requires TPM key attestation and the CSR carries no evidence
    AttestationMissing = "attestation.missing",
    /// the attested name is not the name of the public area in the evidence
    AttestationNameMismatch = "attestation.name_mismatch",
    /// the attestation key's signature over TPM2_Certify does not verify
    AttestationSignatureInvalid = "attestation.signature_invalid",
    /// the attestation evidence is larger than this CA accepts
    AttestationTooLarge = "attestation.too_large",
    /// the device is bound to another TPM; an operator must re-provision it first
    AttestationTpmMismatch = "attestation.tpm_mismatch",
    /// an audit export query parameter is malformed (`since`, `limit`)
    AuditBadQuery = "audit.bad_query",
    /// no signed audit checkpoint has been made yet
    AuditNoCheckpoint = "audit.no_checkpoint",
    /// the operator client certificate is not enrolled, revoked, not of the operator profile or not chaining to the root
    AuthBadCertificate = "auth.bad_certificate",
    /// the admin API key is unknown, wrong or revoked
    AuthBadKey = "auth.bad_key",
    /// re-enrollment needs the device's current certificate as the TLS client certificate
    AuthCertificateRequired = "auth.certificate_required",
    /// no credential was presented (HTTP Basic `serial:token`, a client certificate or a bearer key)
    AuthRequired = "auth.required",
    /// the operator's role lacks the capability the route needs (the message names it)
    AuthRoleInsufficient = "auth.role_insufficient",
    /// the one-time enrollment token has expired
    AuthTokenExpired = "auth.token_expired",
    /// the operator revoked the one-time enrollment token (`token revoke`)
    AuthTokenRevoked = "auth.token_revoked",
    /// the one-time enrollment token is not known for this serial (also answered for an unregistered serial)
    AuthTokenUnknown = "auth.token_unknown",
    /// the one-time enrollment token was already used
    AuthTokenUsed = "auth.token_used",
    /// the one-time enrollment token was issued for another device
    AuthTokenWrongDevice = "auth.token_wrong_device",
    /// the root key is offline; the operation needs it
    CaRootOffline = "ca.root_offline",
    /// no CA certificate of that name
    CaUnknown = "ca.unknown",
    /// the certificate serial is not 1 to 20 octets of hex (colons allowed)
    CertificateBadSerial = "certificate.bad_serial",
    /// release asked for a certificate that is not on hold
    CertificateNotOnHold = "certificate.not_on_hold",
    /// no certificate with that serial
    CertificateUnknown = "certificate.unknown",
    /// the root's CRL is produced by the offline root and has not been installed
    CrlRootOffline = "crl.root_offline",
    /// no CRL for that issuer name
    CrlUnknownIssuer = "crl.unknown_issuer",
    /// the CSR's public key cannot be read
    CsrBadKey = "csr.bad_key",
    /// the CSR's signature (proof of possession) does not verify
    CsrBadSignature = "csr.bad_signature",
    /// the CSR's challengePassword is not the tls-exporter value (RFC 9266) of the TLS connection it was sent on
    CsrChannelBindingMismatch = "csr.channel_binding_mismatch",
    /// the product requires TLS channel binding and the CSR carries no challengePassword with the connection's tls-exporter value
    CsrChannelBindingMissing = "csr.channel_binding_missing",
    /// the CSR carries a channel binding but the connection is not TLS 1.3, so it has no tls-exporter value
    CsrChannelBindingUnavailable = "csr.channel_binding_unavailable",
    /// the CSR's public key is already certified for a device
    CsrDuplicateKey = "csr.duplicate_key",
    /// the CSR's subject has no serialNumber
    CsrNoSerialNumber = "csr.no_serial_number",
    /// the EST body is not base64
    CsrNotBase64 = "csr.not_base64",
    /// the CSR is not a DER PKCS#10 request
    CsrNotDer = "csr.not_der",
    /// the CSR asks for a subject alternative name the policy forbids
    CsrSanForbidden = "csr.san_forbidden",
    /// the CSR's subject alternative names differ from the registered identity
    CsrSanMismatch = "csr.san_mismatch",
    /// the CSR's subject carries an attribute the policy forbids
    CsrSubjectForbidden = "csr.subject_forbidden",
    /// the CSR's subject differs from the registered identity
    CsrSubjectMismatch = "csr.subject_mismatch",
    /// the device already holds a valid certificate; renew with `simplereenroll`
    DeviceAlreadyEnrolled = "device.already_enrolled",
    /// the device is disabled in the registry
    DeviceDisabled = "device.disabled",
    /// the device serial is already registered
    DeviceExists = "device.exists",
    /// the registration record does not make a valid identity under the product policy
    DeviceIdentityInvalid = "device.identity_invalid",
    /// the serial is not registered (station and certificate routes)
    DeviceNotRegistered = "device.not_registered",
    /// the device's product is not defined by any loaded policy
    DeviceProductUnknown = "device.product_unknown",
    /// an active recall names the device
    DeviceRecalled = "device.recalled",
    /// no registered device with that serial (admin API)
    DeviceUnknown = "device.unknown",
    /// the request body did not arrive within the body timeout
    EstBodyIncomplete = "est.body_incomplete",
    /// the EST request has the wrong Content-Type (`application/pkcs10` expected)
    EstContentType = "est.content_type",
    /// the EST path label names another product or level than the device's
    EstLabelMismatch = "est.label_mismatch",
    /// the EST request body exceeds the size limit
    EstTooLarge = "est.too_large",
    /// no product or level has that EST path label
    EstUnknownLabel = "est.unknown_label",
    /// a `device list` filter is malformed (status, limit, text)
    InventoryBadQuery = "inventory.bad_query",
    /// `device list` names a product no loaded policy defines
    InventoryUnknownProduct = "inventory.unknown_product",
    /// the CA refused to return a certificate that breaks its profile (operator alerted)
    IssuanceDefect = "issuance.defect",
    /// the OCSP request exceeds the size limit
    OcspTooLarge = "ocsp.too_large",
    /// the OCSP URL names no responder of this CA
    OcspUnknownResponder = "ocsp.unknown_responder",
    /// the CSR's key type or size is not allowed by the policy
    PolicyKeyNotAllowed = "policy.key_not_allowed",
    /// the product does not enroll through stations
    PolicyStationNotAllowed = "policy.station_not_allowed",
    /// the product does not accept one-time tokens
    PolicyTokenNotAllowed = "policy.token_not_allowed",
    /// the recall action is neither `hold` nor `revoke`
    RecallBadAction = "recall.bad_action",
    /// the recall batch size is zero
    RecallBadBatch = "recall.bad_batch",
    /// the recall reason is unknown or does not fit the action
    RecallBadReason = "recall.bad_reason",
    /// `registered_before` is not RFC 3339
    RecallBadTime = "recall.bad_time",
    /// the recall is not a hold recall still in force
    RecallNotReleasable = "recall.not_releasable",
    /// no recall with that id
    RecallUnknown = "recall.unknown",
    /// the recall names a product no loaded policy defines
    RecallUnknownProduct = "recall.unknown_product",
    /// the current certificate expired longer ago than the policy's grace
    ReenrollExpired = "reenroll.expired",
    /// the registered identity no longer matches the current certificate
    ReenrollIdentityChanged = "reenroll.identity_changed",
    /// re-enrollment reuses the current key where the policy requires a new one
    ReenrollKeyReuse = "reenroll.key_reuse",
    /// the current certificate is not yet valid
    ReenrollNotYetValid = "reenroll.not_yet_valid",
    /// the current certificate is on hold
    ReenrollOnHold = "reenroll.on_hold",
    /// the current certificate is revoked
    ReenrollRevoked = "reenroll.revoked",
    /// the current certificate was already renewed
    ReenrollSuperseded = "reenroll.superseded",
    /// re-enrollment is asked sooner than the policy's minimum interval (`Retry-After`)
    ReenrollTooSoon = "reenroll.too_soon",
    /// the client certificate was not issued by this CA
    ReenrollUnknownCertificate = "reenroll.unknown_certificate",
    /// the registration CSV cannot be read
    RegistryBadCsv = "registry.bad_csv",
    /// registration lines are invalid (named in the message); nothing registered
    RegistryBadLines = "registry.bad_lines",
    /// no devices given
    RegistryEmpty = "registry.empty",
    /// the JSON body is malformed
    RequestBadBody = "request.bad_body",
    /// the admin request has an unsupported Content-Type
    RequestContentType = "request.content_type",
    /// the revocation reason is not an RFC 5280 reason name
    RevocationUnknownReason = "revocation.unknown_reason",
    /// a certificate search filter is malformed
    SearchBadQuery = "search.bad_query",
    /// the CA failed internally; nothing was issued (see the server log)
    ServerInternal = "server.internal",
    /// the station name is not `<site>-<line>-<station>` of allowed characters
    StationBadName = "station.bad_name",
    /// the station rate limit is out of range
    StationBadRateLimit = "station.bad_rate_limit",
    /// the client certificate is not one of this CA's station certificates
    StationCertificateNotRecognized = "station.certificate_not_recognized",
    /// the station's certificate is revoked
    StationCertificateRevoked = "station.certificate_revoked",
    /// the station is disabled
    StationDisabled = "station.disabled",
    /// a station of that name exists
    StationExists = "station.exists",
    /// the station name is a registered device serial
    StationNameIsDevice = "station.name_is_device",
    /// the station has no products in scope
    StationNoProducts = "station.no_products",
    /// the device's product is outside the station's scope
    StationOutOfScope = "station.out_of_scope",
    /// a product in the station's scope does not enroll through stations
    StationProductRefusesStations = "station.product_refuses_stations",
    /// the station reached its hourly issuance limit (`Retry-After`)
    StationRateLimited = "station.rate_limited",
    /// no station of that name
    StationUnknown = "station.unknown",
    /// a product in the station's scope is not defined by any loaded policy
    StationUnknownProduct = "station.unknown_product",
    /// the CA's database is unavailable; retry later (`Retry-After`)
    StorageUnavailable = "storage.unavailable",
    /// the token lifetime cannot be parsed
    TokenBadTtl = "token.bad_ttl",
    /// the token lifetime exceeds the product's maximum
    TokenTtlTooLong = "token.ttl_too_long",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The README's table of error codes, as generated from [`ALL`].
pub fn markdown_table() -> String {
    let mut table = String::from("| code | meaning |\n|---|---|\n");
    for code in ALL {
        table.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.meaning()));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn codes_are_unique_sorted_and_shaped_family_dot_reason() {
        let texts: Vec<&str> = ALL.iter().map(|c| c.as_str()).collect();
        let unique: BTreeSet<&str> = texts.iter().copied().collect();
        assert_eq!(unique.len(), texts.len(), "a code appears twice");
        assert!(
            texts.windows(2).all(|w| w[0] < w[1]),
            "ALL is in alphabetical order"
        );
        for text in texts {
            let (family, reason) = text.split_once('.').expect("family.reason");
            let shaped = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            };
            assert!(shaped(family) && shaped(reason), "{text}");
        }
        assert!(ALL.iter().all(|c| !c.meaning().is_empty()));
    }

    /// The README between its error-code markers is exactly [`markdown_table`];
    /// `REGENERATE_ERROR_CODES=1` rewrites it.
    #[test]
    fn readme_table_lists_every_code() {
        const BEGIN: &str =
            "<!-- error-codes:begin (generated by ca-server/src/api/error_code.rs) -->\n";
        const END: &str = "<!-- error-codes:end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let start = readme.find(BEGIN).expect("README has the begin marker") + BEGIN.len();
        let end = readme.find(END).expect("README has the end marker");
        let table = markdown_table();
        if std::env::var_os("REGENERATE_ERROR_CODES").is_some() {
            let updated = format!("{}{table}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, updated).expect("write README.md");
            return;
        }
        assert_eq!(
            &readme[start..end],
            table,
            "run with REGENERATE_ERROR_CODES=1"
        );
    }
}
