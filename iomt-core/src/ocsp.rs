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
/// RFC 9654 §2.1: `Nonce ::= OCTET STRING (SIZE(1..128))`.
pub const NONCE_OCTETS: std::ops::RangeInclusive<usize> = 1..=128;

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
    /// RFC 9654: a nonce outside 1–128 octets (or not an OCTET STRING) is a malformed request.
    #[error("the nonce extension must hold an OCTET STRING of 1 to 128 octets (RFC 9654)")]
    BadNonce,
}

/// A request's nonce, checked against RFC 9654 (an OCTET STRING of 1–128 octets); only a checked
/// nonce can be echoed in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    /// The extension's `extnValue` contents: the DER OCTET STRING as the client encoded it.
    encoded: Vec<u8>,
}

impl Nonce {
    /// Checks an `id-pkix-ocsp-nonce` extension value.
    pub fn parse(extn_value: &[u8]) -> Result<Nonce, OcspRequestError> {
        let inner = OctetString::from_der(extn_value).map_err(|_| OcspRequestError::BadNonce)?;
        if !NONCE_OCTETS.contains(&inner.as_bytes().len()) {
            return Err(OcspRequestError::BadNonce);
        }
        Ok(Nonce {
            encoded: extn_value.to_vec(),
        })
    }

    /// The value to echo as the response's nonce `extnValue`.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
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

impl Query {
    /// What this query's CertID names: hash algorithm, issuer hashes and serial.
    pub fn key(&self) -> CertIdKey {
        CertIdKey {
            hash: self.hash,
            issuer_name_hash: self.issuer_name_hash.clone(),
            issuer_key_hash: self.issuer_key_hash.clone(),
            serial: self.serial.clone(),
        }
    }
}

/// The content of a CertID, comparable between a request and a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdKey {
    pub hash: CertIdHash,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// The serial's INTEGER contents.
    pub serial: Vec<u8>,
}

