//! Table tests for `Csr::parse` and the checks every CSR passes before issuance, in the order
//! `vet_csr` runs them: parse, key against the policy, proof of possession, subject and SAN
//! against the registration record. Each row is a named request, honest or hostile, and the
//! exact outcome it earns.

#[path = "csr_props.rs"]
mod props;

use std::sync::LazyLock;

use iomt_core::identity::{DeviceRecord, HardwareModuleName, Identity};
use iomt_core::policy::{Curve, Level, Policy, PolicySet};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, KeyPair, SanType,
    SigningKey,
};

use super::{Csr, CsrError, KeyNotAllowed, SubjectKey, check_key};
use crate::tests_support::tlv;

pub(super) const SERIAL: &str = "IP20000001";
const GTIN: &str = "00850000000017";

static POLICIES: LazyLock<PolicySet> = LazyLock::new(|| {
    PolicySet::from_sources(iomt_core::policy::shipped_sources()).expect("shipped policies")
});

/// The example infusion pump: ECDSA P-256 or P-384 only.
fn pump() -> &'static Policy {
    POLICIES.product("example-infusion-pump").expect("pump")
}

/// The Basic level: ECDSA and RSA 2048, 3072, 4096.
fn basic() -> &'static Policy {
    POLICIES.level(Level::Basic)
}

/// What the registration record says device `SERIAL` is.
pub(super) fn identity() -> Identity {
    let record = DeviceRecord {
        serial: SERIAL.into(),
        gtin: GTIN.into(),
    };
    Identity::build(pump(), &record).expect("identity")
}

// ---------------------------------------------------------------------------------------------
// CSRs made by rcgen: what honest clients send, and honest-looking requests for the wrong thing.

pub(super) fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

/// The subject an enroll-client sends: serialNumber alone, as a PrintableString.
fn serial_only(serial: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(serial.try_into().expect("printable")),
    );
    dn
}

/// A CSR signed by `key` with `edit` applied to the enroll-client's parameters.
pub(super) fn csr_with(
    key: &KeyPair,
    edit: impl FnOnce(&mut CertificateParams),
    attributes: Vec<rcgen::Attribute>,
) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = serial_only(SERIAL);
    edit(&mut params);
    params
        .serialize_request_with_attributes(key, attributes)
        .expect("CSR")
        .der()
        .to_vec()
}

/// The CSR an enroll-client sends for `SERIAL`.
pub(super) fn honest(key: &KeyPair) -> Vec<u8> {
    csr_with(key, |_| {}, Vec::new())
}

/// The subjectAltName extension request, DER as `iomt_core` encodes it for certificates.
fn san_request(hmn: Option<&HardwareModuleName>, uri: Option<&str>) -> CustomExtension {
    let der = iomt_core::extensions::subject_alt_name(hmn, uri).expect("SAN");
    CustomExtension::from_oid_content(&[2, 5, 29, 17], der)
}

// ---------------------------------------------------------------------------------------------
// CSRs assembled by hand: the structures rcgen will not produce.

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_SECP256K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const NULL: &[u8] = &[0x05, 0x00];
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const SHA256_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// `Name` with the serialNumber attribute alone.
fn serial_name() -> Vec<u8> {
    let atv = seq(&[
        &[0x06, 0x03, 0x55, 0x04, 0x05],
        &tlv(0x13, SERIAL.as_bytes()),
    ]);
    seq(&[&tlv(0x31, &atv)])
}

/// An RSA SubjectPublicKeyInfo with a `bits`-bit modulus (not a real key: nobody holds it).
fn rsa_spki(bits: usize, exponent: &[u8]) -> Vec<u8> {
    let mut modulus = vec![0x00, 0xc5];
    modulus.resize(bits / 8 + 1, 0x5a);
    let last = modulus.len() - 1;
    modulus[last] |= 1;
    let key = seq(&[&tlv(0x02, &modulus), &tlv(0x02, exponent)]);
    let mut bit_string = vec![0x00];
    bit_string.extend(key);
    seq(&[&seq(&[OID_RSA_ENCRYPTION, NULL]), &tlv(0x03, &bit_string)])
}

