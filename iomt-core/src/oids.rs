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
/// X520SerialNumber (2.5.4.5).
pub const AT_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
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

/// True when a parsed OID is the dotted one, compared arc by arc: the linter looks extensions
/// and attributes up by OID many times per certificate, and formatting every candidate as a
/// string cost more than the rest of the lookup.
pub fn is_dotted(oid: &x509_parser::oid_registry::Oid<'_>, dotted: &str) -> bool {
    let Some(mut arcs) = oid.iter() else {
        // An arc beyond 64 bits: no OID the profile names has one.
        return false;
    };
    dotted
        .split('.')
        .all(|part| part.parse::<u64>().ok() == arcs.next())
        && arcs.next().is_none()
}

#[cfg(test)]
mod tests {
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
    }
}
