//! TLS channel binding (RFC 9266 `tls-exporter`, docs/PROFILE.md §6.1): a CSR that carries a
//! challengePassword must carry the exporter value of the TLS connection it arrived on
//! ([`iomt_core::channel_binding`]), and a product whose policy requires channel binding gets
//! nothing without one. The CSR's signature is verified first, so the binding is the device
//! key's: a CSR relayed from another connection (a machine in the middle) does not match.

use iomt_core::channel_binding::{self, Exporter};
use iomt_core::policy::{Policy, Strength};

use super::{Csr, EnrollError};

/// Why a channel binding was refused. Each variant has its stable `csr.channel_binding_*` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingProblem {
    /// The CSR carries a challengePassword, but not the exporter value of this connection.
    #[error(
        "the CSR's challengePassword is not the tls-exporter value of this TLS connection (RFC 9266): build the CSR on the connection that sends it"
    )]
    Mismatch,
    /// The policy requires a binding and the CSR carries none.
    #[error(
        "this product requires TLS channel binding: the CSR must carry the connection's tls-exporter value (RFC 9266) in its challengePassword"
    )]
    Missing,
    /// The connection has no exporter value to bind to (it is not TLS 1.3).
    #[error(
        "channel binding needs a TLS 1.3 connection (RFC 9266 tls-exporter); this one has no binding"
    )]
    Unavailable,
}

/// Checks the CSR's channel binding against the connection's exporter (`None` when the
/// connection has none). A binding that is present is always checked, whatever the policy says;
/// a missing one is refused only where the policy requires it.
pub(super) fn check(
    policy: &Policy,
    csr: &Csr,
    connection: Option<&Exporter>,
) -> Result<(), EnrollError> {
    let required = policy.enrollment.channel_binding == Strength::Required;
    let problem = match (csr.challenge_password(), connection) {
        (None, _) if required => BindingProblem::Missing,
        (None, _) => return Ok(()),
        (Some(_), None) => BindingProblem::Unavailable,
        (Some(text), Some(expected)) => match channel_binding::decode(text) {
            Some(carried) if carried == *expected => return Ok(()),
            _ => BindingProblem::Mismatch,
        },
    };
    Err(problem.into())
}

#[cfg(test)]
#[path = "tests/channel_binding.rs"]
mod tests;
