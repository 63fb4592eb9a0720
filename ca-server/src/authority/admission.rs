//! Admission rules from the product policy: which authorizations a product accepts. The
//! evidence a policy may require besides (key attestation, TLS channel binding) is verified per
//! request (`attestation/`, `channel_binding.rs`), and met or refused on its merits.

use iomt_core::policy::{AuthorizationFactor, Policy};
use time::OffsetDateTime;

use super::{EnrollError, StationProblem};
use crate::storage::StationQuota;

/// Seconds until the next UTC hour, when a station's hourly count starts again.
pub(super) fn seconds_to_next_hour(now: OffsetDateTime) -> u64 {
    let now = now.unix_timestamp();
    (StationQuota::window_of(now) + 3600 - now).unsigned_abs()
}

/// A product's policy must let a one-time token authorize enrollment on its own
/// (docs/PROFILE.md §6.1; IOMT-PRC-01).
pub fn allow_token_enrollment(policy: &Policy) -> Result<(), EnrollError> {
    let product = policy.policy.id.clone();
    let enrollment = &policy.enrollment;
    if enrollment
        .authorization_all_of
        .contains(&AuthorizationFactor::StationMtls)
        || !enrollment
            .authorization_any_of
            .contains(&AuthorizationFactor::OneTimeToken)
    {
        return Err(EnrollError::TokenNotAllowed {
            product,
            method: "a manufacturing station's mutual-TLS certificate",
        });
    }
    Ok(())
}

/// A product's policy must accept a station's mutual-TLS certificate as authorization.
pub fn allow_station_enrollment(policy: &Policy) -> Result<(), EnrollError> {
    let enrollment = &policy.enrollment;
    let factor = AuthorizationFactor::StationMtls;
    if enrollment.authorization_all_of.contains(&factor)
        || enrollment.authorization_any_of.contains(&factor)
    {
        Ok(())
    } else {
        Err(EnrollError::Station(StationProblem::NotAllowed {
            product: policy.policy.id.clone(),
        }))
    }
}

#[cfg(test)]
#[path = "tests/admission.rs"]
mod tests;
