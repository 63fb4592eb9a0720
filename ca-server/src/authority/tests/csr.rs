//! Table tests for `Csr::parse` and the checks every CSR passes before issuance, in the order
//! `vet_csr` runs them: parse, key against the policy, proof of possession, subject and SAN
//! against the registration record. Each row is a named request, honest or hostile, and the
//! exact outcome it earns. Keys, structure and proof of possession here; names and attributes
//! in `csr_names.rs`; property tests in `csr_props.rs`.

#[path = "csr_fixtures.rs"]
mod fixtures;
#[path = "csr_names.rs"]
mod names;
#[path = "csr_props.rs"]
mod props;

use iomt_core::policy::{Curve, Policy};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};

use super::{Csr, CsrError, KeyNotAllowed, SubjectKey, check_key};
use crate::tests_support::tlv;
use fixtures::*;

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
