//! Enrollment with a one-time token (DESIGN.md flow 3): HTTP Basic `serial:token` on
//! `simpleenroll`. The token is consumed in the issuance transaction; the same token and key
//! presented again after the CA committed get the same certificate again.

use time::OffsetDateTime;

use super::replay::{self, Attempt, Repeat};
use super::{
    Authority, Authorization, Csr, EnrollError, IssueRequest, Issued, TokenProblem, VettedCsr,
    allow_token_enrollment, vet_csr,
};
use crate::auth::token;
use crate::storage::{Device, FactsQuery, TokenRecord};
use iomt_core::policy::{AuthorizationFactor, Level, Policy};

/// A token-authorized enrollment request, parsed from the transport.
pub struct TokenEnrollment<'a> {
    /// The `/.well-known/est/<label>/` segment, if any.
    pub label: Option<&'a str>,
    pub serial: &'a str,
    /// The secret; only its hash is ever looked up or stored.
    pub token: &'a str,
    pub csr_der: &'a [u8],
    /// The connection's `tls-exporter` value (`None` when it has none, e.g. TLS 1.2).
    pub channel_binding: Option<&'a iomt_core::channel_binding::Exporter>,
}

impl Authority {
    /// Enrolls a device with a one-time token (DESIGN.md flow 3).
    #[tracing::instrument(skip_all, fields(serial = request.serial, label = request.label))]
    pub async fn enroll_with_token(
        &self,
        request: TokenEnrollment<'_>,
    ) -> Result<Issued, EnrollError> {
        replay::settle(|| self.token_attempt(&request)).await
    }

    async fn token_attempt(&self, request: &TokenEnrollment<'_>) -> Result<Issued, Attempt> {
        let now = OffsetDateTime::now_utc();
        let token_hash = token::hash(request.token);
        // The CSR is parsed up front only so its key is looked up with everything else; a
        // CSR that does not parse is still reported after the device and token checks.
        let csr = Csr::parse(request.csr_der);
        let spki = csr.as_ref().ok().map(Csr::spki_sha256);
        let facts = self
            .commits
            .facts(FactsQuery {
                serial: request.serial.to_owned(),
                token_hash: Some(token_hash.clone()),
                spki_sha256: spki,
                now: now.unix_timestamp(),
            })
            .await?;
        if facts.is_station
            && let Some(station) = self.store.station(request.serial).await?
        {
            return Ok(self.enroll_station_key(station, request, now).await?);
        }
        // The token is judged first: without one for this serial, a stranger learns nothing
        // about the device (whether it exists, is disabled, or enrolls another way).
        let used = match check_token(facts.token.as_ref(), request.serial, now) {
            Ok(()) => None,
            Err(
                refused @ EnrollError::Token {
                    problem: TokenProblem::Used,
                },
            ) => Some(refused),
            Err(refused) => return Err(refused.into()),
        };
        let (device, policy) = self.check_registered(request.serial, facts.device)?;
        if let Some(label) = request.label {
            self.check_label(label, &device, policy)?;
        }
        // At Substantial a token may stand in for the station when the key is proven to be in a
        // TPM: decided below, on the evidence.
        let needs_attestation = match allow_token_enrollment(policy) {
            Ok(()) => None,
            Err(EnrollError::TokenNotAllowed { product, .. }) if token_with_attestation(policy) => {
                Some(EnrollError::TokenNotAllowed {
                    product,
                    method: "a manufacturing station's mutual-TLS certificate, or a token with \
                             TPM key attestation evidence in the CSR",
                })
            }
            Err(refused) => return Err(refused.into()),
        };
        if let Some(refused) = used {
            // A used token: the same request again gets the certificate it was issued.
            let resent = match (facts.token.as_ref(), csr) {
                (Some(used), Ok(csr)) => {
                    self.resend_for_token(&device, policy, used, csr, now)
                        .await?
                }
                _ => None,
            };
            return resent.ok_or(Attempt::Refused(refused));
        }

        let VettedCsr {
            csr,
            sunset,
            identity,
            spki_sha256,
        } = vet_csr(policy, &device, csr?)?;
        super::channel_binding::check(policy, &csr, request.channel_binding)?;
        check_key_unused(facts.key_holder, &device)?;
        let actor = format!("device:{}", device.serial);
        self.check_not_enrolled(&device, facts.held, &actor, now)
            .await?;
        let attested = self.attest(policy, &device, &csr, &actor, now).await?;
        if let Some(refused) = needs_attestation
            && attested.is_none()
        {
            return Err(refused.into());
        }

        self.issue(IssueRequest {
            device: &device,
            policy,
            identity: &identity,
            csr: &csr,
            sunset,
            spki_sha256,
            now,
            authorization: Authorization::Token(token_hash),
            same_identity_as: None,
            attested,
        })
        .await
    }

