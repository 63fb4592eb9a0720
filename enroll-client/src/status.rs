//! The device asks the CA's OCSP responder (RFC 6960) about its own certificate, so a revoked or
//! held device learns it within a day instead of at its next renewal months later.

use std::path::Path;
use std::time::Duration;

use iomt_core::ocsp::{self, Status};
use reqwest::header;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::chain::read_root;
use crate::clock;
use crate::enroll::Server;
use crate::error::ClientError;
use crate::est::{BodyError, read_limited};
use crate::keystore;

/// An OCSP response for one certificate is a few hundred bytes; more is refused while reading.
const OCSP_LIMIT: usize = 64 * 1024;
const OCSP_TIMEOUT: Duration = Duration::from_secs(15);
/// RFC 5280 reason code of a hold.
const CERTIFICATE_HOLD: u8 = 6;

/// What the responder says about the device's current certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnStatus {
    Good,
    /// On hold (revoked with reason certificateHold): it may be released.
    OnHold,
    /// Revoked for good, with the reason's name.
    Revoked {
        reason: String,
    },
    /// No usable answer (no responder named, unreachable, unknown, unverifiable): why.
    Unknown(String),
}

/// Checks the current certificate in `dir` at the OCSP URL its AIA names.
pub async fn check_own_status(server: &Server, dir: &Path) -> Result<OwnStatus, ClientError> {
    let root = read_root(&server.ca_cert)?;
    let current = keystore::load(dir)?;
    let first = |text: &str, what: &str| -> Result<Vec<u8>, ClientError> {
        pem::parse_many(text)
            .ok()
            .and_then(|blocks| blocks.into_iter().next())
            .map(pem::Pem::into_contents)
            .ok_or_else(|| ClientError::Local(format!("the current {what} cannot be read")))
    };
    let leaf = first(&current.cert_pem, "certificate")?;
    let issuer = first(&current.chain_pem, "chain")?;
    let (_, cert) = X509Certificate::from_der(&leaf)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    let (Some(url), _) = crate::verify::revocation_urls(&cert) else {
        return Ok(OwnStatus::Unknown(
            "the certificate names no OCSP responder".into(),
        ));
    };
    let serial = cert.raw_serial().to_vec();
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| ClientError::Local("no randomness for the OCSP nonce".into()))?;
    let request = ocsp::build_request(&issuer, &serial, Some(&nonce))
        .map_err(|e| ClientError::Local(format!("OCSP request: {e}")))?;
    let trusted = crate::trust::Trust::load(&root, dir)?;
    let tls = crate::tls::client_config_trusting(
        trusted.roots(),
        &server.ca_cert.display().to_string(),
        None,
    )?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(OCSP_TIMEOUT)
        .build()
        .map_err(|e| ClientError::Local(format!("HTTP client: {e}")))?;
    let response = match http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/ocsp-request")
        .body(request)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return Ok(OwnStatus::Unknown(format!("{url} unreachable: {error}"))),
    };
    if let Some(date) = response
        .headers()
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
    {
        clock::record_ca_date(date);
    }
    if !response.status().is_success() {
        return Ok(OwnStatus::Unknown(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    let body = match read_limited(response, OCSP_LIMIT).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { read }) => {
            return Ok(OwnStatus::Unknown(format!(
                "{url}: the answer passed {OCSP_LIMIT} bytes ({read} read)"
            )));
        }
        Err(BodyError::Transport(error)) => {
            return Ok(OwnStatus::Unknown(format!("{url}: {error}")));
        }
    };
    Ok(
        match ocsp::check_response(&body, &issuer, &serial, Some(&nonce), clock::ca_now()) {
            Ok(Status::Good) => OwnStatus::Good,
            Ok(Status::Revoked {
                reason: Some(CERTIFICATE_HOLD),
                ..
            }) => OwnStatus::OnHold,
            Ok(Status::Revoked { reason, .. }) => OwnStatus::Revoked {
                reason: crate::verify::reason_name(reason).to_owned(),
            },
            Ok(Status::Unknown) => OwnStatus::Unknown(format!(
                "{url}: the responder does not know the certificate"
            )),
            Err(problem) => OwnStatus::Unknown(format!("{url}: {problem}")),
        },
    )
}
