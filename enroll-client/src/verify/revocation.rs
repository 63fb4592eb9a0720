//! The revocation step of `verify`: the certificate's own OCSP responder (a fresh nonce) and
//! CRL distribution point, followed as a hospital would.

use std::sync::Arc;

use iomt_core::ocsp::{self, Status};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use super::{RevocationCheck, Verdict};
use crate::error::ClientError;

/// Checks `cert` (issued by `issuer`, DER `issuer_der`) as `how` says: the report's revocation
/// line and the verdict it leads to.
pub(super) async fn check(
    how: RevocationCheck,
    cert: &X509Certificate<'_>,
    issuer_der: &[u8],
    issuer: &X509Certificate<'_>,
    root: &[u8],
) -> Result<(String, Verdict), ClientError> {
    let (ocsp_url, crl_url) = revocation_urls(cert);
    let client = http_client(root)?;
    let serial = cert.raw_serial().to_vec();
    let attempts: Vec<(&str, Option<String>)> = match how {
        RevocationCheck::None => {
            return Ok(("not checked (--revocation none)".into(), Verdict::Trusted));
        }
        RevocationCheck::Ocsp => vec![("OCSP", ocsp_url)],
        RevocationCheck::Crl => vec![("CRL", crl_url)],
        RevocationCheck::Auto => vec![("OCSP", ocsp_url), ("CRL", crl_url)],
    };
    let mut problems = Vec::new();
    for (method, url) in attempts {
        let Some(url) = url else {
            problems.push(format!("{method}: the certificate names no URL"));
            continue;
        };
        let status = match method {
            "OCSP" => check_ocsp(&client, &url, issuer_der, &serial).await,
            _ => check_crl(&client, &url, issuer, &serial).await,
        };
        match status {
            Ok(Status::Good) => return Ok((format!("good ({method} {url})"), Verdict::Trusted)),
            Ok(Status::Revoked { at, reason }) => {
                let when = time::OffsetDateTime::from_unix_timestamp(at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let text = format!(
                    "REVOKED since {when}, reason {} ({method} {url})",
                    reason_name(reason)
                );
                return Ok((text.clone(), Verdict::Revoked(text)));
            }
            Ok(Status::Unknown) => problems.push(format!(
                "{method} {url}: the responder does not know this certificate"
            )),
            Err(problem) => problems.push(format!("{method} {url}: {problem}")),
        }
    }
    let text = problems.join("; ");
    Ok((format!("UNKNOWN: {text}"), Verdict::RevocationUnknown(text)))
}

/// Why a revocation source (OCSP responder or CRL) gave no usable answer.
#[derive(Debug, thiserror::Error)]
enum StatusProblem {
    #[error("no randomness for the OCSP nonce")]
    NoRandomness,
    #[error("the OCSP request cannot be built: {0}")]
    Request(#[from] ocsp::OcspResponseError),
    #[error("unreachable: {0}")]
    Unreachable(reqwest::Error),
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("reading the answer: {0}")]
    Body(reqwest::Error),
    #[error(transparent)]
    Ocsp(#[from] ocsp::OcspCheckError),
    #[error("not a DER CRL: {0}")]
    NotCrl(x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("the CRL is not the issuing CA's")]
    CrlIssuer,
    #[error("the CRL signature does not verify")]
    CrlSignature,
    #[error("the CRL is stale (nextUpdate has passed)")]
    CrlStale,
}

pub(crate) fn reason_name(code: Option<u8>) -> &'static str {
    match code {
        Some(0) => "unspecified",
        Some(1) => "keyCompromise",
        Some(2) => "cACompromise",
        Some(3) => "affiliationChanged",
        Some(4) => "superseded",
        Some(5) => "cessationOfOperation",
        Some(6) => "certificateHold",
        Some(9) => "privilegeWithdrawn",
        Some(10) => "aACompromise",
        _ => "not given",
    }
}

pub(crate) fn revocation_urls(cert: &X509Certificate<'_>) -> (Option<String>, Option<String>) {
    let mut ocsp = None;
    let mut crl = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for desc in &aia.accessdescs {
                    if desc.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1"
                        && let GeneralName::URI(u) = desc.access_location
                    {
                        ocsp = Some(u.to_owned());
                    }
                }
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(x509_parser::extensions::DistributionPointName::FullName(names)) =
                        &point.distribution_point
                    {
                        for name in names {
                            if let GeneralName::URI(u) = name {
                                crl.get_or_insert_with(|| (*u).to_owned());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (ocsp, crl)
}

fn http_client(root: &[u8]) -> Result<reqwest::Client, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root.to_vec()))
        .map_err(|e| ClientError::Local(e.to_string()))?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Local(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| ClientError::Local(e.to_string()))
}

async fn check_ocsp(
    client: &reqwest::Client,
    url: &str,
    issuer: &[u8],
    serial: &[u8],
) -> Result<Status, StatusProblem> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| StatusProblem::NoRandomness)?;
    let request = ocsp::build_request(issuer, serial, Some(&nonce))?;
    let response = client
        .post(url)
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .map_err(StatusProblem::Unreachable)?;
    let body = response.bytes().await.map_err(StatusProblem::Body)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(ocsp::check_response(
        &body,
        issuer,
        serial,
        Some(&nonce),
        now,
    )?)
}

async fn check_crl(
    client: &reqwest::Client,
    url: &str,
    issuer: &X509Certificate<'_>,
    serial: &[u8],
) -> Result<Status, StatusProblem> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(StatusProblem::Unreachable)?;
    if !response.status().is_success() {
        return Err(StatusProblem::Status(response.status()));
    }
    let body = response.bytes().await.map_err(StatusProblem::Body)?;
    let (_, crl) = x509_parser::parse_x509_crl(&body).map_err(StatusProblem::NotCrl)?;
    if crl.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(StatusProblem::CrlIssuer);
    }
    crl.verify_signature(issuer.public_key())
        .map_err(|_| StatusProblem::CrlSignature)?;
    let now = x509_parser::time::ASN1Time::now();
    if crl.next_update().is_some_and(|next| next < now) {
        return Err(StatusProblem::CrlStale);
    }
    let entry = crl
        .iter_revoked_certificates()
        .find(|r| r.raw_serial() == serial);
    Ok(match entry {
        None => Status::Good,
        Some(entry) => Status::Revoked {
            at: entry.revocation_date.timestamp(),
            reason: entry.reason_code().map(|(_, code)| code.0),
        },
    })
}
