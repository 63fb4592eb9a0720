//! EST wire formats (RFC 7030): certs-only PKCS#7 out and in, and the csrattrs body.

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData};
use der::asn1::AnyRef;
use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Any, Choice, Decode, Encode, Tagged};
use x509_cert::attr::Attribute;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// Why an EST body could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a certs-only PKCS#7 SignedData: {0}")]
    NotCertsOnly(&'static str),
    #[error("DER: {0}")]
    Der(#[from] der::Error),
}

/// RFC 5652 SignedData of the degenerate certs-only shape (RFC 7030 §4.1.3): no content, no
/// signers, and the certificates carried as the DER they already are. The `cms` crate's
/// `SignedData` would decode every certificate into its fields only to encode it again, which
/// was a twentieth of the CPU an enrollment costs.
#[derive(der::Sequence)]
struct CertsOnlySignedData<'a> {
    version: CmsVersion,
    digest_algorithms: SetOfVec<AnyRef<'a>>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    certificates: SetOfVec<AnyRef<'a>>,
    signer_infos: SetOfVec<AnyRef<'a>>,
}

/// Wraps DER certificates in a degenerate certs-only SignedData (RFC 7030 §4.1.3, RFC 5652).
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, WireError> {
    let mut set = SetOfVec::new();
    for der in certificates {
        let certificate = AnyRef::from_der(der)?;
        if certificate.tag() != der::Tag::Sequence {
            return Err(WireError::NotCertsOnly("a certificate is not a SEQUENCE"));
        }
        set.insert(certificate)?;
    }
    let signed = CertsOnlySignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: set,
        signer_infos: SetOfVec::new(),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed)?,
    };
    Ok(info.to_der()?)
}

/// Extracts the DER certificates from a certs-only SignedData.
pub fn parse_certs_only(der: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let info = ContentInfo::from_der(der)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(WireError::NotCertsOnly("content type is not id-signedData"));
    }
    let signed: SignedData = info.content.decode_as()?;
    let Some(set) = signed.certificates else {
        return Err(WireError::NotCertsOnly("no certificates"));
    };
    let mut out = Vec::new();
    for choice in set.0.iter() {
        if let CertificateChoices::Certificate(cert) = choice {
            out.push(cert.to_der()?);
        }
    }
    Ok(out)
}

/// `AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }` (RFC 7030 §4.5.2).
#[derive(Clone, Debug, Eq, PartialEq, Choice)]
pub enum AttrOrOid {
    Oid(ObjectIdentifier),
    Attribute(Attribute),
}

/// What a CSR must contain, as the csrattrs response lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsrRequirements {
    /// Plain OIDs: e.g. the signature algorithm and subject attributes the server expects.
    pub oids: Vec<ObjectIdentifier>,
    /// Attribute type with allowed values: e.g. id-ecPublicKey with the allowed curves.
    pub attributes: Vec<(ObjectIdentifier, Vec<ObjectIdentifier>)>,
}

/// Encodes `CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID`.
pub fn encode_csrattrs(requirements: &CsrRequirements) -> Result<Vec<u8>, WireError> {
    let mut items: Vec<AttrOrOid> = requirements
        .oids
        .iter()
        .copied()
        .map(AttrOrOid::Oid)
        .collect();
    for (attr_type, values) in &requirements.attributes {
        let values = values
            .iter()
            .map(Any::encode_from)
            .collect::<Result<Vec<_>, _>>()?;
        items.push(AttrOrOid::Attribute(Attribute {
            oid: *attr_type,
            values: SetOfVec::try_from(values)?,
        }));
    }
    Ok(items.to_der()?)
}

