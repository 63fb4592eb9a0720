//! DER for the certificate extensions rcgen does not model: the SAN with a HardwareModuleName
//! otherName, certificatePolicies, authorityInfoAccess and the MASA URL. Built with the typed
//! RustCrypto `x509-cert` structures, never by hand.

use std::str::FromStr;

use der::asn1::{Ia5String, ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode, Sequence, Tagged};
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::{GeneralName, OtherName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, CertificatePolicies, SubjectAltName,
};

use crate::identity::{HardwareModuleName, PermanentIdentifier};
use crate::oids;

/// Why an extension could not be encoded or decoded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("`{0}` is not a dotted OID")]
    Oid(String),
    #[error("`{0}` is not an IA5 (ASCII) string")]
    NotIa5(String),
    #[error("DER: {0}")]
    Der(#[from] der::Error),
}

/// RFC 4108 `HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct HardwareModuleNameDer {
    hw_type: ObjectIdentifier,
    hw_serial_num: OctetString,
}

/// RFC 4043 `PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String OPTIONAL,
/// assigner OBJECT IDENTIFIER OPTIONAL }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct PermanentIdentifierDer {
    identifier_value: Option<String>,
    assigner: Option<ObjectIdentifier>,
}

fn oid(dotted: &str) -> Result<ObjectIdentifier, ExtensionError> {
    ObjectIdentifier::from_str(dotted).map_err(|_| ExtensionError::Oid(dotted.to_owned()))
}

fn ia5(text: &str) -> Result<Ia5String, ExtensionError> {
    Ia5String::new(text).map_err(|_| ExtensionError::NotIa5(text.to_owned()))
}

/// The DER of a HardwareModuleName SEQUENCE (the otherName value).
pub fn hardware_module_name_der(hmn: &HardwareModuleName) -> Result<Vec<u8>, ExtensionError> {
    let value = HardwareModuleNameDer {
        hw_type: oid(&hmn.hw_type)?,
        hw_serial_num: OctetString::new(hmn.hw_serial.clone())?,
    };
    Ok(value.to_der()?)
}

/// Decodes a HardwareModuleName SEQUENCE (the otherName value, without the [0] wrapper).
pub fn decode_hardware_module_name(der: &[u8]) -> Result<HardwareModuleName, ExtensionError> {
    let value = HardwareModuleNameDer::from_der(der)?;
    Ok(HardwareModuleName {
        hw_type: value.hw_type.to_string(),
        hw_serial: value.hw_serial_num.as_bytes().to_vec(),
    })
}

/// Decodes a HardwareModuleName from an otherName's `[0] EXPLICIT` value as x509-parser
/// returns it (`GeneralName::OtherName(oid, bytes)`: the bytes after the type-id).
pub fn hardware_module_name_from_other_name(
    explicit: &[u8],
) -> Result<HardwareModuleName, ExtensionError> {
    let wrapper = der::asn1::AnyRef::from_der(explicit)?;
    let expected = der::Tag::ContextSpecific {
        constructed: true,
        number: der::TagNumber::N0,
    };
    if wrapper.tag() != expected {
        return Err(ExtensionError::Der(der::Error::from(
            der::ErrorKind::TagUnexpected {
                expected: Some(expected),
                actual: wrapper.tag(),
            },
        )));
    }
    decode_hardware_module_name(wrapper.value())
}

/// The DER of a PermanentIdentifier SEQUENCE (the otherName value).
pub fn permanent_identifier_der(id: &PermanentIdentifier) -> Result<Vec<u8>, ExtensionError> {
    let value = PermanentIdentifierDer {
        identifier_value: Some(id.value.clone()),
        assigner: Some(oid(&id.assigner)?),
    };
    Ok(value.to_der()?)
}

/// Decodes a PermanentIdentifier from an otherName's `[0] EXPLICIT` value as x509-parser
/// returns it. Both fields must be present (the only form this CA issues).
pub fn permanent_identifier_from_other_name(
    explicit: &[u8],
) -> Result<PermanentIdentifier, ExtensionError> {
    let value = PermanentIdentifierDer::from_der(explicit_zero(explicit)?)?;
    match (value.identifier_value, value.assigner) {
        (Some(value), Some(assigner)) => Ok(PermanentIdentifier {
            value,
            assigner: assigner.to_string(),
        }),
        _ => Err(ExtensionError::Der(der::Error::from(
            der::ErrorKind::Value {
                tag: der::Tag::Sequence,
            },
        ))),
    }
}

/// The contents of a `[0] EXPLICIT` wrapper.
fn explicit_zero(explicit: &[u8]) -> Result<&[u8], ExtensionError> {
    let wrapper = der::asn1::AnyRef::from_der(explicit)?;
    let expected = der::Tag::ContextSpecific {
        constructed: true,
        number: der::TagNumber::N0,
    };
    if wrapper.tag() != expected {
        return Err(ExtensionError::Der(der::Error::from(
            der::ErrorKind::TagUnexpected {
                expected: Some(expected),
                actual: wrapper.tag(),
            },
        )));
    }
    Ok(wrapper.value())
}