    /// A used token presented again, within its lifetime, with a CSR for the key it was used
    /// for: the certificate issued then (a CSR that fails any check gets the token refusal).
    async fn resend_for_token(
        &self,
        device: &Device,
        policy: &Policy,
        used: &TokenRecord,
        csr: Csr,
        now: OffsetDateTime,
    ) -> Result<Option<Issued>, EnrollError> {
        let Some(used_at) = used.used_at else {
            return Ok(None);
        };
        if used.expires_at <= now.unix_timestamp() {
            return Ok(None);
        }
        let Ok(vetted) = vet_csr(policy, device, csr) else {
            return Ok(None);
        };
        // The certificate was issued by the request that used the token: after the token was
        // created, and not after the commit that marked it used.
        self.resend(
            Repeat {
                device,
                spki_sha256: &vetted.spki_sha256,
                authorized_by: "token",
                issued_between: (used.created_at, used_at),
                actor: &format!("device:{}", device.serial),
            },
            now,
        )
        .await
    }
}

/// True when a token with verified TPM key attestation authorizes enrollment although the
/// policy names a station (docs/PROFILE.md §6.1): at Substantial, for products whose key may
/// live in a TPM 2.0. The station's part there is to vouch for a hardware key, which the TPM's
/// evidence proves directly; the token still names the one registered device. Not at High,
/// whose profile requires the station as well as the attestation.
pub fn token_with_attestation(policy: &Policy) -> bool {
    policy.policy.level == Level::Substantial
        && policy
            .key_protection
            .allowed_modules
            .iter()
            .any(|module| module == "tpm2")
}

/// True when tokens may be issued for the product's devices: the policy accepts them, or they
/// are accepted with TPM attestation ([`token_with_attestation`]).
pub fn tokens_accepted(policy: &Policy) -> bool {
    let enrollment = &policy.enrollment;
    let by_policy = enrollment
        .authorization_any_of
        .contains(&AuthorizationFactor::OneTimeToken)
        && !enrollment
            .authorization_all_of
            .contains(&AuthorizationFactor::StationMtls);
    by_policy || token_with_attestation(policy)
}

/// The token must exist, belong to the serial asked for, and be unused, unrevoked and unexpired.
pub(super) fn check_token(
    token: Option<&TokenRecord>,
    serial: &str,
    now: OffsetDateTime,
) -> Result<(), EnrollError> {
    let problem = match token {
        None => Some(TokenProblem::Unknown),
        Some(record) if record.device_serial != serial => Some(TokenProblem::OtherDevice),
        Some(record) if record.used_at.is_some() => Some(TokenProblem::Used),
        Some(record) if record.revoked_at.is_some() => Some(TokenProblem::Revoked),
        Some(record) if record.expires_at <= now.unix_timestamp() => Some(TokenProblem::Expired),
        Some(_) => None,
    };
    match problem {
        Some(problem) => Err(EnrollError::Token { problem }),
        None => Ok(()),
    }
}

/// A public key certifies one device only: refused when any device already holds it.
pub(super) fn check_key_unused(
    key_holder: Option<String>,
    device: &Device,
) -> Result<(), EnrollError> {
    match key_holder {
        None => Ok(()),
        Some(holder) => Err(EnrollError::DuplicateKey {
            same_device: holder == device.serial,
            holder,
        }),
    }
}
