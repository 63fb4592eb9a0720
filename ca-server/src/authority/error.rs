//! Why an enrollment was refused. The API layer maps each variant to a status and stable code.

use iomt_core::identity::IdentityError;
use iomt_core::lint::Finding;

use super::attestation::AttestationProblem;
use super::certificate::BuildError;
use super::channel_binding::BindingProblem;
use super::csr::{CsrError, KeyNotAllowed};
use crate::storage::StoreError;

/// What went wrong with a one-time token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Expired,
    /// The token belongs to another device.
    OtherDevice,
    /// An operator cancelled the token (`token revoke`).
    Revoked,
    Unknown,
    Used,
}

/// Why a re-enrollment (`simplereenroll`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReenrollProblem {
    /// The current certificate expired longer ago than the policy's grace.
    Expired {
        not_after: i64,
        grace_days: u32,
    },
    /// The CSR subject or SAN would change the identity; that needs a new initial enrollment.
    IdentityChanged,
    /// The policy requires a new key and the CSR reuses one.
    KeyReuse {
        rule: String,
    },
    /// No client certificate was presented on the TLS connection.
    NoCertificate,
    /// The client certificate was not issued to a device by this CA.
    NotOurs {
        reason: String,
    },
    NotYetValid,
    OnHold,
    Revoked,
    /// This certificate was already renewed; use its successor.
    Superseded {
        serial: String,
    },
    /// The per-device minimum interval between re-enrollments has not passed.
    TooSoon {
        retry_after_secs: u64,
    },
}

impl std::fmt::Display for ReenrollProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReenrollProblem::Expired { not_after, grace_days } => write!(
                f,
                "the current certificate expired at {} and the policy allows {grace_days} day(s) of grace; the device needs a new initial enrollment",
                time::OffsetDateTime::from_unix_timestamp(*not_after).map(|t| t.to_string()).unwrap_or_default()
            ),
            ReenrollProblem::IdentityChanged => f.write_str(
                "the new certificate would carry a different identity than the current one; identity changes need a new initial enrollment",
            ),
            ReenrollProblem::KeyReuse { rule } => write!(f, "the CSR reuses a key already certified for this device, but {rule}; generate a new key"),
            ReenrollProblem::NoCertificate => f.write_str("re-enrollment is authorized by the device's current certificate: present it as the TLS client certificate"),
            ReenrollProblem::NotOurs { reason } => write!(f, "the client certificate is not a device certificate of this CA: {reason}"),
            ReenrollProblem::NotYetValid => f.write_str("the current certificate is not valid yet (check the device clock)"),
            ReenrollProblem::OnHold => f.write_str("the current certificate is on hold; an operator must release it first"),
            ReenrollProblem::Revoked => f.write_str("the current certificate is revoked; the device needs a new initial enrollment"),
            ReenrollProblem::Superseded { serial } => write!(f, "certificate {serial} was already renewed; re-enroll with its successor"),
            ReenrollProblem::TooSoon { retry_after_secs } => write!(f, "this device re-enrolled too recently; retry in {retry_after_secs} s"),
        }
    }
}

/// Why a station could not authorize an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StationProblem {
    Disabled {
        station: String,
    },
    /// The client certificate is not a station certificate of this CA.
    NotAStationCertificate {
        reason: String,
    },
    /// The device's product policy does not accept station authorization.
    NotAllowed {
        product: String,
    },
    OutOfScope {
        station: String,
        product: String,
    },
    RateLimited {
        station: String,
        retry_after_secs: u64,
    },
    Revoked {
        station: String,
    },
}

impl std::fmt::Display for StationProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StationProblem::Disabled { station } => write!(f, "station {station} is disabled"),
            StationProblem::NotAStationCertificate { reason } => write!(
                f,
                "the client certificate is not a station certificate of this CA: {reason}"
            ),
            StationProblem::NotAllowed { product } => write!(
                f,
                "product `{product}` does not accept enrollment authorized by a station"
            ),
            StationProblem::OutOfScope { station, product } => write!(
                f,
                "station {station} is not authorized for product `{product}`"
            ),
            StationProblem::RateLimited {
                station,
                retry_after_secs,
            } => write!(
                f,
                "station {station} reached its hourly issuance limit; retry in {retry_after_secs} s"
            ),
            StationProblem::Revoked { station } => {
                write!(f, "the certificate of station {station} is revoked")
            }
        }
    }
}

/// A refused or failed enrollment.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("a certificate was built that breaks the profile ({}); nothing was issued", findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Defect { findings: Vec<Finding> },
    #[error(
        "device {serial} already holds valid certificate {certificate}; a second initial enrollment needs an operator to re-provision it (`ca-server device reprovision {serial}`)"
    )]
    AlreadyEnrolled { serial: String, certificate: String },
    #[error("{0}")]
    Attestation(#[from] AttestationProblem),
    #[error("{0}")]
    ChannelBinding(#[from] BindingProblem),
    #[error("device {serial} is disabled")]
    DeviceDisabled { serial: String },
    #[error(
        "device {serial} is recalled: no certificate is issued to it until the recall is released"
    )]
    DeviceRecalled { serial: String },
    #[error(
        "the public key is already certified for device {holder}; every device needs its own key"
    )]
    DuplicateKey { holder: String, same_device: bool },
    #[error("the registration record cannot produce a valid identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    InvalidCsr(#[from] CsrError),
    #[error("{0}")]
    KeyNotAllowed(#[from] KeyNotAllowed),
    #[error("{0}")]
    Reenroll(ReenrollProblem),
    #[error("{0}")]
    Station(StationProblem),
    #[error(
        "this EST path is for `{label}`, but device {serial} is registered under product `{product}`"
    )]
    LabelMismatch {
        label: String,
        serial: String,
        product: String,
    },
    #[error("product `{product}` enrolls only through {method}; one-time tokens are not accepted")]
    TokenNotAllowed {
        product: String,
        method: &'static str,
    },
    #[error("{}", match problem {
        TokenProblem::Expired => "the enrollment token has expired; ask for a new one",
        TokenProblem::OtherDevice => "the enrollment token was issued for a different device serial",
        TokenProblem::Revoked => "the enrollment token was revoked by the CA's operator; ask for a new one",
        TokenProblem::Unknown => "the enrollment token is not known to this CA",
        TokenProblem::Used => "the enrollment token was already used; tokens are single-use",
    })]
    Token { problem: TokenProblem },
    #[error("device {serial} is not registered")]
    UnknownDevice { serial: String },
    #[error("no product or level is called `{label}`")]
    UnknownLabel { label: String },
    #[error(
        "device {serial} is registered under product `{product}`, which no loaded policy defines"
    )]
    UnknownProduct { serial: String, product: String },
    #[error("certificate build failed: {0}")]
    Build(#[from] BuildError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
