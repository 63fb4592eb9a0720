//! The certify checks: against a real swtpm certify (P-256 AK, P-256 key, qualifying data
//! `00ff55aa`), and against certifies made here with a software "AK" so that every field can be
//! set to what an attacker would send.

use iomt_core::attestation::{Attest, CertifyStatement, Evidence, Public, Signature};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../iomt-core/src/attestation/fixtures/"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

/// The DER SubjectPublicKeyInfo of a P-256 point.
fn p256_spki(point: &[u8]) -> Vec<u8> {
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
    der.extend_from_slice(point);
    der
}

fn real() -> (Evidence, Public, Vec<u8>) {
    let key = Public::parse_tpm2b(&fixture("swtpm-key.pub")).expect("key");
    let spki = p256_spki(&key.key.sec1_uncompressed().expect("point"));
    let signature_raw = fixture("swtpm-sig.bin");
    let evidence = Evidence {
        certify: CertifyStatement {
            attest: Attest::parse(&fixture("swtpm-attest.bin")).expect("attest"),
            signature: Signature::parse(&signature_raw).expect("sig"),
            signature_raw,
            certified: key,
        },
        certificates: Vec::new(),
    };
    let ak = Public::parse_tpm2b(&fixture("swtpm-ak.pub")).expect("AK");
    (evidence, ak, spki)
}

const REAL_SECRET: [u8; 4] = [0x00, 0xff, 0x55, 0xaa];

#[test]
fn a_real_tpm_certify_verifies() {
    let (evidence, ak, spki) = real();
    let certified = verify_certify(&evidence, &ak, &REAL_SECRET, &spki).expect("verified");
    assert_eq!(certified.name, evidence.certify.attest.certified_name);
}

#[test]
fn another_challenge_is_refused() {
    let (evidence, ak, spki) = real();
    assert_eq!(
        verify_certify(&evidence, &ak, &[1, 2, 3, 4], &spki),
        Err(AttestationProblem::ChallengeUnknown)
    );
}

#[test]
fn a_software_key_with_evidence_copied_from_a_tpm_key_is_refused() {
    let (evidence, ak, _) = real();
    let (_, spki) = device_key(KEY_ATTRIBUTES);
    assert_eq!(
        verify_certify(&evidence, &ak, &REAL_SECRET, &spki),
        Err(AttestationProblem::KeyMismatch)
    );
}

#[test]
fn a_forged_signature_is_refused() {
    let (mut evidence, ak, spki) = real();
    if let Signature::Ecdsa { s, .. } = &mut evidence.certify.signature {
        s[5] ^= 1;
    }
    assert_eq!(
        verify_certify(&evidence, &ak, &REAL_SECRET, &spki),
        Err(AttestationProblem::SignatureInvalid)
    );
}

#[test]
fn an_attestation_key_that_is_not_restricted_is_refused() {
    let (evidence, mut ak, spki) = real();
    ak.attributes.0 &= !ObjectAttributesBits::RESTRICTED;
    assert_eq!(
        verify_certify(&evidence, &ak, &REAL_SECRET, &spki),
        Err(AttestationProblem::AkNotRestricted)
    );
}

use iomt_core::attestation::ObjectAttributes as ObjectAttributesBits;

/// A software "AK" that signs what the test builds, and its TPMT_PUBLIC.
struct SoftwareAk {
    key: EcdsaKeyPair,
    public: Public,
}

fn tpm2b(data: &[u8]) -> Vec<u8> {
    [&(data.len() as u16).to_be_bytes()[..], data].concat()
}

/// A P-256 ECDSA TPMT_PUBLIC with `attributes` and the point `point` (65 octets, SEC 1).
fn ecc_public(attributes: u32, point: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0x0023u16.to_be_bytes()); // TPM_ALG_ECC
    out.extend(0x000bu16.to_be_bytes()); // nameAlg SHA-256
    out.extend(attributes.to_be_bytes());
    out.extend(tpm2b(&[]));
    out.extend(0x0010u16.to_be_bytes()); // symmetric NULL
    out.extend(0x0018u16.to_be_bytes()); // ECDSA
    out.extend(0x000bu16.to_be_bytes()); //   SHA-256
    out.extend(0x0003u16.to_be_bytes()); // NIST P-256
    out.extend(0x0010u16.to_be_bytes()); // kdf NULL
    out.extend(tpm2b(&point[1..33]));
    out.extend(tpm2b(&point[33..]));
    out
}

fn software_ak(attributes: u32) -> SoftwareAk {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("pkcs8");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let public = Public::parse(&ecc_public(attributes, key.public_key().as_ref())).expect("AK");
    SoftwareAk { key, public }
}

