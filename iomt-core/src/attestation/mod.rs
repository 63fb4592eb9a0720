//! TPM 2.0 key attestation evidence, parsed from hostile bytes: the TPM structures a
//! `TPM2_Certify` produces (`TPMS_ATTEST`, `TPMT_SIGNATURE`) and the `TPMT_PUBLIC` of the keys
//! involved (TPM 2.0 Library Part 2), and the PKCS#10 attribute that carries them in a CSR
//! (draft-ietf-lamps-csr-attestation `EvidenceBundle` with a TCG `TcgAttestCertify` statement).
//! Pure parsing and the TPM name computation; the checks against a challenge, trust anchors and
//! the CSR key are the CA's (`ca-server/src/authority/attestation/`).

mod evidence;
mod tpm;

pub use evidence::{
    CertifyStatement, Evidence, MAX_EVIDENCE, MAX_EVIDENCE_CERTIFICATES, encode_evidence,
    parse_evidence,
};
pub use tpm::{
    Attest, EccCurve, HashAlg, MAX_TPM_STRUCTURE, ObjectAttributes, Public, PublicKey, Signature,
    SymmetricDef, TPM_GENERATED_VALUE, TPM_ST_ATTEST_CERTIFY,
};

/// Why attestation bytes were refused. Every variant names the structure at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The structure ended before a field it must contain.
    #[error("{structure} is truncated")]
    Truncated { structure: &'static str },
    /// Bytes follow the end of a structure.
    #[error("{structure} has {count} trailing byte(s)")]
    TrailingBytes {
        structure: &'static str,
        count: usize,
    },
    /// A size field or the whole input exceeds what this CA accepts.
    #[error("{structure} is {len} bytes; at most {max} are accepted")]
    TooLarge {
        structure: &'static str,
        len: usize,
        max: usize,
    },
    /// `TPMS_ATTEST.magic` is not `TPM_GENERATED_VALUE`: the TPM did not produce it.
    #[error("TPMS_ATTEST magic is {found:#010x}, not TPM_GENERATED_VALUE")]
    NotTpmGenerated { found: u32 },
    /// The attestation is of another kind than a `TPM2_Certify`.
    #[error("TPMS_ATTEST type is {found:#06x}, not TPM_ST_ATTEST_CERTIFY")]
    NotCertify { found: u16 },
    /// An algorithm identifier this CA does not accept in that place.
    #[error("{structure} uses algorithm {alg:#06x}, which is not supported here")]
    UnsupportedAlgorithm { structure: &'static str, alg: u16 },
    /// The DER container (EvidenceBundle, TcgAttestCertify) does not decode.
    #[error("the evidence attribute is not valid DER: {reason}")]
    Der { reason: String },
    /// The bundle holds no TPM2_Certify statement, or more than one.
    #[error("the evidence holds {count} TcgAttestCertify statements; exactly one is required")]
    CertifyCount { count: usize },
}
