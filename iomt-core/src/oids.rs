//! Object identifiers used across the profile, as dotted strings and `der` constants.

use der::asn1::ObjectIdentifier;

/// id-on-hardwareModuleName (RFC 4108 §5).
pub const HARDWARE_MODULE_NAME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.4");
/// id-on-permanentIdentifier (RFC 4043).
pub const PERMANENT_IDENTIFIER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.3");
/// id-pe-masa-url (RFC 8995 §2.3.2).
pub const MASA_URL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.32");
/// id-pe-authorityInfoAccess.
pub const AUTHORITY_INFO_ACCESS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
/// id-ad-ocsp.
pub const AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers.
pub const AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
/// id-ce-subjectAltName.
pub const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// id-ce-certificatePolicies.
pub const CERTIFICATE_POLICIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32");
/// id-ecPublicKey.
pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / P-256.
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 / P-384.
pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption.
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// ecdsa-with-SHA256.
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-aa-evidence (draft-ietf-lamps-csr-attestation, early-allocated id-aa 59): the PKCS#10
/// attribute that carries key attestation evidence.
pub const AA_EVIDENCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.59");
/// TCG `TcgAttestCertify` evidence statement: a TPM2_Certify of the CSR key.
pub const TCG_ATTEST_CERTIFY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.20.1");
/// TCG hwType of a TPM 2.0 (HardwareModuleName of a TPM-resident key).
pub const TCG_HW_TYPE_TPM2: &str = "2.23.133.1.2";
/// TCG assigner of a TPM's permanentIdentifier (its EK certificate digest), RFC 4043 `assigner`.
pub const TCG_PERMANENT_IDENTIFIER_ASSIGNER: &str = "2.23.133.12.1";
/// tcg-cap-verifiedTPMResidency: the key was verified to be resident in a TPM.
pub const TCG_CAP_VERIFIED_TPM_RESIDENCY: &str = "2.23.133.11.1.1";
/// tcg-cap-verifiedTPMFixed: the key was verified to be fixed to that TPM.
pub const TCG_CAP_VERIFIED_TPM_FIXED: &str = "2.23.133.11.1.2";
/// The marker "key attestation verified" below a level's arc (`<arc>.7.2.10`, beside the level
/// OIDs `<arc>.7.1.N`; docs/PROFILE.md §2.9).
pub const ATTESTATION_VERIFIED_NUMBERING: &str = "7.2.10";
/// tcg-kp-EKCertificate: the extended key usage of an EK certificate.
pub const TCG_KP_EK_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.8.1");
/// tcg-at-tpmManufacturer (in the EK certificate's SAN directoryName).
pub const TCG_AT_TPM_MANUFACTURER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.1");
/// X520SerialNumber (2.5.4.5).
pub const AT_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
/// The operator certificate policy: a certificate that authenticates a person or service to
/// the CA's admin API, never a device or a station. PLACEHOLDER under the RFC 5612 documentation
/// arc (1.3.6.1.4.1.32473.*), like every evaluation OID of this project (levels 7.1.x, markers
/// 7.2.x, stations 7.4.1); a production CA replaces it with an OID of its own arc.
pub const OPERATOR_POLICY: &str = "1.3.6.1.4.1.32473.7.5.1";
/// Extended key usage of the CA's audit key: it signs checkpoints of the audit trail and
/// nothing else. PLACEHOLDER under the same documentation arc (7.6.x).
pub const KP_AUDIT_CHECKPOINT: &str = "1.3.6.1.4.1.32473.7.6.1";
/// id-kp-clientAuth.
pub const KP_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
/// id-kp-serverAuth.
pub const KP_SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";

/// Maps a policy-file EKU name (`id-kp-clientAuth`) to its dotted OID.
pub fn eku_oid(name: &str) -> Option<&'static str> {
    match name {
        "id-kp-clientAuth" => Some(KP_CLIENT_AUTH),
        "id-kp-serverAuth" => Some(KP_SERVER_AUTH),
        _ => None,
    }
}

