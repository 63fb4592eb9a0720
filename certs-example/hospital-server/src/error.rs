//! The crate's error: everything that stops the server from starting or a CRL refresh from
//! completing. Rejected devices are not errors; they are [`crate::Decision`]s.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::crl::CrlError;

/// Why the server could not start, or why a CRL refresh did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum HospitalError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// One or more CRLs could not be fetched or were unusable; the ones held before stay in use.
    #[error("CRL refresh failed: {}", join(.0))]
    CrlRefresh(Vec<CrlError>),
    /// The HTTP client for fetching CRLs could not be built.
    #[error("cannot build the HTTP client for CRLs: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// An `--accept-policy` value is not a dotted-decimal OID.
    #[error("invalid policy OID `{0}` (expected dotted decimal, e.g. 1.3.6.1.4.1.32473.7.1.3)")]
    InvalidPolicyOid(String),
    /// No accepted level policy OID was configured: every device would be rejected.
    #[error("no accepted policy OID: give at least one --accept-policy")]
    NoAcceptedPolicy,
    /// A PEM file holds no certificate.
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    /// No CRL URL was configured: revocation would not be checked at all, so this is refused.
    #[error(
        "no CRL URL: give --crl-url for the issuing CA's CRL and the root's CRL (without CRLs revocation is not checked)"
    )]
    NoCrlUrl,
    /// A PEM file (certificate or key) could not be read or decoded.
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate in the `--ca-cert` file is not usable as a trust anchor.
    #[error("{path}: not usable as a trust anchor: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The TLS server configuration was refused (for example the key does not match the cert).
    #[error("TLS server configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// The client-certificate verifier could not be built (for example a CRL rustls refuses).
    #[error("client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

fn join(errors: &[CrlError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