impl CertIdKey {
    fn read(id: &CertId) -> Result<CertIdKey, OcspRequestError> {
        let hash = match id.hash_algorithm.oid {
            ID_SHA1 => CertIdHash::Sha1,
            ID_SHA256 => CertIdHash::Sha256,
            other => return Err(OcspRequestError::UnsupportedHash(other.to_string())),
        };
        Ok(CertIdKey {
            hash,
            issuer_name_hash: id.issuer_name_hash.as_bytes().to_vec(),
            issuer_key_hash: id.issuer_key_hash.as_bytes().to_vec(),
            serial: id.serial_number.as_bytes().to_vec(),
        })
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub queries: Vec<Query>,
    /// The nonce (RFC 9654), echoed in the response.
    pub nonce: Option<Nonce>,
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
        .map(|e| Nonce::parse(e.extn_value.as_bytes()))
        .transpose()?;
    let mut queries = Vec::new();
    for single in &request.tbs_request.request_list {
        let id = &single.req_cert;
        let key = CertIdKey::read(id)?;
        queries.push(Query {
            hash: key.hash,
            issuer_name_hash: key.issuer_name_hash,
            issuer_key_hash: key.issuer_key_hash,
            serial: key.serial,
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
    nonce: Option<&Nonce>,
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
        Some(nonce) => Some(vec![Extension {
            extn_id: ID_NONCE,
            critical: false,
            extn_value: OctetString::new(nonce.encoded())?,
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

    /// RFC 9654: 1–128 octets are echoed, anything else (or a nonce that is not an OCTET
    /// STRING) makes the request malformed.
    #[test]
    fn nonce_length_is_checked_against_rfc_9654() {
        let issuer = issuer_der();
        for (octets, accepted) in [
            (0, false),
            (1, true),
            (16, true),
            (128, true),
            (129, false),
            (4000, false),
        ] {
            let nonce = vec![0x5a; octets];
            let request = build_request(&issuer, &[1, 2, 3], Some(&nonce)).unwrap();
            let parsed = parse_request(&request);
            match (accepted, parsed) {
                (true, Ok(parsed)) => {
                    let echoed = OctetString::from_der(parsed.nonce.unwrap().encoded()).unwrap();
                    assert_eq!(echoed.as_bytes(), nonce.as_slice());
                }
                (false, Err(OcspRequestError::BadNonce)) => {}
                (_, other) => panic!("{octets} octets: {other:?}"),
            }
        }
        assert_eq!(Nonce::parse(&[0x5a; 16]), Err(OcspRequestError::BadNonce));
        assert_eq!(
            Nonce::parse(&[0x04, 0x01, 0x5a, 0x00]),
            Err(OcspRequestError::BadNonce)
        );
    }

    fn issuer_der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().to_vec()
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

/// Why an OCSP response cannot be relied on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspCheckError {
    #[error("the responder answered {0:?}")]
    Unsuccessful(x509_ocsp::OcspResponseStatus),
    #[error("the response is not a DER BasicOCSPResponse: {0}")]
    Malformed(String),
    #[error("the response is not signed by the issuing CA or a responder it delegated: {0}")]
    BadSignature(String),
    #[error("the response does not answer for this certificate")]
    NotAnswered,
    #[error("the response nonce does not match the request")]
    NonceMismatch,
    #[error("the response is stale (nextUpdate has passed)")]
    Stale,
}

const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";

/// Builds an OCSP request (SHA-1 CertID, as stock clients send) for `serial` under `issuer`.
pub fn build_request(
    issuer_cert_der: &[u8],
    serial: &[u8],
    nonce: Option<&[u8]>,
) -> Result<Vec<u8>, OcspResponseError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, issuer) = X509Certificate::from_der(issuer_cert_der)
        .map_err(|e| OcspResponseError::Sign(format!("issuer certificate: {e}")))?;
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA1,
            parameters: Some(der::Any::null()),
        },
        issuer_name_hash: OctetString::new(CertIdHash::Sha1.digest(issuer.subject().as_raw()))?,
        issuer_key_hash: OctetString::new(
            CertIdHash::Sha1.digest(&issuer.public_key().subject_public_key.data),
        )?,
        serial_number: x509_cert::serial_number::SerialNumber::new(serial)?,
    };
    let request_extensions = match nonce {
        Some(value) => Some(vec![Extension {
            extn_id: ID_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(value.to_vec())?.to_der()?)?,
        }]),
        None => None,
    };
    let request = OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions,
        },
        optional_signature: None,
    };
    Ok(request.to_der()?)
}

