//! The evidence container: round trip with the real TPM structures, and the refusals.

use super::*;
use crate::attestation::AttestationError;

const ATTEST: &[u8] = include_bytes!("../fixtures/swtpm-attest.bin");
const SIG: &[u8] = include_bytes!("../fixtures/swtpm-sig.bin");
const KEY: &[u8] = include_bytes!("../fixtures/swtpm-key.pub");
const EK_CERT: &[u8] = include_bytes!("../fixtures/swtpm-ek-rsa2048.der");

#[test]
fn evidence_round_trips() {
    let der = encode_evidence(ATTEST, SIG, &KEY[2..], &[EK_CERT]).expect("encode");
    let evidence = parse_evidence(&der).expect("parse");
    assert_eq!(evidence.certify.attest.raw, ATTEST);
    assert_eq!(evidence.certify.certified.raw, &KEY[2..]);
    assert_eq!(evidence.certificates, vec![EK_CERT.to_vec()]);
}

#[test]
fn evidence_without_a_certify_statement_or_with_two_is_refused() {
    let one = encode_evidence(ATTEST, SIG, &KEY[2..], &[]).expect("encode");
    // Re-wrap the single statement twice: SEQUENCE { SEQUENCE { stmt, stmt } }.
    let bundle = EvidenceBundleDer::from_der(&one).expect("bundle");
    let stmt = &bundle.evidences[0];
    let twice = EvidenceBundleDer {
        evidences: vec![
            EvidenceStatementDer {
                kind: stmt.kind,
                stmt: stmt.stmt.clone(),
                hint: None,
            },
            EvidenceStatementDer {
                kind: stmt.kind,
                stmt: stmt.stmt.clone(),
                hint: None,
            },
        ],
        certs: None,
    };
    assert_eq!(
        parse_evidence(&twice.to_der().expect("der")),
        Err(AttestationError::CertifyCount { count: 2 })
    );
    let other = EvidenceBundleDer {
        evidences: vec![EvidenceStatementDer {
            kind: ObjectIdentifier::new_unwrap("2.23.133.20.2"),
            stmt: stmt.stmt.clone(),
            hint: None,
        }],
        certs: None,
    };
    assert_eq!(
        parse_evidence(&other.to_der().expect("der")),
        Err(AttestationError::CertifyCount { count: 0 })
    );
}

#[test]
fn oversized_evidence_and_too_many_certificates_are_refused() {
    assert!(matches!(
        parse_evidence(&vec![0x30; MAX_EVIDENCE + 1]),
        Err(AttestationError::TooLarge {
            structure: "EvidenceBundle",
            ..
        })
    ));
    let five = [EK_CERT; 5];
    let der = encode_evidence(ATTEST, SIG, &KEY[2..], &five).expect("encode");
    assert!(matches!(
        parse_evidence(&der),
        Err(AttestationError::TooLarge {
            structure: "EvidenceBundle.certs",
            ..
        })
    ));
}

#[test]
fn a_certs_entry_that_is_not_a_certificate_is_refused() {
    let not_cert = [0x04, 0x01, 0x00];
    let der = encode_evidence(ATTEST, SIG, &KEY[2..], &[&not_cert]).expect("encode");
    assert!(matches!(
        parse_evidence(&der),
        Err(AttestationError::Der { .. })
    ));
}
