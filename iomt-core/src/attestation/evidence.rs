//! The evidence a CSR carries (draft-ietf-lamps-csr-attestation): the `id-aa-evidence`
//! attribute's `EvidenceBundle`, whose one `TcgAttestCertify` statement (TCG, OID
//! `2.23.133.20.1`) holds the `TPMS_ATTEST` and `TPMT_SIGNATURE` of a `TPM2_Certify` and the
//! certified key's `TPMT_PUBLIC`, and whose `certs` carry the EK certificate and its chain.
//!
//! ```text
//! EvidenceBundle ::= SEQUENCE {
//!    evidences SEQUENCE SIZE (1..MAX) OF EvidenceStatement,
//!    certs SEQUENCE SIZE (1..MAX) OF CertificateChoices OPTIONAL }
//! EvidenceStatement ::= SEQUENCE { type OBJECT IDENTIFIER, stmt ANY, hint IA5String OPTIONAL }
//! TcgAttestCertify ::= SEQUENCE {
//!    tpmSAttest OCTET STRING, signature OCTET STRING, tpmTPublic OCTET STRING OPTIONAL }
//! ```

use der::asn1::{Any, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence, Tag, Tagged};

use super::AttestationError;
use super::tpm::{Attest, Public, Signature};
use crate::oids;

/// The largest evidence attribute accepted: an EK certificate and two CA certificates (about
/// 1.5 KiB each) and the TPM structures (well under 1 KiB).
pub const MAX_EVIDENCE: usize = 12 * 1024;
/// At most this many certificates in `certs` (the EK certificate and its chain).
pub const MAX_EVIDENCE_CERTIFICATES: usize = 4;

#[derive(Sequence)]
struct EvidenceBundleDer {
    evidences: Vec<EvidenceStatementDer>,
    #[asn1(optional = "true")]
    certs: Option<Vec<Any>>,
}

#[derive(Sequence)]
struct EvidenceStatementDer {
    kind: ObjectIdentifier,
    stmt: Any,
    #[asn1(optional = "true")]
    hint: Option<Ia5String>,
}

#[derive(Sequence)]
struct TcgAttestCertifyDer {
    tpm_s_attest: OctetString,
    signature: OctetString,
    #[asn1(optional = "true")]
    tpm_t_public: Option<OctetString>,
}

/// A parsed `TPM2_Certify`: what was attested, the AK's signature over it, and the certified
/// key's public area (whose name must be the attested one: the CA checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifyStatement {
    pub attest: Attest,
    pub signature: Signature,
    /// The marshalled `TPMT_SIGNATURE`, as received.
    pub signature_raw: Vec<u8>,
    pub certified: Public,
}

/// The evidence of one CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub certify: CertifyStatement,
    /// `certs`, each the DER of an X.509 certificate (EK certificate and chain, any order).
    pub certificates: Vec<Vec<u8>>,
}

fn der_error(e: der::Error) -> AttestationError {
    AttestationError::Der {
        reason: e.to_string(),
    }
}

/// Parses an `EvidenceBundle` (the value of the CSR's `id-aa-evidence` attribute). Statements of
/// other types are skipped; exactly one `TcgAttestCertify` must be present.
pub fn parse_evidence(der: &[u8]) -> Result<Evidence, AttestationError> {
    if der.len() > MAX_EVIDENCE {
        return Err(AttestationError::TooLarge {
            structure: "EvidenceBundle",
            len: der.len(),
            max: MAX_EVIDENCE,
        });
    }
    let bundle = EvidenceBundleDer::from_der(der).map_err(der_error)?;
    let certify: Vec<&EvidenceStatementDer> = bundle
        .evidences
        .iter()
        .filter(|s| s.kind == oids::TCG_ATTEST_CERTIFY)
        .collect();
    let [statement] = certify.as_slice() else {
        return Err(AttestationError::CertifyCount {
            count: certify.len(),
        });
    };
    let stmt: TcgAttestCertifyDer = statement.stmt.decode_as().map_err(der_error)?;
    let public = stmt.tpm_t_public.ok_or(AttestationError::Truncated {
        structure: "TcgAttestCertify (no tpmTPublic)",
    })?;
    let certify = CertifyStatement {
        attest: Attest::parse(stmt.tpm_s_attest.as_bytes())?,
        signature: Signature::parse(stmt.signature.as_bytes())?,
        signature_raw: stmt.signature.as_bytes().to_vec(),
        certified: Public::parse(public.as_bytes())?,
    };
    let certs = bundle.certs.unwrap_or_default();
    if certs.len() > MAX_EVIDENCE_CERTIFICATES {
        return Err(AttestationError::TooLarge {
            structure: "EvidenceBundle.certs",
            len: certs.len(),
            max: MAX_EVIDENCE_CERTIFICATES,
        });
    }
    let certificates = certs
        .iter()
        .map(|c| {
            // CertificateChoices: only `certificate` (a plain SEQUENCE) is accepted.
            if c.tag() != Tag::Sequence {
                return Err(AttestationError::Der {
                    reason: format!("a certs entry is {}, not a certificate", c.tag()),
                });
            }
            c.to_der().map_err(der_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Evidence {
        certify,
        certificates,
    })
}

/// Encodes an `EvidenceBundle` with one `TcgAttestCertify` (the marshalled TPM structures as
/// the TPM returned them) and the certificates (DER), for a client to put in its CSR.
pub fn encode_evidence(
    tpms_attest: &[u8],
    tpmt_signature: &[u8],
    tpmt_public: &[u8],
    certificates: &[&[u8]],
) -> Result<Vec<u8>, AttestationError> {
    let stmt = TcgAttestCertifyDer {
        tpm_s_attest: OctetString::new(tpms_attest).map_err(der_error)?,
        signature: OctetString::new(tpmt_signature).map_err(der_error)?,
        tpm_t_public: Some(OctetString::new(tpmt_public).map_err(der_error)?),
    };
    let certs = certificates
        .iter()
        .map(|c| Any::from_der(c).map_err(der_error))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = EvidenceBundleDer {
        evidences: vec![EvidenceStatementDer {
            kind: oids::TCG_ATTEST_CERTIFY,
            stmt: Any::encode_from(&stmt).map_err(der_error)?,
            hint: None,
        }],
        certs: (!certs.is_empty()).then_some(certs),
    };
    bundle.to_der().map_err(der_error)
}

#[cfg(test)]
#[path = "tests/evidence.rs"]
mod tests;