/// True when a parsed OID is the dotted one. The linter looks extensions and attributes up by
/// OID many times per certificate, so the dotted form is encoded arc by arc as it is read and
/// compared with the OID's DER content octets, without allocating and stopping at the first
/// octet that differs (formatting every candidate as a string, or decoding its arcs, cost more
/// than the rest of the lookup).
pub fn is_dotted(oid: &x509_parser::oid_registry::Oid<'_>, dotted: &str) -> bool {
    let mut der = oid.as_bytes();
    let mut arcs = dotted.as_bytes().split(|&byte| byte == b'.').map(arc);
    let (Some(Some(first)), Some(Some(second))) = (arcs.next(), arcs.next()) else {
        return false;
    };
    // X.690 §8.19.4: the first two arcs share one subidentifier, 40 × first + second.
    if first > 2 || (first < 2 && second >= 40) {
        return false;
    }
    let Some(head) = second.checked_add(40 * first) else {
        return false;
    };
    take_subidentifier(&mut der, head)
        && arcs.all(|arc| arc.is_some_and(|arc| take_subidentifier(&mut der, arc)))
        && der.is_empty()
}

/// One decimal arc of a dotted OID; `None` when empty, not decimal or beyond 64 bits.
fn arc(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Consumes `value`'s subidentifier (base 128, most significant group first, the high bit set
/// on all but the last octet) from the front of `der`; false when `der` does not start with it.
fn take_subidentifier(der: &mut &[u8], value: u64) -> bool {
    let groups = (64 - (value | 1).leading_zeros()).div_ceil(7) as usize;
    let Some((head, rest)) = der.split_at_checked(groups) else {
        return false;
    };
    let matches = head.iter().enumerate().all(|(i, &octet)| {
        let shift = 7 * (groups - 1 - i);
        let continuation = if i + 1 < groups { 0x80 } else { 0 };
        u64::from(octet) == ((value >> shift) & 0x7f) | continuation
    });
    if matches {
        *der = rest;
    }
    matches
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::str::FromStr;

    use super::is_dotted;
    use x509_parser::oid_registry::Oid;

    #[test]
    fn matches_only_the_same_arcs() {
        let san = Oid::from(&[2, 5, 29, 17]).unwrap();
        assert!(is_dotted(&san, "2.5.29.17"));
        assert!(!is_dotted(&san, "2.5.29.1"));
        assert!(!is_dotted(&san, "2.5.29.17.0"));
        assert!(!is_dotted(&san, "2.5.29"));
        assert!(!is_dotted(&san, "2.5.29.x"));
        let any_policy = Oid::from(&[2, 5, 29, 32, 0]).unwrap();
        assert!(is_dotted(&any_policy, "2.5.29.32.0"));
        assert!(!is_dotted(&any_policy, "2.5.29.32"));
        assert!(!is_dotted(&any_policy, "2.5.29..32.0"));
        assert!(!is_dotted(&any_policy, ""));
        assert!(!is_dotted(&any_policy, "2"));
    }

    /// Arcs of several octets, the shared first subidentifier, and arcs too large for 64 bits
    /// agree with the OIDs as x509-parser decodes them.
    #[test]
    fn multi_octet_and_joint_arcs_agree_with_the_parser() {
        for dotted in [
            "1.2.840.113549.1.1.11",
            "1.2.840.10045.4.3.2",
            "2.16.840.1.101.3.4.2.1",
            "1.39.128.16383.16384.18446744073709551615",
            "0.0",
        ] {
            let oid = Oid::from_str(dotted).unwrap();
            assert!(is_dotted(&oid, dotted), "{dotted}");
            assert!(!is_dotted(&oid, &format!("{dotted}.1")), "{dotted}.1");
        }
        let sha256 = Oid::from_str("2.16.840.1.101.3.4.2.1").unwrap();
        assert!(!is_dotted(&sha256, "2.16.840.1.101.3.4.2.2"));
        assert!(
            !is_dotted(&sha256, "1.56.840.1.101.3.4.2.1"),
            "40 × 1 + 56 ≠ 40 × 2 + 16"
        );
        assert!(!is_dotted(
            &sha256,
            "2.16.840.1.101.3.4.2.18446744073709551616"
        ));
        // 2.999.3: the joint subidentifier 1079 takes two octets.
        let joint = Oid::new(Cow::Borrowed(&[0x88, 0x37, 0x03]));
        assert!(is_dotted(&joint, "2.999.3"));
        assert!(!is_dotted(&joint, "2.999"));
        // 2.25.(2^128 − 1): an arc beyond 64 bits matches no dotted form this code can read.
        let mut uuid = vec![0x69, 0x83];
        uuid.extend([0xff; 17]);
        uuid.push(0x7f);
        let huge = Oid::new(Cow::Owned(uuid));
        assert!(!is_dotted(&huge, "2.25.18446744073709551615"));
        assert!(!is_dotted(
            &huge,
            "2.25.340282366920938463463374607431768211455"
        ));
    }
}
