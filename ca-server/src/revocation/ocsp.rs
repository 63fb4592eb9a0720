//! The OCSP responder (RFC 6960) for every certificate this CA operates: device certificates
//! (under the three issuing CAs) and the CA certificates themselves (under the root).
//!
//! The issuer of a request is found from its CertID (issuerNameHash and issuerKeyHash, SHA-1 or
//! SHA-256) among our CAs, never from the URL: the URL must name one of our responders (`root`,
//! `basic`, `substantial`, `high`; anything else is [`RevocationError::UnknownResponder`], a 404),
//! and a request sent to one responder's URL for a certificate of another of our CAs is answered
//! for the CA its CertID names, signed by that CA's responder. The answer is then exactly the one
//! the right URL gives, which keeps clients configured with one responder URL for the whole chain
//! (nginx `ssl_ocsp_responder`) working. A request naming an issuer that is not ours, or naming
//! two of our CAs at once, is `unauthorized`.
//!
//! The root's answers cover the certificates the root issued to this CA (the issuing, station and
//! TLS certificates it holds): `revoked` when the root's current CRL lists the serial, `good`
//! otherwise, `unknown` for any other serial. With an online root they are signed by a
//! root-delegated responder; with an offline root they are the pre-signed responses the ceremony
//! produced ([`super::presigned`]), served byte for byte.

use iomt_core::ocsp::{self, Answer, CertIdHash, ErrorKind, OcspRequestError, Query, Status};
use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use super::presigned::Lookup;
use super::{OCSP_VALIDITY, Reason, Revocation, RevocationError};
use crate::pki::{CaMaterial, PkiError, ROOT_CA};
use crate::storage::{CertificateStatus, StoreError};

/// A CA whose certificates this responder answers for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum OcspIssuer {
    /// A generation of the issuing CA of one assurance level (device certificates), by name
    /// (`basic`, `basic-g2`, ...).
    Issuing(String),
    /// A root generation (the CA certificates under it), by name (`root`, `root-g2`, ...).
    Root(String),
}

impl OcspIssuer {
    /// The responder's name in `/ocsp/<name>`.
    pub fn as_str(&self) -> &str {
        match self {
            OcspIssuer::Root(name) | OcspIssuer::Issuing(name) => name,
        }
    }
}

/// CertID hashes (SHA-1 and SHA-256) of every CA we answer for.
pub(super) struct IssuerIndex {
    entries: Vec<IndexEntry>,
    /// `(root generation, serial)` (INTEGER contents) of the certificates a root issued to
    /// this CA.
    root_issued: Vec<(String, Vec<u8>)>,
}

struct IndexEntry {
    issuer: OcspIssuer,
    hash: CertIdHash,
    name: Vec<u8>,
    key: Vec<u8>,
}

impl IssuerIndex {
    /// Indexes the root and the issuing CAs of `ca`.
    pub(super) fn new(ca: &CaMaterial) -> Result<IssuerIndex, PkiError> {
        let mut certs = vec![(OcspIssuer::Root(ROOT_CA.to_owned()), ca.root_der.as_ref())];
        for root in &ca.later_roots {
            certs.push((
                OcspIssuer::Root(root.ca.name.clone()),
                root.ca.cert_der.as_ref(),
            ));
        }
        for generation in ca.subordinates() {
            if super::is_issuing_generation(&generation.name) {
                certs.push((
                    OcspIssuer::Issuing(generation.name.clone()),
                    generation.cert_der.as_ref(),
                ));
            }
        }
        let mut entries = Vec::new();
        for (issuer, der) in certs {
            let cert = parse(der)?;
            for hash in [CertIdHash::Sha1, CertIdHash::Sha256] {
                entries.push(IndexEntry {
                    issuer: issuer.clone(),
                    hash,
                    name: hash.digest(cert.subject().as_raw()),
                    key: hash.digest(&cert.public_key().subject_public_key.data),
                });
            }
        }
        let mut roots = vec![(ROOT_CA.to_owned(), ca.root_der.as_ref())];
        roots.extend(
            ca.later_roots
                .iter()
                .map(|r| (r.ca.name.clone(), r.ca.cert_der.as_ref())),
        );
        let mut root_subjects = Vec::new();
        for (name, der) in roots {
            root_subjects.push((name, parse(der)?.subject().as_raw().to_vec()));
        }
        let mut root_issued = Vec::new();
        for der in ca.root_issued() {
            let cert = parse(der)?;
            if let Some((name, _)) = root_subjects
                .iter()
                .find(|(_, subject)| subject.as_slice() == cert.issuer().as_raw())
            {
                root_issued.push((name.clone(), cert.raw_serial().to_vec()));
            }
        }
        Ok(IssuerIndex {
            entries,
            root_issued,
        })
    }

