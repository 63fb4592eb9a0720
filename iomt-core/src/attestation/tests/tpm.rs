//! The TPM structure parsers against what a real TPM (swtpm 0.7, tpm2-tools 5.4) produced, and
//! table tests of the refusals. The fixtures (`fixtures/swtpm-*`) are one session: an RSA EK
//! (TCG template L-1), a P-256 AK created under it, a P-256 signing key created under an owner
//! storage key, and `tpm2_certify` of that key by the AK (qualifying data `00ff55aa`, the
//! tool's default).

use super::*;

const AK: &[u8] = include_bytes!("../fixtures/swtpm-ak.pub");
const KEY: &[u8] = include_bytes!("../fixtures/swtpm-key.pub");
const EK: &[u8] = include_bytes!("../fixtures/swtpm-ek-rsa.pub");
const ATTEST: &[u8] = include_bytes!("../fixtures/swtpm-attest.bin");
const SIG: &[u8] = include_bytes!("../fixtures/swtpm-sig.bin");

#[test]
fn real_tpm_structures_parse() {
    let ak = Public::parse_tpm2b(AK).expect("AK");
    assert_eq!(ak.name_alg, HashAlg::Sha256);
    assert!(ak.attributes.has(
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN
    ));
    assert_eq!(ak.scheme, Some((0x0018, HashAlg::Sha256)));
    let key = Public::parse_tpm2b(KEY).expect("key");
    assert!(!key.attributes.has(ObjectAttributes::RESTRICTED));
    assert!(matches!(
        key.key,
        PublicKey::Ecc {
            curve: EccCurve::P256,
            ..
        }
    ));
    assert_eq!(key.key.sec1_uncompressed().map(|p| p.len()), Some(65));

    let ek = Public::parse_tpm2b(EK).expect("EK");
    assert_eq!(ek.symmetric, Some(SymmetricDef { key_bits: 128 }));
    assert!(
        ek.attributes
            .has(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT)
    );
    let PublicKey::Rsa {
        bits,
        exponent,
        modulus,
    } = &ek.key
    else {
        panic!("an RSA EK");
    };
    assert_eq!((*bits, *exponent, modulus.len()), (2048, 65537, 256));

    let attest = Attest::parse(ATTEST).expect("attest");
    assert_eq!(attest.extra_data, [0x00, 0xff, 0x55, 0xaa]);
    // The attested name is the certified key's name, and the signer is the AK.
    assert_eq!(attest.certified_name, key.name());
    assert_eq!(&attest.qualified_signer[..2], &[0x00, 0x0b]);

    let sig = Signature::parse(SIG).expect("signature");
    let fixed = sig.ecdsa_fixed(32).expect("P-256 r||s");
    let ak_point = ak.key.sec1_uncompressed().expect("point");
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, ak_point)
        .verify(&attest.raw, &fixed)
        .expect("the AK's signature over TPMS_ATTEST verifies");
}

#[test]
fn ak_name_matches_the_name_tpm2_tools_printed() {
    let ak = Public::parse_tpm2b(AK).expect("AK");
    assert_eq!(
        hex::encode(ak.name()),
        "000bbe4ee608ab6c170cf98826c68cc57546b405a40fb838dd5c4058728af16b70fe"
    );
}

#[test]
fn truncations_and_trailing_bytes_are_refused_with_the_structure_named() {
    for (name, bytes, parse) in [
        (
            "TPMT_PUBLIC",
            &AK[2..],
            parse_public as fn(&[u8]) -> Result<(), AttestationError>,
        ),
        ("TPMS_ATTEST", ATTEST, parse_attest),
        ("TPMT_SIGNATURE", SIG, parse_signature),
    ] {
        for cut in 0..bytes.len() {
            match parse(&bytes[..cut]) {
                Err(AttestationError::Truncated { structure }) => assert_eq!(structure, name),
                Err(AttestationError::TrailingBytes { .. }) => {}
                other => panic!("{name} cut at {cut}: {other:?}"),
            }
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            parse(&longer),
            Err(AttestationError::TrailingBytes {
                structure: name,
                count: 1
            })
        );
    }
}

fn parse_public(b: &[u8]) -> Result<(), AttestationError> {
    Public::parse(b).map(drop)
}
fn parse_attest(b: &[u8]) -> Result<(), AttestationError> {
    Attest::parse(b).map(drop)
}
fn parse_signature(b: &[u8]) -> Result<(), AttestationError> {
    Signature::parse(b).map(drop)
}

#[test]
fn an_attestation_not_made_by_the_tpm_or_of_another_kind_is_refused() {
    let mut forged = ATTEST.to_vec();
    forged[0] = 0;
    assert!(matches!(
        Attest::parse(&forged),
        Err(AttestationError::NotTpmGenerated { .. })
    ));
    let mut quote = ATTEST.to_vec();
    quote[4..6].copy_from_slice(&0x8018u16.to_be_bytes());
    assert_eq!(
        Attest::parse(&quote),
        Err(AttestationError::NotCertify { found: 0x8018 })
    );
}

#[test]
fn oversized_and_unsupported_inputs_are_refused() {
    let big = vec![0u8; MAX_TPM_STRUCTURE + 1];
    assert!(matches!(
        Public::parse(&big),
        Err(AttestationError::TooLarge { .. })
    ));
    let mut sha1 = AK[2..].to_vec();
    sha1[2..4].copy_from_slice(&0x0004u16.to_be_bytes());
    assert_eq!(
        Public::parse(&sha1),
        Err(AttestationError::UnsupportedAlgorithm {
            structure: "TPMT_PUBLIC",
            alg: 4
        })
    );
    let mut hmac_sig = SIG.to_vec();
    hmac_sig[0..2].copy_from_slice(&0x0005u16.to_be_bytes());
    assert!(matches!(
        Signature::parse(&hmac_sig),
        Err(AttestationError::UnsupportedAlgorithm { alg: 5, .. })
    ));
}