/// An EC SubjectPublicKeyInfo on secp256k1 (a curve no IoMT level allows).
fn secp256k1_spki() -> Vec<u8> {
    let mut point = vec![0x00, 0x04];
    point.extend([0x42; 64]);
    seq(&[
        &seq(&[OID_EC_PUBLIC_KEY, OID_SECP256K1]),
        &tlv(0x03, &point),
    ])
}

/// The parts of a CertificationRequest, to assemble as a row needs.
pub(super) struct Raw {
    version: u8,
    subject: Vec<u8>,
    spki: Vec<u8>,
    /// The `[0]` attributes' contents; `None` leaves the field out.
    attributes: Option<Vec<u8>>,
    signature_algorithm: &'static [u8],
}

impl Raw {
    /// A v1 request for `SERIAL` carrying `key`'s public key, no attributes.
    pub(super) fn for_key(key: &KeyPair) -> Raw {
        Raw {
            version: 0,
            subject: serial_name(),
            spki: rcgen::PublicKeyData::subject_public_key_info(key),
            attributes: Some(Vec::new()),
            signature_algorithm: ECDSA_WITH_SHA256,
        }
    }

    fn info(&self) -> Vec<u8> {
        let attributes = self
            .attributes
            .as_ref()
            .map(|a| tlv(0xa0, a))
            .unwrap_or_default();
        seq(&[
            &tlv(0x02, &[self.version]),
            &self.subject,
            &self.spki,
            &attributes,
        ])
    }

    /// Signed by `signer` (who may not hold the key the request carries).
    pub(super) fn signed_by(&self, signer: &KeyPair) -> Vec<u8> {
        let info = self.info();
        let signature = signer.sign(&info).expect("sign");
        self.with_signature(&info, &signature)
    }

    /// With a signature of `len` bytes that nobody made.
    fn with_garbage_signature(&self, len: usize) -> Vec<u8> {
        self.with_signature(&self.info(), &vec![0x5a; len])
    }

    fn with_signature(&self, info: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut bits = vec![0x00];
        bits.extend_from_slice(signature);
        seq(&[info, self.signature_algorithm, &tlv(0x03, &bits)])
    }
}

// ---------------------------------------------------------------------------------------------
// The checks, and what a row expects of them.

/// How far a CSR got, in `vet_csr`'s order.
#[derive(Debug)]
enum Outcome {
    Accepted(SubjectKey),
    Parse(CsrError),
    Key(KeyNotAllowed),
    Signature(CsrError),
    Identity(CsrError),
}

fn vet(policy: &Policy, der: &[u8]) -> Outcome {
    let csr = match Csr::parse(der) {
        Ok(csr) => csr,
        Err(error) => return Outcome::Parse(error),
    };
    if let Err(error) = check_key(policy, csr.key) {
        return Outcome::Key(error);
    }
    if let Err(error) = csr.verify_signature() {
        return Outcome::Signature(error);
    }
    match csr.check_identity(&identity()) {
        Ok(()) => Outcome::Accepted(csr.key),
        Err(error) => Outcome::Identity(error),
    }
}

