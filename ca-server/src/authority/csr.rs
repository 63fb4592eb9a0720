//! PKCS#10 requests: parse hostile DER, verify proof of possession, describe the key, and
//! check whatever subject and SAN values the CSR carries against the registration record.

use iomt_core::channel_binding::{CHALLENGE_PASSWORD, MAX_CHALLENGE_PASSWORD};
use iomt_core::extensions::{ExtensionError, hardware_module_name_from_other_name};
use iomt_core::identity::{HardwareModuleName, Identity};
use iomt_core::oids;
use iomt_core::policy::{Curve, Policy};
use x509_parser::asn1_rs::Error as Asn1Error;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// id-on-hardwareModuleName as x509-parser prints OIDs.
const HMN_OID: &str = "1.3.6.1.5.5.7.8.4";

/// Why a body is not a well-formed DER PKCS#10 request (all `400 csr.not_der`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Malformed {
    #[error("{0}")]
    Structure(x509_parser::nom::Err<X509Error>),
    #[error("{0} bytes after the request")]
    TrailingBytes(usize),
    #[error("version {0} (RFC 2986 defines only v1, 0)")]
    Version(u32),
    #[error("attributes: {0}")]
    Attributes(Asn1Error),
    #[error("{0} evidence values (draft-ietf-lamps-csr-attestation: COUNTS MAX 1)")]
    EvidenceValues(usize),
    #[error("challengePassword: {0}")]
    ChallengePassword(&'static str),
    #[error("{0} extensionRequest values (PKCS#9 makes it single-valued)")]
    ExtensionRequests(usize),
    #[error("a requested extension does not decode: {0}")]
    Extension(x509_parser::nom::Err<x509_parser::der_parser::error::BerError>),
}

/// What is wrong with a CSR.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsrError {
    #[error("the body is not a DER PKCS#10 certification request: {0}")]
    NotDer(Malformed),
    #[error("the CSR signature does not verify with its own public key (no proof of possession)")]
    BadSignature,
    #[error("a station-authorized CSR must name the device in its subject serialNumber attribute")]
    NoSerialNumber,
    #[error("the CSR public key cannot be read: {0}")]
    UnreadableKey(X509Error),
    #[error(
        "subject attribute {attribute} is `{requested}` in the CSR but `{registered}` in the registration record"
    )]
    SubjectMismatch {
        attribute: &'static str,
        requested: String,
        registered: String,
    },
    #[error("subject attribute {oid} is not allowed (only C, O, CN and serialNumber)")]
    SubjectAttributeForbidden { oid: String },
    #[error(
        "subjectAltName {kind} `{requested}` in the CSR does not match the registration record ({registered})"
    )]
    SanMismatch {
        kind: &'static str,
        requested: String,
        registered: String,
    },
    #[error(
        "subjectAltName {kind} `{value}` is not allowed in device certificates (only the HardwareModuleName and product URI)"
    )]
    SanForbidden { kind: &'static str, value: String },
}

// The cause is written into the message (the client reads only that), so it is no `source`.
impl From<Malformed> for CsrError {
    fn from(malformed: Malformed) -> CsrError {
        CsrError::NotDer(malformed)
    }
}

/// The subject key of a verified CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKey {
    Ec(Option<Curve>),
    Rsa { bits: u32, exponent: u64 },
    Other,
}

impl std::fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectKey::Ec(Some(curve)) => write!(f, "ECDSA {}", curve.as_str()),
            SubjectKey::Ec(None) => f.write_str("ECDSA on an unsupported curve"),
            SubjectKey::Rsa { bits, .. } => write!(f, "RSA-{bits}"),
            SubjectKey::Other => f.write_str("an unsupported key algorithm"),
        }
    }
}

/// A parsed CSR. Its signature is checked by [`Csr::verify_signature`] once the key type is
/// known to be acceptable (ring cannot verify, say, RSA-1024, and that key is refused anyway).
#[derive(Debug, Clone)]
pub struct Csr {
    der: Vec<u8>,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    pub key: SubjectKey,
    subject: Vec<(String, String)>,
    san: Vec<SanEntry>,
    /// The key attestation evidence attribute's value (DER), if present.
    evidence: Option<Vec<u8>>,
    /// The challengePassword text, if present (where a channel-bound CSR carries its binding).
    challenge_password: Option<String>,
}