/// The subjectAltName extension value: HardwareModuleName otherName, then the product URI.
pub fn subject_alt_name(
    hmn: Option<&HardwareModuleName>,
    uri: Option<&str>,
) -> Result<Vec<u8>, ExtensionError> {
    subject_alt_name_with(hmn, None, uri)
}

/// The subjectAltName extension value: HardwareModuleName, permanentIdentifier (a TPM-attested
/// key, docs/PROFILE.md §2.7), then the product URI.
pub fn subject_alt_name_with(
    hmn: Option<&HardwareModuleName>,
    permanent_identifier: Option<&PermanentIdentifier>,
    uri: Option<&str>,
) -> Result<Vec<u8>, ExtensionError> {
    let mut names = Vec::new();
    if let Some(hmn) = hmn {
        names.push(GeneralName::OtherName(OtherName {
            type_id: oids::HARDWARE_MODULE_NAME,
            value: Any::from_der(&hardware_module_name_der(hmn)?)?,
        }));
    }
    if let Some(id) = permanent_identifier {
        names.push(GeneralName::OtherName(OtherName {
            type_id: oids::PERMANENT_IDENTIFIER,
            value: Any::from_der(&permanent_identifier_der(id)?)?,
        }));
    }
    if let Some(uri) = uri {
        names.push(GeneralName::UniformResourceIdentifier(ia5(uri)?));
    }
    Ok(SubjectAltName(names).to_der()?)
}

/// The certificatePolicies extension value: OIDs only, no qualifiers (IOMT-POL-01).
pub fn certificate_policies(policy_oids: &[String]) -> Result<Vec<u8>, ExtensionError> {
    let policies = policy_oids
        .iter()
        .map(|dotted| {
            Ok(PolicyInformation {
                policy_identifier: oid(dotted)?,
                policy_qualifiers: None,
            })
        })
        .collect::<Result<Vec<_>, ExtensionError>>()?;
    Ok(CertificatePolicies(policies).to_der()?)
}

/// The authorityInfoAccess extension value: OCSP (when given) and caIssuers, HTTP URIs.
pub fn authority_info_access(
    ocsp: Option<&str>,
    ca_issuers: &str,
) -> Result<Vec<u8>, ExtensionError> {
    let mut access = Vec::new();
    if let Some(ocsp) = ocsp {
        access.push(AccessDescription {
            access_method: oids::AD_OCSP,
            access_location: GeneralName::UniformResourceIdentifier(ia5(ocsp)?),
        });
    }
    access.push(AccessDescription {
        access_method: oids::AD_CA_ISSUERS,
        access_location: GeneralName::UniformResourceIdentifier(ia5(ca_issuers)?),
    });
    Ok(AuthorityInfoAccessSyntax(access).to_der()?)
}

/// The id-pe-masa-url extension value: an IA5String (RFC 8995 §2.3.2).
pub fn masa_url(authority: &str) -> Result<Vec<u8>, ExtensionError> {
    Ok(ia5(authority)?.to_der()?)
}

/// RFC 7093 method 1 key identifier: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey BIT STRING value.
pub fn key_identifier(subject_public_key: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, subject_public_key);
    digest.as_ref()[..20].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_module_name_matches_the_profile_example() {
        // docs/PROFILE.md §2.7 gives the DER of this value.
        let hmn = HardwareModuleName {
            hw_type: "1.3.6.1.4.1.32473.99.4.1".into(),
            hw_serial: b"FG50001234".to_vec(),
        };
        let der = hardware_module_name_der(&hmn).expect("der");
        assert_eq!(
            hex::encode(&der),
            "3019060b2b0601040181fd59630401040a46473530303031323334"
        );
        assert_eq!(decode_hardware_module_name(&der).expect("decode"), hmn);
    }

    #[test]
    fn san_parses_back_with_x509_parser() {
        use x509_parser::extensions::{GeneralName as Gn, SubjectAlternativeName};
        use x509_parser::prelude::FromDer;
        let hmn = HardwareModuleName {
            hw_type: "1.2.3.4".into(),
            hw_serial: b"SN1".to_vec(),
        };
        let der =
            subject_alt_name(Some(&hmn), Some("https://id.example/01/1/21/SN1")).expect("san");
        let (_, san) = SubjectAlternativeName::from_der(&der).expect("parse");
        assert_eq!(san.general_names.len(), 2);
        assert!(
            matches!(san.general_names[0], Gn::OtherName(ref oid, _) if oid.to_id_string() == "1.3.6.1.5.5.7.8.4")
        );
        assert!(matches!(
            san.general_names[1],
            Gn::URI("https://id.example/01/1/21/SN1")
        ));
    }
}