/// Verifies a response for `serial` under `issuer` and returns the certificate's status.
pub fn check_response(
    response_der: &[u8],
    issuer_cert_der: &[u8],
    serial: &[u8],
    nonce: Option<&[u8]>,
    now: i64,
) -> Result<Status, OcspCheckError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let malformed = |e: &dyn std::fmt::Display| OcspCheckError::Malformed(e.to_string());
    let response = OcspResponse::from_der(response_der).map_err(|e| malformed(&e))?;
    if response.response_status != x509_ocsp::OcspResponseStatus::Successful {
        return Err(OcspCheckError::Unsuccessful(response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| malformed(&"no responseBytes"))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(malformed(&"not a basic OCSP response"));
    }
    let basic =
        BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(|e| malformed(&e))?;
    let (_, issuer) = X509Certificate::from_der(issuer_cert_der).map_err(|e| malformed(&e))?;

    // The signer: the issuing CA itself, or a responder certificate it issued for OCSP signing.
    let responder_der = basic
        .certs
        .as_ref()
        .and_then(|c| c.first())
        .map(|c| c.to_der())
        .transpose()
        .map_err(|e| malformed(&e))?;
    let signer_key: Vec<u8> = match &responder_der {
        // Signed by the CA itself, which included its own certificate (RFC 6960 §4.2.2.2).
        Some(der) if der.as_slice() == issuer_cert_der => {
            issuer.public_key().subject_public_key.data.to_vec()
        }
        Some(der) => {
            let (_, responder) = X509Certificate::from_der(der).map_err(|e| malformed(&e))?;
            responder
                .verify_signature(Some(issuer.public_key()))
                .map_err(|e| OcspCheckError::BadSignature(format!("responder certificate: {e}")))?;
            let delegated = responder
                .extended_key_usage()
                .ok()
                .flatten()
                .is_some_and(|eku| {
                    eku.value
                        .other
                        .iter()
                        .any(|oid| oid.to_id_string() == KP_OCSP_SIGNING)
                        || eku.value.ocsp_signing
                });
            if !delegated {
                return Err(OcspCheckError::BadSignature(
                    "responder certificate lacks id-kp-OCSPSigning".into(),
                ));
            }
            if !responder.validity().is_valid_at(
                x509_parser::time::ASN1Time::from_timestamp(now).map_err(|e| malformed(&e))?,
            ) {
                return Err(OcspCheckError::BadSignature(
                    "responder certificate is not valid now".into(),
                ));
            }
            responder.public_key().subject_public_key.data.to_vec()
        }
        None => issuer.public_key().subject_public_key.data.to_vec(),
    };
    let algorithm: &'static dyn ring::signature::VerificationAlgorithm = match signer_key.len() {
        65 => &ring::signature::ECDSA_P256_SHA256_ASN1,
        97 => &ring::signature::ECDSA_P384_SHA384_ASN1,
        _ => {
            return Err(OcspCheckError::BadSignature(
                "unsupported responder key".into(),
            ));
        }
    };
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| malformed(&e))?;
    ring::signature::UnparsedPublicKey::new(algorithm, &signer_key)
        .verify(&tbs, basic.signature.raw_bytes())
        .map_err(|_| OcspCheckError::BadSignature("signature does not verify".into()))?;

    if let Some(sent) = nonce {
        let echoed = basic
            .tbs_response_data
            .response_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == ID_NONCE)
            .and_then(|e| OctetString::from_der(e.extn_value.as_bytes()).ok());
        if echoed.as_ref().map(|o| o.as_bytes()) != Some(sent) {
            return Err(OcspCheckError::NonceMismatch);
        }
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id.serial_number.as_bytes() == serial)
        .ok_or(OcspCheckError::NotAnswered)?;
    if let Some(next) = &single.next_update
        && (next.0.to_unix_duration().as_secs() as i64) < now
    {
        return Err(OcspCheckError::Stale);
    }
    Ok(match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Unknown(_) => Status::Unknown,
        CertStatus::Revoked(info) => Status::Revoked {
            at: info.revocation_time.0.to_unix_duration().as_secs() as i64,
            reason: info.revocation_reason.map(|r| r as u8),
        },
    })
}

/// One answer of a successful basic response, read without checking the signature (the caller
/// checked it with [`check_response`], or serves the response as the offline root signed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleAnswer {
    pub cert_id: CertIdKey,
    pub status: Status,
    pub this_update: i64,
    pub next_update: Option<i64>,
}

/// The answers a DER OCSPResponse carries (hostile input: any defect is an error).
pub fn read_answers(response_der: &[u8]) -> Result<Vec<SingleAnswer>, OcspCheckError> {
    let malformed = |e: &dyn std::fmt::Display| OcspCheckError::Malformed(e.to_string());
    let response = OcspResponse::from_der(response_der).map_err(|e| malformed(&e))?;
    if response.response_status != x509_ocsp::OcspResponseStatus::Successful {
        return Err(OcspCheckError::Unsuccessful(response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| malformed(&"no responseBytes"))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(malformed(&"not a basic OCSP response"));
    }
    let basic =
        BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(|e| malformed(&e))?;
    let seconds = |t: &OcspGeneralizedTime| t.0.to_unix_duration().as_secs() as i64;
    basic
        .tbs_response_data
        .responses
        .iter()
        .map(|single| {
            Ok(SingleAnswer {
                cert_id: CertIdKey::read(&single.cert_id).map_err(|e| malformed(&e))?,
                status: match &single.cert_status {
                    CertStatus::Good(_) => Status::Good,
                    CertStatus::Unknown(_) => Status::Unknown,
                    CertStatus::Revoked(info) => Status::Revoked {
                        at: seconds(&info.revocation_time),
                        reason: info.revocation_reason.map(|r| r as u8),
                    },
                },
                this_update: seconds(&single.this_update),
                next_update: single.next_update.as_ref().map(seconds),
            })
        })
        .collect()
}