/// The outcome a row expects: exact where the error carries our values, the variant where it
/// carries the DER parser's message.
#[derive(Debug)]
enum Expected {
    Accepted(SubjectKey),
    NotDer,
    UnreadableKey,
    /// `KeyNotAllowed` describing the key so.
    KeyNotAllowed(&'static str),
    BadSignature,
    Identity(CsrError),
    /// `SanMismatch` of this kind (the requested value is the decoder's description).
    SanMismatch(&'static str),
}

fn meets(outcome: &Outcome, expected: &Expected, policy: &Policy) -> bool {
    match (outcome, expected) {
        (Outcome::Accepted(key), Expected::Accepted(want)) => key == want,
        (Outcome::Parse(CsrError::NotDer(_)), Expected::NotDer) => true,
        (Outcome::Parse(CsrError::UnreadableKey(_)), Expected::UnreadableKey) => true,
        (Outcome::Key(refusal), Expected::KeyNotAllowed(key)) => {
            refusal.key == *key && refusal.policy == policy.policy.id
        }
        (Outcome::Signature(CsrError::BadSignature), Expected::BadSignature) => true,
        (Outcome::Identity(error), Expected::Identity(want)) => error == want,
        (Outcome::Identity(CsrError::SanMismatch { kind, .. }), Expected::SanMismatch(want)) => {
            kind == want
        }
        _ => false,
    }
}

struct Case {
    name: &'static str,
    policy: &'static Policy,
    der: Vec<u8>,
    expected: Expected,
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = vet(case.policy, &case.der);
        if !meets(&outcome, &case.expected, case.policy) {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.expected, outcome
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Builds a row.
fn case(name: &'static str, policy: &'static Policy, der: Vec<u8>, expected: Expected) -> Case {
    Case {
        name,
        policy,
        der,
        expected,
    }
}

fn mismatch(attribute: &'static str, requested: &str, registered: &str) -> Expected {
    Expected::Identity(CsrError::SubjectMismatch {
        attribute,
        requested: requested.into(),
        registered: registered.into(),
    })
}

// ---------------------------------------------------------------------------------------------

#[test]
fn keys_are_typed_and_checked_against_the_policy() {
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key");
    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
    let signer = p256();
    let rsa = |bits, exponent: &[u8]| {
        let mut raw = Raw::for_key(&signer);
        raw.spki = rsa_spki(bits, exponent);
        raw.signature_algorithm = SHA256_WITH_RSA;
        raw.with_garbage_signature(bits / 8)
    };
    let e65537 = [0x01, 0x00, 0x01];
    let mut k1 = Raw::for_key(&signer);
    k1.spki = secp256k1_spki();
    let mut junk_rsa = Raw::for_key(&signer);
    junk_rsa.spki = seq(&[
        &seq(&[OID_RSA_ENCRYPTION, NULL]),
        &tlv(0x03, &[0x00, 0x30, 0x03, 0x02, 0x01]),
    ]);
    let ec = |curve| Expected::Accepted(SubjectKey::Ec(Some(curve)));
    run(vec![
        case("P-256", pump(), honest(&p256()), ec(Curve::P256)),
        case("P-384", pump(), honest(&p384), ec(Curve::P384)),
        case(
            "Ed25519",
            pump(),
            honest(&ed25519),
            Expected::KeyNotAllowed("an unsupported key algorithm"),
        ),
        case(
            "EC on secp256k1",
            pump(),
            k1.signed_by(&signer),
            Expected::KeyNotAllowed("ECDSA on an unsupported curve"),
        ),
        case(
            "RSA-2048 under an ECDSA-only product",
            pump(),
            rsa(2048, &e65537),
            Expected::KeyNotAllowed("RSA-2048"),
        ),
        // Basic allows RSA-2048: the key passes and the forged proof of possession does not.
        case(
            "RSA-2048 under Basic, signature nobody made",
            basic(),
            rsa(2048, &e65537),
            Expected::BadSignature,
        ),
        case(
            "RSA-4096 under Basic, signature nobody made",
            basic(),
            rsa(4096, &e65537),
            Expected::BadSignature,
        ),
        case(
            "RSA-1024 under Basic",
            basic(),
            rsa(1024, &e65537),
            Expected::KeyNotAllowed("RSA-1024"),
        ),
        case(
            "RSA-2048 with exponent 3",
            basic(),
            rsa(2048, &[0x03]),
            Expected::KeyNotAllowed("RSA-2048 with public exponent 3"),
        ),
        case(
            "RSA-2048 with an even exponent",
            basic(),
            rsa(2048, &[0x01, 0x00, 0x02]),
            Expected::KeyNotAllowed("RSA-2048 with public exponent 65538"),
        ),
        case(
            "RSA-2048 with a 9-octet exponent",
            basic(),
            rsa(2048, &[0x01; 9]),
            Expected::KeyNotAllowed("RSA-2048 with public exponent 0"),
        ),
        case(
            "rsaEncryption with a key that is not an RSAPublicKey",
            basic(),
            junk_rsa.signed_by(&signer),
            Expected::UnreadableKey,
        ),
    ]);
}

#[test]
fn structure_defects_are_refused_as_not_der() {
    let key = p256();
    let good = honest(&key);
    let with_trailing = |extra: &[u8]| [good.as_slice(), extra].concat();
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", good.clone()));
    let base64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&good)
    };
    let mut no_attributes = Raw::for_key(&key);
    no_attributes.attributes = None;
    run(vec![
        case("empty", pump(), Vec::new(), Expected::NotDer),
        case("one byte", pump(), vec![0x30], Expected::NotDer),
        case(
            "truncated by one byte",
            pump(),
            good[..good.len() - 1].to_vec(),
            Expected::NotDer,
        ),
        case(
            "truncated to half",
            pump(),
            good[..good.len() / 2].to_vec(),
            Expected::NotDer,
        ),
        case(
            "one trailing zero byte",
            pump(),
            with_trailing(&[0x00]),
            Expected::NotDer,
        ),
        case(
            "a second request appended",
            pump(),
            with_trailing(&good),
            Expected::NotDer,
        ),
        case(
            "trailing garbage",
            pump(),
            with_trailing(b"garbage"),
            Expected::NotDer,
        ),
        case(
            "PEM instead of DER",
            pump(),
            pem.into_bytes(),
            Expected::NotDer,
        ),
        // EST carries base64; the transport decodes it before the parser sees it.
        case(
            "base64 text instead of DER",
            pump(),
            base64.into_bytes(),
            Expected::NotDer,
        ),
        case(
            "the attributes field left out",
            pump(),
            no_attributes.signed_by(&key),
            Expected::NotDer,
        ),
        case(
            "a certificate, not a request",
            pump(),
            {
                let params = CertificateParams::new(vec!["a.example".into()]).expect("params");
                params.self_signed(&key).expect("cert").der().to_vec()
            },
            Expected::NotDer,
        ),
    ]);
}

/// Only PKCS#10 v1 exists (RFC 2986: `version INTEGER { v1(0) }`).
#[test]
#[ignore = "Csr::parse accepts a CertificationRequest whose version is not v1(0) (authority/csr.rs Csr::parse; x509-parser reads any INTEGER)"]
fn request_of_another_version_is_refused() {
    let key = p256();
    let cases = [1u8, 2, 0x7f]
        .into_iter()
        .map(|version| {
            let mut raw = Raw::for_key(&key);
            raw.version = version;
            case(
                "version != 0",
                pump(),
                raw.signed_by(&key),
                Expected::NotDer,
            )
        })
        .collect();
    run(cases);
}

#[test]
fn proof_of_possession_is_required() {
    let key = p256();
    let other = p256();
    let mut flipped = honest(&key);
    let last = flipped.len() - 5;
    flipped[last] ^= 0x55;
    let mut rsa_label = Raw::for_key(&key);
    rsa_label.signature_algorithm = SHA256_WITH_RSA;
    run(vec![
        case(
            "a signature byte flipped",
            pump(),
            flipped,
            Expected::BadSignature,
        ),
        case(
            "signed by another key",
            pump(),
            Raw::for_key(&key).signed_by(&other),
            Expected::BadSignature,
        ),
        case(
            "an ECDSA signature labelled sha256WithRSAEncryption",
            pump(),
            rsa_label.signed_by(&key),
            Expected::BadSignature,
        ),
        case(
            "an empty signature",
            pump(),
            Raw::for_key(&key).with_garbage_signature(0),
            Expected::BadSignature,
        ),
        case(
            "hand-assembled and properly signed",
            pump(),
            Raw::for_key(&key).signed_by(&key),
            Expected::Accepted(SubjectKey::Ec(Some(Curve::P256))),
        ),
    ]);
}

#[test]
fn subject_must_match_the_record_and_name_only_allowed_attributes() {
    let id = identity();
    let key = p256();
    let subject = |attributes: Vec<(DnType, DnValue)>| {
        csr_with(
            &key,
            |params| {
                let mut dn = DistinguishedName::new();
                for (kind, value) in attributes {
                    dn.push(kind, value);
                }
                params.distinguished_name = dn;
            },
            Vec::new(),
        )
    };
    let utf8 = |s: &str| DnValue::Utf8String(s.into());
    let serial = |s: &str| {
        (
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::PrintableString(s.try_into().expect("printable")),
        )
    };
    let huge_cn = "X".repeat(60_000);
    let ok = Expected::Accepted(SubjectKey::Ec(Some(Curve::P256)));
    run(vec![
        case(
            "empty subject (filled from the record)",
            pump(),
            subject(vec![]),
            ok,
        ),
        case(
            "the record's C, O, CN and serialNumber",
            pump(),
            subject(vec![
                (
                    DnType::CountryName,
                    DnValue::PrintableString("US".try_into().expect("C")),
                ),
                (DnType::OrganizationName, utf8(&id.organization)),
                (DnType::CommonName, utf8(&id.common_name)),
                serial(SERIAL),
            ]),
            Expected::Accepted(SubjectKey::Ec(Some(Curve::P256))),
        ),
        case(
            "another device's serialNumber",
            pump(),
            subject(vec![serial("IP20000002")]),
            mismatch("serialNumber", "IP20000002", SERIAL),
        ),
        case(
            "another CN",
            pump(),
            subject(vec![(DnType::CommonName, utf8("IP200-IP29999999"))]),
            mismatch("CN", "IP200-IP29999999", &id.common_name),
        ),
        case(
            "another organization",
            pump(),
            subject(vec![(DnType::OrganizationName, utf8("Evil Corp"))]),
            mismatch("O", "Evil Corp", &id.organization),
        ),
        case(
            "a 60,000-character CN",
            pump(),
            subject(vec![(DnType::CommonName, utf8(&huge_cn))]),
            mismatch("CN", &huge_cn, &id.common_name),
        ),
        case(
            "the record's CN as a BMPString",
            pump(),
            subject(vec![(
                DnType::CommonName,
                DnValue::BmpString(id.common_name.as_str().try_into().expect("BMP")),
            )]),
            mismatch("CN", "<not a string>", &id.common_name),
        ),
        case(
            "an organizationalUnit",
            pump(),
            subject(vec![(DnType::OrganizationalUnitName, utf8("Pumps"))]),
            Expected::Identity(CsrError::SubjectAttributeForbidden {
                oid: "2.5.4.11".into(),
            }),
        ),
        case(
            "a domainComponent",
            pump(),
            subject(vec![(
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                utf8("example"),
            )]),
            Expected::Identity(CsrError::SubjectAttributeForbidden {
                oid: "0.9.2342.19200300.100.1.25".into(),
            }),
        ),
    ]);
}

#[test]
fn requested_names_must_match_the_record_and_be_allowed() {
    let id = identity();
    let key = p256();
    let hmn = id
        .hardware_module_name
        .clone()
        .expect("the pump has a HardwareModuleName");
    let uri = id.uri.clone().expect("the pump has a URI");
    let with_sans =
        |sans: Vec<SanType>| csr_with(&key, |params| params.subject_alt_names = sans, Vec::new());
    let with_san_der = |extension: CustomExtension| {
        csr_with(
            &key,
            |params| params.custom_extensions = vec![extension],
            Vec::new(),
        )
    };
    let ia5 = |s: &str| s.try_into().expect("IA5");
    let other_hmn = HardwareModuleName {
        hw_type: hmn.hw_type.clone(),
        hw_serial: b"IP29999999".to_vec(),
    };
    // An otherName with the HardwareModuleName type-id whose value is not one.
    let undecodable_hmn = {
        let type_id = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x04];
        let value = tlv(0xa0, &tlv(0x04, b"not a HardwareModuleName"));
        let other_name = tlv(0xa0, &[&type_id[..], &value].concat());
        CustomExtension::from_oid_content(&[2, 5, 29, 17], seq(&[&other_name]))
    };
    let ok = Expected::Accepted(SubjectKey::Ec(Some(Curve::P256)));
    run(vec![
        case(
            "the record's HardwareModuleName and URI",
            pump(),
            with_san_der(san_request(Some(&hmn), Some(&uri))),
            ok,
        ),
        case(
            "the record's URI alone",
            pump(),
            with_sans(vec![SanType::URI(ia5(&uri))]),
            Expected::Accepted(SubjectKey::Ec(Some(Curve::P256))),
        ),
        case(
            "another URI",
            pump(),
            with_sans(vec![SanType::URI(ia5(
                "https://evil.example/21/IP20000001",
            ))]),
            Expected::Identity(CsrError::SanMismatch {
                kind: "URI",
                requested: "https://evil.example/21/IP20000001".into(),
                registered: uri.clone(),
            }),
        ),
        case(
            "another device's HardwareModuleName",
            pump(),
            with_san_der(san_request(Some(&other_hmn), None)),
            Expected::SanMismatch("HardwareModuleName"),
        ),
        case(
            "an undecodable HardwareModuleName",
            pump(),
            with_san_der(undecodable_hmn),
            Expected::SanMismatch("HardwareModuleName"),
        ),
        case(
            "a dNSName",
            pump(),
            with_sans(vec![SanType::DnsName(ia5("pump.example"))]),
            Expected::Identity(CsrError::SanForbidden {
                kind: "dNSName",
                value: "pump.example".into(),
            }),
        ),
        case(
            "an rfc822Name",
            pump(),
            with_sans(vec![SanType::Rfc822Name(ia5("pump@example.com"))]),
            Expected::Identity(CsrError::SanForbidden {
                kind: "rfc822Name",
                value: "pump@example.com".into(),
            }),
        ),
        case(
            "an iPAddress",
            pump(),
            with_sans(vec![SanType::IpAddress([10, 0, 0, 1].into())]),
            Expected::Identity(CsrError::SanForbidden {
                kind: "iPAddress",
                value: "<address>".into(),
            }),
        ),
    ]);
}

/// Every name a request asks for is seen by the identity check, or the request is refused.
/// Today three shapes hide a requested name from `check_identity`: x509-parser drops an
/// extension it cannot parse, and `requested_extensions()` reads only the first value of the
/// first extensionRequest attribute. No certificate carries the hidden name (the SAN is built
/// from the record), but a parser of hostile input should refuse what it cannot read.
#[test]
#[ignore = "Csr::parse ignores an undecodable subjectAltName request and any extensionRequest after the first (authority/csr.rs Csr::parse, csr.requested_extensions())"]
fn requested_names_hidden_from_the_identity_check_are_refused() {
    let key = p256();
    let dns = seq(&[&tlv(0x82, b"evil.example")]);
    let san_extension = seq(&[&[0x06, 0x03, 0x55, 0x1d, 0x11], &tlv(0x04, &dns)]);
    let extension_request = |values: &[u8]| rcgen::Attribute {
        oid: &[1, 2, 840, 113549, 1, 9, 14],
        values: tlv(0x31, values),
    };
    let empty = seq(&[]);
    let with_dns = seq(&[&san_extension]);
    let forbidden = || {
        Expected::Identity(CsrError::SanForbidden {
            kind: "dNSName",
            value: "evil.example".into(),
        })
    };
    run(vec![
        case(
            "a subjectAltName request whose GeneralName overruns it",
            pump(),
            csr_with(
                &key,
                |params| {
                    params.custom_extensions = vec![CustomExtension::from_oid_content(
                        &[2, 5, 29, 17],
                        vec![0x30, 0x03, 0x82, 0x05, 0x41],
                    )]
                },
                Vec::new(),
            ),
            Expected::NotDer,
        ),
        case(
            "a second extensionRequest attribute with a dNSName",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![extension_request(&empty), extension_request(&with_dns)],
            ),
            forbidden(),
        ),
        case(
            "an extensionRequest whose second value has a dNSName",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![extension_request(
                    &[empty.clone(), with_dns.clone()].concat(),
                )],
            ),
            forbidden(),
        ),
    ]);
}

