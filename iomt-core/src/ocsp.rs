//! OCSP (RFC 6960) wire format: requests in, signed BasicOCSPResponses out. The caller looks up
//! statuses and supplies the signature; this module only reads and writes DER.

use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};

/// id-sha1 and id-sha256, the CertID hash algorithms OCSP clients use.
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-pkix-ocsp-nonce.
const ID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// ecdsa-with-SHA256.
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Largest OCSP request accepted; real ones are about 100 bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The CertID hash algorithms this responder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertIdHash {
    Sha1,
    Sha256,
}

impl CertIdHash {
    /// Hashes `data` with this algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            CertIdHash::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            CertIdHash::Sha256 => &ring::digest::SHA256,
        };
        ring::digest::digest(algorithm, data).as_ref().to_vec()
    }
}

/// Why a request was not answered with statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspRequestError {
    #[error("not a DER OCSPRequest: {0}")]
    Malformed(String),
    #[error("the request is larger than {MAX_REQUEST} bytes")]
    TooLarge,
    #[error("the request lists no certificate")]
    Empty,
    #[error("CertID hash algorithm {0} is not supported (use SHA-1 or SHA-256)")]
    UnsupportedHash(String),
}

/// One certificate asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub hash: CertIdHash,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// The serial's INTEGER contents (as in the certificate).
    pub serial: Vec<u8>,
    cert_id: CertId,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub queries: Vec<Query>,
    /// The nonce extension's value, echoed in the response.
    pub nonce: Option<Vec<u8>>,
}

/// Parses a DER OCSPRequest (hostile input).
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest, OcspRequestError> {
    if der.len() > MAX_REQUEST {
        return Err(OcspRequestError::TooLarge);
    }
    let request =
        OcspRequest::from_der(der).map_err(|e| OcspRequestError::Malformed(e.to_string()))?;
    let nonce = request
        .tbs_request
        .request_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_NONCE)
        .map(|e| e.extn_value.as_bytes().to_vec());
    let mut queries = Vec::new();
    for single in &request.tbs_request.request_list {
        let id = &single.req_cert;
        let hash = match id.hash_algorithm.oid {
            ID_SHA1 => CertIdHash::Sha1,
            ID_SHA256 => CertIdHash::Sha256,
            other => return Err(OcspRequestError::UnsupportedHash(other.to_string())),
        };
        queries.push(Query {
            hash,
            issuer_name_hash: id.issuer_name_hash.as_bytes().to_vec(),
            issuer_key_hash: id.issuer_key_hash.as_bytes().to_vec(),
            serial: id.serial_number.as_bytes().to_vec(),
            cert_id: id.clone(),
        });
    }
    if queries.is_empty() {
        return Err(OcspRequestError::Empty);
    }
    Ok(ParsedRequest { queries, nonce })
}

/// A certificate's status as the responder reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    /// Revoked (or on hold, with reason 6) since a Unix time.
    Revoked {
        at: i64,
        reason: Option<u8>,
    },
    Unknown,
}

/// One answer: the query it answers and the status with its validity window.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub query: &'a Query,
    pub status: Status,
    pub this_update: i64,
    pub next_update: i64,
}

/// Why a response could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum OcspResponseError {
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    #[error("signing failed: {0}")]
    Sign(String),
}

fn time(unix: i64) -> Result<OcspGeneralizedTime, der::Error> {
    Ok(OcspGeneralizedTime(GeneralizedTime::from_unix_duration(
        Duration::from_secs(u64::try_from(unix).unwrap_or(0)),
    )?))
}

fn reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        0 => CrlReason::Unspecified,
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

/// Builds a successful response signed by the delegated responder (ECDSA P-256 / SHA-256):
/// `sign` returns the DER ECDSA signature over the given bytes.
pub fn build_response(
    responder_cert_der: &[u8],
    responder_public_key: &[u8],
    produced_at: i64,
    answers: &[Answer<'_>],
    nonce: Option<&[u8]>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, OcspResponseError> {
    let mut responses = Vec::with_capacity(answers.len());
    for answer in answers {
        let cert_status = match answer.status {
            Status::Good => CertStatus::good(),
            Status::Unknown => CertStatus::unknown(),
            Status::Revoked { at, reason: code } => CertStatus::revoked(RevokedInfo {
                revocation_time: time(at)?,
                revocation_reason: code.and_then(reason),
            }),
        };
        responses.push(SingleResponse {
            cert_id: answer.query.cert_id.clone(),
            cert_status,
            this_update: time(answer.this_update)?,
            next_update: Some(time(answer.next_update)?),
            single_extensions: None,
        });
    }
    let response_extensions = match nonce {
        Some(value) => Some(vec![Extension {
            extn_id: ID_NONCE,
            critical: false,
            extn_value: OctetString::new(value.to_vec())?,
        }]),
        None => None,
    };
    let key_hash = CertIdHash::Sha1.digest(responder_public_key);
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(OctetString::new(key_hash)?),
        produced_at: time(produced_at)?,
        responses,
        response_extensions,
    };
    let tbs = data.to_der()?;
    let signature = sign(&tbs).map_err(OcspResponseError::Sign)?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        signature: BitString::from_bytes(&signature)?,
        certs: Some(vec![x509_cert::Certificate::from_der(responder_cert_der)?]),
    };
    Ok(OcspResponse::successful(basic)?.to_der()?)
}

/// An unsuccessful response: `malformedRequest` (1) or `unauthorized` (6), `internalError` (2).
pub fn error_response(kind: ErrorKind) -> Vec<u8> {
    let response = match kind {
        ErrorKind::Malformed => OcspResponse::malformed_request(),
        ErrorKind::Unauthorized => OcspResponse::unauthorized(),
        ErrorKind::Internal => OcspResponse::internal_error(),
        ErrorKind::TryLater => OcspResponse::try_later(),
    };
    // These fixed structures always encode; an empty body would still be refused by clients.
    response.to_der().unwrap_or_default()
}

/// Unsuccessful OCSP response statuses this responder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Internal,
    Malformed,
    TryLater,
    Unauthorized,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_requests_are_malformed() {
        assert!(matches!(
            parse_request(b"garbage"),
            Err(OcspRequestError::Malformed(_))
        ));
        assert_eq!(
            parse_request(&vec![0x30; MAX_REQUEST + 1]),
            Err(OcspRequestError::TooLarge)
        );
    }

    #[test]
    fn error_responses_encode_their_status() {
        let malformed = OcspResponse::from_der(&error_response(ErrorKind::Malformed)).unwrap();
        assert_eq!(
            malformed.response_status,
            x509_ocsp::OcspResponseStatus::MalformedRequest
        );
        let unauthorized =
            OcspResponse::from_der(&error_response(ErrorKind::Unauthorized)).unwrap();
        assert_eq!(
            unauthorized.response_status,
            x509_ocsp::OcspResponseStatus::Unauthorized
        );
    }
}