/// Decodes a csrattrs body (DER, already base64-decoded).
pub fn decode_csrattrs(der: &[u8]) -> Result<CsrRequirements, WireError> {
    let items = Vec::<AttrOrOid>::from_der(der)?;
    let mut out = CsrRequirements::default();
    for item in items {
        match item {
            AttrOrOid::Oid(oid) => out.oids.push(oid),
            AttrOrOid::Attribute(attribute) => {
                let values = attribute
                    .values
                    .iter()
                    .filter_map(|v| v.decode_as::<ObjectIdentifier>().ok())
                    .collect();
                out.attributes.push((attribute.oid, values));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oids;

    fn self_signed() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).expect("params");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn certs_only_round_trips() {
        let (a, b) = (self_signed(), self_signed());
        let p7 = certs_only(&[&a, &b]).expect("encode");
        let mut back = parse_certs_only(&p7).expect("decode");
        back.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(back, expected);
    }

    /// One certificate: the same bytes as the `cms` crate's SignedData of the decoded
    /// certificate. Several: carried as they are, in DER's order whatever the order given.
    #[test]
    fn certs_only_carries_certificates_as_they_are_in_der_order() {
        use cms::cert::CertificateChoices;
        use cms::signed_data::{CertificateSet, SignerInfos};
        let by_cms = |ders: &[&[u8]]| {
            let choices = ders
                .iter()
                .map(|der| {
                    CertificateChoices::Certificate(x509_cert::Certificate::from_der(der).unwrap())
                })
                .collect::<Vec<_>>();
            let signed = SignedData {
                version: CmsVersion::V1,
                digest_algorithms: SetOfVec::new(),
                encap_content_info: EncapsulatedContentInfo {
                    econtent_type: ID_DATA,
                    econtent: None,
                },
                certificates: Some(CertificateSet::try_from(choices).unwrap()),
                crls: None,
                signer_infos: SignerInfos(SetOfVec::new()),
            };
            ContentInfo {
                content_type: ID_SIGNED_DATA,
                content: Any::encode_from(&signed).unwrap(),
            }
            .to_der()
            .unwrap()
        };
        let certs: Vec<Vec<u8>> = (0..5).map(|_| self_signed()).collect();
        let all: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
        assert_eq!(certs_only(&all[..1]).unwrap(), by_cms(&all[..1]));

        // With several, the set is in DER order: by encoding, so shorter certificates first.
        // (The `cms` crate orders decoded certificates field by field, which is not DER's order.)
        let p7 = certs_only(&all).unwrap();
        let carried = carried_certificates(&p7);
        let mut expected = certs.clone();
        expected.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        assert_eq!(carried, expected);
        let reversed: Vec<&[u8]> = all.iter().rev().copied().collect();
        assert_eq!(certs_only(&reversed).unwrap(), p7);
    }

    /// The certificates of a certs-only SignedData as they are encoded, in their order.
    fn carried_certificates(p7: &[u8]) -> Vec<Vec<u8>> {
        let info = ContentInfo::from_der(p7).unwrap();
        let signed: CertsOnlySignedData<'_> = info.content.decode_as().unwrap();
        signed
            .certificates
            .iter()
            .map(|certificate| certificate.to_der().unwrap())
            .collect()
    }

    #[test]
    fn certs_only_refuses_what_is_not_a_certificate() {
        assert!(certs_only(&[&[0x04, 0x01, 0x00]]).is_err());
        assert!(certs_only(&[&[0x30, 0x05, 0x00]]).is_err());
    }

    #[test]
    fn parse_certs_only_rejects_other_content() {
        assert!(parse_certs_only(&[0x30, 0x00]).is_err());
        let not_p7 = self_signed();
        assert!(parse_certs_only(&not_p7).is_err());
    }

    #[test]
    fn csrattrs_round_trips() {
        let requirements = CsrRequirements {
            oids: vec![oids::ECDSA_WITH_SHA256, oids::AT_SERIAL_NUMBER],
            attributes: vec![(oids::EC_PUBLIC_KEY, vec![oids::SECP256R1, oids::SECP384R1])],
        };
        let der = encode_csrattrs(&requirements).expect("encode");
        let mut back = decode_csrattrs(&der).expect("decode");
        back.attributes[0].1.sort();
        let mut expected = requirements;
        expected.attributes[0].1.sort();
        assert_eq!(back, expected);
    }
}