const AK_ATTRIBUTES: u32 = ObjectAttributesBits::FIXED_TPM
    | ObjectAttributesBits::FIXED_PARENT
    | ObjectAttributesBits::SENSITIVE_DATA_ORIGIN
    | ObjectAttributesBits::USER_WITH_AUTH
    | ObjectAttributesBits::RESTRICTED
    | ObjectAttributesBits::SIGN;
const KEY_ATTRIBUTES: u32 = ObjectAttributesBits::FIXED_TPM
    | ObjectAttributesBits::FIXED_PARENT
    | ObjectAttributesBits::SENSITIVE_DATA_ORIGIN
    | ObjectAttributesBits::USER_WITH_AUTH
    | ObjectAttributesBits::SIGN;

/// A certify of `certified` (its name as given) with `secret`, signed by `ak`.
fn certify(ak: &SoftwareAk, certified: &Public, name: &[u8], secret: &[u8]) -> Evidence {
    let mut attest = Vec::new();
    attest.extend(0xff54_4347u32.to_be_bytes());
    attest.extend(0x8017u16.to_be_bytes());
    attest.extend(tpm2b(&ak.public.name()));
    attest.extend(tpm2b(secret));
    attest.extend([0u8; 17]); // clockInfo
    attest.extend([0u8; 8]); // firmwareVersion
    attest.extend(tpm2b(name));
    attest.extend(tpm2b(name));
    let signature = ak.key.sign(&SystemRandom::new(), &attest).expect("sign");
    let (r, s) = signature.as_ref().split_at(32);
    let signature_raw = [
        &0x0018u16.to_be_bytes()[..],
        &0x000bu16.to_be_bytes(),
        &tpm2b(r),
        &tpm2b(s),
    ]
    .concat();
    Evidence {
        certify: CertifyStatement {
            attest: Attest::parse(&attest).expect("attest"),
            signature: Signature::parse(&signature_raw).expect("signature"),
            signature_raw,
            certified: certified.clone(),
        },
        certificates: Vec::new(),
    }
}

fn device_key(attributes: u32) -> (Public, Vec<u8>) {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("pkcs8");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let point = key.public_key().as_ref();
    (
        Public::parse(&ecc_public(attributes, point)).expect("public"),
        p256_spki(point),
    )
}

#[test]
fn a_built_certify_verifies_and_each_attribute_is_required() {
    let ak = software_ak(AK_ATTRIBUTES);
    let (key, spki) = device_key(KEY_ATTRIBUTES);
    let evidence = certify(&ak, &key, &key.name(), b"challenge");
    verify_certify(&evidence, &ak.public, b"challenge", &spki).expect("verified");

    for (bit, missing) in [
        (ObjectAttributesBits::FIXED_TPM, "fixedTPM"),
        (ObjectAttributesBits::FIXED_PARENT, "fixedParent"),
        (
            ObjectAttributesBits::SENSITIVE_DATA_ORIGIN,
            "sensitiveDataOrigin",
        ),
        (ObjectAttributesBits::SIGN, "sign"),
    ] {
        let (key, spki) = device_key(KEY_ATTRIBUTES & !bit);
        let evidence = certify(&ak, &key, &key.name(), b"challenge");
        assert_eq!(
            verify_certify(&evidence, &ak.public, b"challenge", &spki),
            Err(AttestationProblem::KeyNotFixed { missing }),
            "{missing}"
        );
    }
}

#[test]
fn evidence_for_another_key_is_refused() {
    let ak = software_ak(AK_ATTRIBUTES);
    let (key, _) = device_key(KEY_ATTRIBUTES);
    let (other, other_spki) = device_key(KEY_ATTRIBUTES);
    // The certify names `key`, the evidence claims `other`'s public area.
    let evidence = certify(&ak, &other, &key.name(), b"c");
    assert_eq!(
        verify_certify(&evidence, &ak.public, b"c", &other_spki),
        Err(AttestationProblem::NameMismatch)
    );
    // The certify is of `other`, the CSR is for `key`.
    let (_, key_spki) = (
        key.clone(),
        p256_spki(&key.key.sec1_uncompressed().expect("point")),
    );
    let evidence = certify(&ak, &other, &other.name(), b"c");
    assert_eq!(
        verify_certify(&evidence, &ak.public, b"c", &key_spki),
        Err(AttestationProblem::KeyMismatch)
    );
}

#[test]
fn a_certify_by_another_attestation_key_is_refused() {
    let ak = software_ak(AK_ATTRIBUTES);
    let sealed_to = software_ak(AK_ATTRIBUTES);
    let (key, spki) = device_key(KEY_ATTRIBUTES);
    let evidence = certify(&ak, &key, &key.name(), b"c");
    assert_eq!(
        verify_certify(&evidence, &sealed_to.public, b"c", &spki),
        Err(AttestationProblem::SignatureInvalid)
    );
}