    /// The one CA every query names, if they all name the same one of ours.
    fn issuer_of(&self, queries: &[Query]) -> Option<OcspIssuer> {
        let mut found: Option<&OcspIssuer> = None;
        for query in queries {
            let issuer = &self
                .entries
                .iter()
                .find(|e| {
                    e.hash == query.hash
                        && e.name == query.issuer_name_hash
                        && e.key == query.issuer_key_hash
                })?
                .issuer;
            if found.is_some_and(|f| f != issuer) {
                return None;
            }
            found = Some(issuer);
        }
        found.cloned()
    }

    fn issued_by_root(&self, root: &str, serial: &[u8]) -> bool {
        self.root_issued
            .iter()
            .any(|(name, s)| name == root && s == serial)
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::Invalid {
            path: "ca".into(),
            reason: format!("a CA certificate does not parse: {e}"),
        })
}

impl Revocation {
    /// Answers a DER OCSP request sent to `/ocsp/<responder>` with a DER OCSP response (failures
    /// are OCSP error statuses). Only a responder name that is not ours is an error (404).
    pub async fn ocsp(&self, responder: &str, request: &[u8]) -> Result<Vec<u8>, RevocationError> {
        let view = self.view();
        if responder != ROOT_CA
            && !((super::is_issuing_generation(responder) || view.ca.is_root(responder))
                && view.ca.signer(responder).is_some())
        {
            return Err(RevocationError::UnknownResponder(responder.to_owned()));
        }
        let parsed = match ocsp::parse_request(request) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::debug!(%error, "malformed OCSP request");
                self.count_ocsp("malformed_request");
                return Ok(ocsp::error_response(match error {
                    OcspRequestError::Malformed(_)
                    | OcspRequestError::TooLarge
                    | OcspRequestError::Empty
                    | OcspRequestError::BadNonce
                    | OcspRequestError::UnsupportedHash(_) => ErrorKind::Malformed,
                }));
            }
        };
        let Some(issuer) = view.index.issuer_of(&parsed.queries) else {
            self.count_ocsp("unauthorized");
            return Ok(ocsp::error_response(ErrorKind::Unauthorized));
        };
        if issuer == OcspIssuer::Root(ROOT_CA.to_owned()) && view.ca.root.is_none() {
            return Ok(self.presigned_answer(&view, &parsed.queries));
        }
        let answered = self
            .answer(&view, &issuer, &parsed.queries, parsed.nonce.as_ref())
            .await;
        Ok(answered.unwrap_or_else(|error| {
            tracing::error!(%error, "OCSP response failed");
            let kind = match error {
                RevocationError::Store(StoreError::Unavailable(_)) => ErrorKind::TryLater,
                _ => ErrorKind::Internal,
            };
            self.count_ocsp(if kind == ErrorKind::TryLater {
                "try_later"
            } else {
                "internal_error"
            });
            ocsp::error_response(kind)
        }))
    }

    /// Under an offline root: the pre-signed response for exactly this CertID, as it was signed.
    fn presigned_answer(&self, view: &super::View, queries: &[Query]) -> Vec<u8> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match view.presigned.lookup(queries, now) {
            Lookup::Found(der) => {
                self.count_ocsp("presigned");
                der.to_vec()
            }
            Lookup::Stale(name) => {
                self.count_ocsp("try_later");
                tracing::error!(
                    certificate = name,
                    "the offline root's pre-signed OCSP response has expired: renew it at the root ceremony"
                );
                ocsp::error_response(ErrorKind::TryLater)
            }
            // RFC 5019 §2.2.3: a responder serving pre-produced responses answers
            // `unauthorized` when it holds none for the request.
            Lookup::Missing => {
                self.count_ocsp("unauthorized");
                ocsp::error_response(ErrorKind::Unauthorized)
            }
        }
    }

    async fn answer(
        &self,
        view: &super::View,
        issuer: &OcspIssuer,
        queries: &[Query],
        nonce: Option<&ocsp::Nonce>,
    ) -> Result<Vec<u8>, RevocationError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let next = now + OCSP_VALIDITY.whole_seconds();
        let statuses = match issuer {
            OcspIssuer::Issuing(name) => self.device_statuses(name, queries, now).await?,
            OcspIssuer::Root(name) => self.root_statuses(view, name, queries).await?,
        };
        for status in &statuses {
            self.count_ocsp(match status {
                Status::Good => "good",
                Status::Revoked { .. } => "revoked",
                Status::Unknown => "unknown",
            });
        }
        let answers: Vec<Answer<'_>> = queries
            .iter()
            .zip(statuses)
            .map(|(query, status)| Answer {
                query,
                status,
                this_update: now,
                next_update: next,
            })
            .collect();
        let responder = self
            .responder(issuer.as_str())
            .ok_or_else(|| RevocationError::UnknownResponder(issuer.as_str().to_owned()))?;
        ocsp::build_response(
            &responder.cert_der,
            responder.public_key(),
            now,
            &answers,
            nonce,
            |tbs| responder.sign(tbs),
        )
        .map_err(|e| RevocationError::Pki(PkiError::Random(e.to_string())))
    }

    /// Device certificates: the status on record, `unknown` for a serial of another issuer.
    async fn device_statuses(
        &self,
        issuer: &str,
        queries: &[Query],
        now: i64,
    ) -> Result<Vec<Status>, RevocationError> {
        let mut statuses = Vec::with_capacity(queries.len());
        for query in queries {
            let serial = hex::encode(&query.serial);
            statuses.push(match self.states.state(serial).await? {
                Some(state) if state.issuer == issuer => match state.status {
                    CertificateStatus::Valid => Status::Good,
                    CertificateStatus::OnHold | CertificateStatus::Revoked => Status::Revoked {
                        at: state.revoked_at.unwrap_or(now),
                        reason: state
                            .reason
                            .as_deref()
                            .and_then(Reason::parse)
                            .map(Reason::code),
                    },
                },
                _ => Status::Unknown,
            });
        }
        Ok(statuses)
    }

    /// CA certificates: from the root's current CRL, so OCSP and the CRL always agree.
    async fn root_statuses(
        &self,
        view: &super::View,
        root: &str,
        queries: &[Query],
    ) -> Result<Vec<Status>, RevocationError> {
        let crl = self.current_crl(root).await?;
        let (_, crl) = CertificateRevocationList::from_der(&crl.der)
            .map_err(|e| RevocationError::RootCrl(e.to_string()))?;
        Ok(queries
            .iter()
            .map(|query| {
                if !view.index.issued_by_root(root, &query.serial) {
                    return Status::Unknown;
                }
                crl.iter_revoked_certificates()
                    .find(|entry| entry.raw_serial() == query.serial.as_slice())
                    .map_or(Status::Good, |entry| Status::Revoked {
                        at: entry.revocation_date.timestamp(),
                        reason: entry.reason_code().map(|(_, code)| code.0),
                    })
            })
            .collect())
    }
}

#[cfg(test)]
#[path = "tests/ocsp.rs"]
mod tests;