/// Attributes and extension requests the CA does not act on are ignored: it builds every
/// certificate from the policy and the record and keeps only the CSR's public key.
#[test]
fn other_attributes_and_extension_requests_are_ignored() {
    let key = p256();
    let attribute = |oid: &'static [u64], value: Vec<u8>| rcgen::Attribute {
        oid,
        values: tlv(0x31, &value),
    };
    let challenge_password = attribute(&[1, 2, 840, 113549, 1, 9, 7], tlv(0x0c, b"s3cret"));
    let unstructured_name = attribute(&[1, 2, 840, 113549, 1, 9, 2], tlv(0x0c, b"pump"));
    let private = attribute(&[1, 3, 6, 1, 4, 1, 32473, 99], tlv(0x04, b"\x00\x01"));
    let ok = || Expected::Accepted(SubjectKey::Ec(Some(Curve::P256)));
    run(vec![
        case(
            "challengePassword",
            pump(),
            csr_with(&key, |_| {}, vec![challenge_password]),
            ok(),
        ),
        case(
            "unstructuredName and a private attribute",
            pump(),
            csr_with(&key, |_| {}, vec![unstructured_name, private]),
            ok(),
        ),
        case(
            "basicConstraints cA=TRUE requested",
            pump(),
            csr_with(
                &key,
                |params| params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
                Vec::new(),
            ),
            ok(),
        ),
        case(
            "keyUsage keyCertSign and serverAuth requested",
            pump(),
            csr_with(
                &key,
                |params| {
                    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
                    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
                },
                Vec::new(),
            ),
            ok(),
        ),
        case(
            "a private extension request",
            pump(),
            csr_with(
                &key,
                |params| {
                    params.custom_extensions = vec![CustomExtension::from_oid_content(
                        &[1, 3, 6, 1, 4, 1, 32473, 98],
                        tlv(0x04, b"x"),
                    )]
                },
                Vec::new(),
            ),
            ok(),
        ),
    ]);
}

