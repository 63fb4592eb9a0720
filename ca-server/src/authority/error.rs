//! Why an enrollment was refused. The API layer maps each variant to a status and stable code.

use iomt_core::identity::IdentityError;
use iomt_core::lint::Finding;

use super::certificate::BuildError;
use super::csr::{CsrError, KeyNotAllowed};
use crate::storage::StoreError;

/// What went wrong with a one-time token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Expired,
    /// The token belongs to another device.
    OtherDevice,
    Unknown,
    Used,
}

/// A refused or failed enrollment.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("a certificate was built that breaks the profile ({}); nothing was issued", findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Defect { findings: Vec<Finding> },
    #[error("device {serial} is disabled")]
    DeviceDisabled { serial: String },
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
    #[error(
        "this EST path is for `{label}`, but device {serial} is registered under product `{product}`"
    )]
    LabelMismatch {
        label: String,
        serial: String,
        product: String,
    },
    #[error(
        "product `{product}` requires {requirement}, which this CA cannot verify yet; nothing is issued without it"
    )]
    RequirementUnsupported {
        product: String,
        requirement: &'static str,
    },
    #[error("product `{product}` enrolls only through {method}; one-time tokens are not accepted")]
    TokenNotAllowed {
        product: String,
        method: &'static str,
    },
    #[error("{}", match problem {
        TokenProblem::Expired => "the enrollment token has expired; ask for a new one",
        TokenProblem::OtherDevice => "the enrollment token was issued for a different device serial",
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
