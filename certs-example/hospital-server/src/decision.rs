//! The outcome of one connection: accepted with the device's identity, or rejected with a reason
//! that says what to do; and the mapping from rustls handshake errors to those reasons.

use std::fmt;

use crate::identity::{DeviceIdentity, PolicyOid};
use crate::tls::IssuingCaMissing;

/// What the server decided about one connection (also logged as one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The device is trusted: logged as `accepted serial=… cn=… product=… policy=…`.
    Accepted(DeviceIdentity),
    /// The connection was refused: logged as `rejected: <reason>`.
    Rejected(RejectReason),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Accepted(identity) => write!(f, "accepted {identity}"),
            Decision::Rejected(reason) => write!(f, "rejected: {reason}"),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The certificate is past its notAfter (or not yet valid by its dates).
    #[error("certificate expired")]
    Expired,
    /// The client sent its certificate without the issuing CA certificate that links it to the
    /// root (a device must present `cert.pem` followed by the first certificate of `chain.pem`).
    #[error(
        "no path to the trusted IoMT root: the client sent no issuing CA certificate (present cert.pem followed by the issuing CA from chain.pem)"
    )]
    IssuingCaMissing,
    /// The client sent no certificate (client authentication is mandatory).
    #[error("no client certificate presented")]
    NoCertificate,
    /// The certificate names no device serial (subject serialNumber), so it identifies no asset.
    #[error("no device serial (subject serialNumber, 2.5.4.5) in the certificate")]
    NoDeviceSerial,
    /// Any other failure, in rustls's words.
    #[error("{0}")]
    Other(String),
    /// The chain does not lead to the trusted root: a certificate of another CA.
    #[error("not issued under the trusted IoMT root (other CA)")]
    OtherCa,
    /// No current CRL covers a certificate of the chain (a missing `--crl-url`, or a CRL past its
    /// nextUpdate because refreshing keeps failing).
    #[error(
        "revocation status unknown (no current CRL for the issuer: check --crl-url and the CRL refresh warnings)"
    )]
    RevocationUnknown,
    /// A certificate of the chain is on its issuer's CRL: revoked, or on hold.
    #[error("certificate revoked (or on hold)")]
    Revoked,
    /// The certificate asserts none of the accepted level policy OIDs.
    #[error(
        "wrong level: policy OIDs [{}] not in the accepted set [{}]",
        .presented.join(", "),
        .accepted.iter().map(PolicyOid::as_str).collect::<Vec<_>>().join(", ")
    )]
    WrongLevel {
        presented: Vec<String>,
        accepted: Vec<PolicyOid>,
    },
}

impl RejectReason {
    /// Classifies a failed `TlsAcceptor::accept`: tokio-rustls wraps the rustls error in an
    /// `io::Error`; anything else (a reset, a timeout) is reported as it is.
    pub fn from_handshake_error(error: &std::io::Error) -> RejectReason {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => RejectReason::from(tls),
            None if error.kind() == std::io::ErrorKind::UnexpectedEof => RejectReason::Other(
                "the client closed the connection during the TLS handshake".to_owned(),
            ),
            None => RejectReason::Other(format!("TLS handshake failed: {error}")),
        }
    }
}

impl From<&rustls::Error> for RejectReason {
    fn from(error: &rustls::Error) -> RejectReason {
        use rustls::CertificateError as C;
        use rustls::Error as E;
        match error {
            E::InvalidCertificate(C::Revoked) => RejectReason::Revoked,
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => RejectReason::Expired,
            E::InvalidCertificate(C::UnknownIssuer) => RejectReason::OtherCa,
            E::InvalidCertificate(C::Other(other)) if other.0.is::<IssuingCaMissing>() => {
                RejectReason::IssuingCaMissing
            }
            E::InvalidCertificate(
                C::UnknownRevocationStatus
                | C::ExpiredRevocationList
                | C::ExpiredRevocationListContext { .. },
            ) => RejectReason::RevocationUnknown,
            E::NoCertificatesPresented => RejectReason::NoCertificate,
            E::AlertReceived(alert) => RejectReason::Other(format!(
                "the client aborted the handshake with alert {alert:?} (does it trust this server's certificate?)"
            )),
            other => RejectReason::Other(format!("TLS handshake failed: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::{AlertDescription, CertificateError, Error};

    use super::*;

    #[test]
    fn rustls_errors_map_to_reasons() {
        let now = rustls_pki_types::UnixTime::now();
        for (error, expected) in [
            (
                Error::InvalidCertificate(CertificateError::Revoked),
                RejectReason::Revoked,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                RejectReason::Expired,
            ),
            (
                Error::InvalidCertificate(CertificateError::ExpiredContext {
                    time: now,
                    not_after: now,
                }),
                RejectReason::Expired,
            ),
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                RejectReason::OtherCa,
            ),
            (
                Error::InvalidCertificate(CertificateError::UnknownRevocationStatus),
                RejectReason::RevocationUnknown,
            ),
            (
                Error::InvalidCertificate(CertificateError::ExpiredRevocationListContext {
                    time: now,
                    next_update: now,
                }),
                RejectReason::RevocationUnknown,
            ),
            (Error::NoCertificatesPresented, RejectReason::NoCertificate),
            (
                Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    std::sync::Arc::new(IssuingCaMissing),
                ))),
                RejectReason::IssuingCaMissing,
            ),
        ] {
            assert_eq!(RejectReason::from(&error), expected, "{error}");
        }
        let alert = RejectReason::from(&Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(alert.to_string().contains("UnknownCA"), "{alert}");
    }

    #[test]
    fn handshake_io_errors_are_looked_through() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::InvalidCertificate(CertificateError::Revoked),
        );
        assert_eq!(
            RejectReason::from_handshake_error(&wrapped),
            RejectReason::Revoked
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            RejectReason::from_handshake_error(&reset),
            RejectReason::Other(_)
        ));
    }

    #[test]
    fn log_lines_read_as_specified() {
        assert_eq!(
            Decision::Rejected(RejectReason::Revoked).to_string(),
            "rejected: certificate revoked (or on hold)"
        );
        assert_eq!(
            Decision::Rejected(RejectReason::OtherCa).to_string(),
            "rejected: not issued under the trusted IoMT root (other CA)"
        );
        let wrong = RejectReason::WrongLevel {
            presented: vec![
                "1.3.6.1.4.1.32473.7.1.1".into(),
                "1.3.6.1.4.1.32473.98.1.1".into(),
            ],
            accepted: vec!["1.3.6.1.4.1.32473.7.1.3".parse().unwrap()],
        };
        assert_eq!(
            Decision::Rejected(wrong).to_string(),
            "rejected: wrong level: policy OIDs [1.3.6.1.4.1.32473.7.1.1, 1.3.6.1.4.1.32473.98.1.1] \
             not in the accepted set [1.3.6.1.4.1.32473.7.1.3]"
        );
    }
}