/// A parsed CSR keeps what issuance needs: the key's SPKI and its hash, and the serial a
/// station request names.
#[test]
fn parsed_request_keeps_the_key_and_the_named_serial() {
    let key = p256();
    let csr = Csr::parse(&honest(&key)).expect("parse");
    assert_eq!(
        csr.spki_der,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
    assert_eq!(
        csr.spki_sha256(),
        ring::digest::digest(&ring::digest::SHA256, &csr.spki_der).as_ref()
    );
    assert_eq!(csr.subject_serial_number(), Some(SERIAL));
    let anonymous = csr_with(
        &key,
        |p| p.distinguished_name = DistinguishedName::new(),
        vec![],
    );
    assert_eq!(
        Csr::parse(&anonymous)
            .expect("parse")
            .subject_serial_number(),
        None
    );
}

/// Malformed attributes are refused as structure defects, like the rest of the request.
#[test]
fn malformed_attributes_are_refused_as_not_der() {
    let key = p256();
    let attribute = |oid: &'static [u64], values: Vec<u8>| rcgen::Attribute { oid, values };
    run(vec![
        case(
            "an extensionRequest that is not a SEQUENCE of extensions",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![attribute(
                    &[1, 2, 840, 113549, 1, 9, 14],
                    tlv(0x31, &tlv(0x04, b"x")),
                )],
            ),
            Expected::NotDer,
        ),
        case(
            "a challengePassword with no value",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![attribute(&[1, 2, 840, 113549, 1, 9, 7], tlv(0x31, &[]))],
            ),
            Expected::NotDer,
        ),
    ]);
}