#[derive(Debug, Clone)]
enum SanEntry {
    /// A HardwareModuleName, or why its DER did not decode (reported in the refusal).
    Hmn(Result<HardwareModuleName, ExtensionError>),
    Uri(String),
    Other(&'static str, String),
}

/// PKCS#9 extensionRequest.
const EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
/// id-aa-evidence (draft-ietf-lamps-csr-attestation).
const EVIDENCE: &str = "1.2.840.113549.1.9.16.2.59";

/// The DER elements `data` is made of, in order.
fn der_elements(mut data: &[u8]) -> Result<Vec<x509_parser::asn1_rs::Any<'_>>, Asn1Error> {
    use x509_parser::asn1_rs::{Any, FromDer};
    let mut items = Vec::new();
    while !data.is_empty() {
        let (rest, item) = Any::from_der(data).map_err(|e| match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(needed) => Asn1Error::Incomplete(needed),
        })?;
        items.push(item);
        data = rest;
    }
    Ok(items)
}

/// One CSR attribute: its dotted OID and the DER of each of its values.
type Attribute = (String, Vec<Vec<u8>>);

/// The CSR's attributes, over all of them (`[0]` of the CertificationRequestInfo).
fn attribute_values(der: &[u8]) -> Result<Vec<Attribute>, Asn1Error> {
    use x509_parser::asn1_rs::{Class, Oid};
    let mut attributes = Vec::new();
    for request in der_elements(der)? {
        for info in der_elements(request.data)?.into_iter().take(1) {
            for field in der_elements(info.data)? {
                if field.class() != Class::ContextSpecific || field.tag().0 != 0 {
                    continue;
                }
                for attribute in der_elements(field.data)? {
                    let parts = der_elements(attribute.data)?;
                    let [oid, values] = parts.as_slice() else {
                        return Err(Asn1Error::InvalidLength);
                    };
                    let values = der_elements(values.data)?
                        .iter()
                        .map(|v| {
                            use x509_parser::asn1_rs::ToDer;
                            v.to_der_vec().map_err(|_| Asn1Error::InvalidLength)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    attributes.push((Oid::new(oid.data.into()).to_id_string(), values));
                }
            }
        }
    }
    Ok(attributes)
}

/// The challengePassword attribute, if present: one value, a PrintableString or UTF8String of
/// at most [`MAX_CHALLENGE_PASSWORD`] characters (PKCS#9 `ub-challenge-password`).
fn challenge_password(attributes: &[Attribute]) -> Result<Option<String>, Malformed> {
    use x509_parser::asn1_rs::{Any, FromDer, Tag};
    let mut found = attributes
        .iter()
        .filter(|(oid, _)| oid == CHALLENGE_PASSWORD);
    let Some((_, values)) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(Malformed::ChallengePassword("the attribute appears twice"));
    }
    let [value] = values.as_slice() else {
        return Err(Malformed::ChallengePassword(
            "it must have exactly one value",
        ));
    };
    let (_, any) = Any::from_der(value)
        .map_err(|_| Malformed::ChallengePassword("its value does not decode"))?;
    let text = match any.tag() {
        Tag::PrintableString => std::str::from_utf8(any.data)
            .ok()
            .filter(|t| t.bytes().all(is_printable))
            .ok_or(Malformed::ChallengePassword("not a valid PrintableString"))?,
        Tag::Utf8String => std::str::from_utf8(any.data)
            .map_err(|_| Malformed::ChallengePassword("not a valid UTF8String"))?,
        _ => {
            return Err(Malformed::ChallengePassword(
                "only PrintableString and UTF8String are accepted",
            ));
        }
    };
    if text.chars().count() > MAX_CHALLENGE_PASSWORD {
        return Err(Malformed::ChallengePassword(
            "longer than 255 characters (ub-challenge-password)",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// The PrintableString alphabet (X.680 §41.4).
fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

impl Csr {
    /// Parses `der` (hostile input): structure, key, subject and requested SAN.
    pub fn parse(der: &[u8]) -> Result<Csr, CsrError> {
        let (rest, csr) = X509CertificationRequest::from_der(der).map_err(Malformed::Structure)?;
        if !rest.is_empty() {
            return Err(Malformed::TrailingBytes(rest.len()).into());
        }
        let info = &csr.certification_request_info;
        if info.version.0 != 0 {
            return Err(Malformed::Version(info.version.0).into());
        }
        let spki = &info.subject_pki;
        let key = match spki.parsed() {
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .and_then(|oid| match oid.to_id_string().as_str() {
                        "1.2.840.10045.3.1.7" => Some(Curve::P256),
                        "1.3.132.0.34" => Some(Curve::P384),
                        _ => None,
                    });
                SubjectKey::Ec(curve)
            }
            Ok(PublicKey::RSA(rsa)) => SubjectKey::Rsa {
                bits: rsa.key_size() as u32,
                exponent: rsa.try_exponent().unwrap_or(0),
            },
            Ok(_) => SubjectKey::Other,
            Err(e) => return Err(CsrError::UnreadableKey(e)),
        };
        let subject = info
            .subject
            .iter_attributes()
            .map(|attr| {
                let value = attr
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|_| "<not a string>".into());
                (attr.attr_type().to_id_string(), value)
            })
            .collect();
        // Every requested extension is read or the request refused: x509-parser reads only the
        // first value of the first extensionRequest, and drops one it cannot parse.
        let attributes = attribute_values(der).map_err(Malformed::Attributes)?;
        let count = |oid: &str| -> usize {
            attributes
                .iter()
                .filter(|(o, _)| o == oid)
                .map(|(_, values)| values.len())
                .sum()
        };
        let requests = count(EXTENSION_REQUEST);
        if count(EVIDENCE) > 1 {
            return Err(Malformed::EvidenceValues(count(EVIDENCE)).into());
        }
        let evidence = attributes
            .iter()
            .find(|(oid, _)| oid == EVIDENCE)
            .and_then(|(_, values)| values.last().cloned());
        if requests > 1 {
            return Err(Malformed::ExtensionRequests(requests).into());
        }
        let challenge_password = challenge_password(&attributes)?;
        let mut san = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::ParseError { error } = ext {
                return Err(Malformed::Extension(error.clone()).into());
            }
            if let ParsedExtension::SubjectAlternativeName(names) = ext {
                for name in &names.general_names {
                    san.push(match name {
                        GeneralName::OtherName(oid, value) if oid.to_id_string() == HMN_OID => {
                            SanEntry::Hmn(hardware_module_name_from_other_name(value))
                        }
                        GeneralName::URI(uri) => SanEntry::Uri((*uri).to_owned()),
                        GeneralName::DNSName(dns) => SanEntry::Other("dNSName", (*dns).to_owned()),
                        GeneralName::RFC822Name(mail) => {
                            SanEntry::Other("rfc822Name", (*mail).to_owned())
                        }
                        GeneralName::IPAddress(_) => {
                            SanEntry::Other("iPAddress", "<address>".into())
                        }
                        other => SanEntry::Other("name", other.to_string()),
                    });
                }
            }
        }
        Ok(Csr {
            der: der.to_vec(),
            spki_der: spki.raw.to_vec(),
            key,
            subject,
            san,
            evidence,
            challenge_password,
        })
    }

    /// The challengePassword text, if the CSR has one (a channel binding, RFC 9266 as carried by
    /// [`iomt_core::channel_binding`]).
    pub fn challenge_password(&self) -> Option<&str> {
        self.challenge_password.as_deref()
    }

    /// The DER of the `id-aa-evidence` attribute's value (an EvidenceBundle), if the CSR has one.
    pub fn evidence(&self) -> Option<&[u8]> {
        self.evidence.as_deref()
    }

    /// Verifies the proof of possession: the CSR is signed by the key it carries.
    pub fn verify_signature(&self) -> Result<(), CsrError> {
        let (_, csr) =
            X509CertificationRequest::from_der(&self.der).map_err(Malformed::Structure)?;
        csr.verify_signature().map_err(|_| CsrError::BadSignature)
    }

    /// The subject serialNumber the CSR asks for (the device serial, for a station request).
    pub fn subject_serial_number(&self) -> Option<&str> {
        self.subject
            .iter()
            .find(|(oid, _)| oid == "2.5.4.5")
            .map(|(_, value)| value.as_str())
    }

    /// SHA-256 of the SubjectPublicKeyInfo: the key's identity for clone detection.
    pub fn spki_sha256(&self) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, &self.spki_der)
            .as_ref()
            .to_vec()
    }

    /// Whatever subject and SAN values the CSR carries must equal the record's (RFC 7030
    /// §4.2.2 style): omitted values are filled from the record, differing ones refused.
    pub fn check_identity(&self, identity: &Identity) -> Result<(), CsrError> {
        for (oid, value) in &self.subject {
            let (attribute, registered) = match oid.as_str() {
                "2.5.4.6" => ("C", &identity.country),
                "2.5.4.10" => ("O", &identity.organization),
                "2.5.4.3" => ("CN", &identity.common_name),
                "2.5.4.5" => ("serialNumber", &identity.serial_number),
                _ => return Err(CsrError::SubjectAttributeForbidden { oid: oid.clone() }),
            };
            if value != registered {
                return Err(CsrError::SubjectMismatch {
                    attribute,
                    requested: value.clone(),
                    registered: registered.clone(),
                });
            }
        }
        for entry in &self.san {
            match entry {
                SanEntry::Hmn(requested) => {
                    let registered = identity.hardware_module_name.as_ref();
                    if requested.as_ref().ok() != registered {
                        return Err(CsrError::SanMismatch {
                            kind: "HardwareModuleName",
                            requested: match requested {
                                Ok(hmn) => format!(
                                    "{} {}",
                                    hmn.hw_type,
                                    String::from_utf8_lossy(&hmn.hw_serial)
                                ),
                                Err(e) => format!("<undecodable: {e}>"),
                            },
                            registered: registered
                                .map(|h| {
                                    format!(
                                        "{} {}",
                                        h.hw_type,
                                        String::from_utf8_lossy(&h.hw_serial)
                                    )
                                })
                                .unwrap_or_else(|| "none".into()),
                        });
                    }
                }
                SanEntry::Uri(uri) => {
                    if identity.uri.as_deref() != Some(uri.as_str()) {
                        return Err(CsrError::SanMismatch {
                            kind: "URI",
                            requested: uri.clone(),
                            registered: identity.uri.clone().unwrap_or_else(|| "none".into()),
                        });
                    }
                }
                SanEntry::Other(kind, value) => {
                    return Err(CsrError::SanForbidden {
                        kind,
                        value: value.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Why a subject key is refused by policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} is not allowed by policy {policy} (allowed: {allowed})")]
pub struct KeyNotAllowed {
    pub key: String,
    pub policy: String,
    pub allowed: String,
}

/// Checks the subject key against `[keys]` and returns the matching entry's sunset.
pub fn check_key(policy: &Policy, key: SubjectKey) -> Result<time::Date, KeyNotAllowed> {
    let keys = &policy.keys;
    let entry = keys.allowed.iter().find(|allowed| match key {
        SubjectKey::Ec(Some(curve)) => allowed.allows_curve(curve),
        SubjectKey::Rsa { bits, exponent } => {
            allowed.allows_rsa(bits)
                && exponent >= keys.rsa_min_public_exponent
                && exponent % 2 == 1
        }
        SubjectKey::Ec(None) | SubjectKey::Other => false,
    });
    match entry {
        Some(entry) => Ok(entry.sunset_date()),
        None => Err(KeyNotAllowed {
            key: match key {
                SubjectKey::Rsa { bits, exponent } if bits_allowed(policy, bits) => {
                    format!("RSA-{bits} with public exponent {exponent}")
                }
                other => other.to_string(),
            },
            policy: policy.policy.id.clone(),
            allowed: describe_allowed(policy),
        }),
    }
}

fn bits_allowed(policy: &Policy, bits: u32) -> bool {
    policy.keys.allowed.iter().any(|a| a.allows_rsa(bits))
}

fn describe_allowed(policy: &Policy) -> String {
    policy
        .keys
        .allowed
        .iter()
        .map(|a| match (&a.curve, &a.bits) {
            (Some(curve), _) => format!("ECDSA {}", curve.as_str()),
            (None, Some(bits)) => format!(
                "RSA-{}",
                bits.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            (None, None) => "?".into(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The OID list for csrattrs: what a CSR for `policy` must contain.
pub fn requirements(policy: &Policy) -> iomt_core::wire::CsrRequirements {
    let curves: Vec<_> = policy
        .keys
        .allowed
        .iter()
        .filter_map(|a| a.curve)
        .map(|curve| match curve {
            Curve::P256 => oids::SECP256R1,
            Curve::P384 => oids::SECP384R1,
        })
        .collect();
    let mut requirements = iomt_core::wire::CsrRequirements::default();
    if !curves.is_empty() {
        requirements.oids.push(oids::ECDSA_WITH_SHA256);
        requirements.attributes.push((oids::EC_PUBLIC_KEY, curves));
    }
    if policy.keys.allowed.iter().any(|a| a.bits.is_some()) {
        requirements.oids.push(oids::RSA_ENCRYPTION);
    }
    requirements.oids.push(oids::AT_SERIAL_NUMBER);
    requirements
}

#[cfg(test)]
#[path = "tests/csr.rs"]
mod tests;
