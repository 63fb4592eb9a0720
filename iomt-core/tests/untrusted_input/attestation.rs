//! TPM attestation evidence (`parse_evidence` and the TPM structure parsers): any bytes, any
//! edit of real swtpm output at either layer (the DER container or the TPM structures inside
//! it), and DER-shaped noise are refused with a typed error or parse, never panic; what parses
//! re-encodes to what was parsed.

use iomt_core::attestation::{
    Attest, AttestationError, MAX_EVIDENCE, Public, Signature, encode_evidence, parse_evidence,
};
use proptest::prelude::*;

use super::{apply, config, der_like, mutations, tlv};

const ATTEST: &[u8] = include_bytes!("../../src/attestation/fixtures/swtpm-attest.bin");
const SIG: &[u8] = include_bytes!("../../src/attestation/fixtures/swtpm-sig.bin");
const KEY: &[u8] = include_bytes!("../../src/attestation/fixtures/swtpm-key.pub");
const EK_CERT: &[u8] = include_bytes!("../../src/attestation/fixtures/swtpm-ek-rsa2048.der");

fn valid() -> Vec<u8> {
    encode_evidence(ATTEST, SIG, &KEY[2..], &[EK_CERT]).expect("encode")
}

/// A refusal is typed and its message says something.
fn assert_typed(error: &AttestationError) {
    assert!(!error.to_string().is_empty());
}

/// Whatever parses re-encodes to an equal parse.
fn assert_round_trip(bytes: &[u8]) {
    match parse_evidence(bytes) {
        Ok(evidence) => {
            let certs: Vec<&[u8]> = evidence.certificates.iter().map(Vec::as_slice).collect();
            let again = encode_evidence(
                &evidence.certify.attest.raw,
                &evidence.certify.signature_raw,
                &evidence.certify.certified.raw,
                &certs,
            )
            .expect("re-encode");
            assert_eq!(parse_evidence(&again).expect("re-parse"), evidence);
        }
        Err(error) => assert_typed(&error),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_bytes_are_refused_or_parse(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(error) = parse_evidence(&bytes) { assert_typed(&error) }
        let _ = Attest::parse(&bytes);
        let _ = Public::parse(&bytes);
        let _ = Signature::parse(&bytes);
    }

    #[test]
    fn der_shaped_noise_is_refused(bytes in der_like()) {
        if let Err(error) = parse_evidence(&bytes) { assert_typed(&error) }
    }

    #[test]
    fn edited_evidence_is_refused_or_round_trips(edits in mutations()) {
        assert_round_trip(&apply(&valid(), &edits));
    }

    #[test]
    fn edited_tpm_structures_inside_valid_der_are_refused_or_parse(
        which in 0usize..3,
        edits in mutations(),
    ) {
        let (attest, sig, key) = match which {
            0 => (apply(ATTEST, &edits), SIG.to_vec(), KEY[2..].to_vec()),
            1 => (ATTEST.to_vec(), apply(SIG, &edits), KEY[2..].to_vec()),
            _ => (ATTEST.to_vec(), SIG.to_vec(), apply(&KEY[2..], &edits)),
        };
        let der = encode_evidence(&attest, &sig, &key, &[EK_CERT]).expect("encode");
        match parse_evidence(&der) {
            Ok(evidence) => {
                prop_assert_eq!(evidence.certify.attest.raw, attest);
                prop_assert_eq!(evidence.certify.certified.raw, key);
            }
            Err(error) => assert_typed(&error),
        }
    }

    #[test]
    fn oversized_evidence_is_refused_before_decoding(extra in 1usize..4096) {
        let body = vec![0u8; MAX_EVIDENCE + extra];
        let refused = matches!(
            parse_evidence(&tlv(0x30, &body)),
            Err(AttestationError::TooLarge { .. })
        );
        prop_assert!(refused);
    }
}
