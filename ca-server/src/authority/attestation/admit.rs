//! Step 2 of an attested enrollment, run by every route after the CSR is vetted: the evidence
//! in the CSR is checked against the challenge it answers, the EK chain, the CSR key and the TPM
//! the device is bound to. What the issuance then consumes and binds is returned.

use iomt_core::attestation::{Public, parse_evidence};
use iomt_core::policy::{AuthorizationFactor, Policy, Strength};
use time::OffsetDateTime;

use super::{AttestationProblem, certify, ek};
use crate::authority::{Authority, Csr, EnrollError};
use crate::storage::{AttestationClaim, AuditAction, AuditEvent, Device};

/// A key the CA verified to be resident in a TPM.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Consumed (challenge) and bound (EK) by the issuance transaction.
    pub claim: AttestationClaim,
    /// SHA-256 of the evidence attribute, for the audit trail.
    pub evidence_sha256: Vec<u8>,
    /// The TPM manufacturer named by the EK certificate.
    pub manufacturer: String,
}

/// True when the product's policy requires verified key attestation (docs/PROFILE.md §6.1).
pub fn requires_attestation(policy: &Policy) -> bool {
    policy
        .enrollment
        .authorization_all_of
        .contains(&AuthorizationFactor::KeyAttestation)
        || policy.key_protection.attestation == Strength::Required
}

impl Authority {
    /// Verifies the CSR's attestation evidence. `Ok(None)` when the CSR carries none and the
    /// policy does not require it; evidence that is present is always checked, whatever the
    /// policy says, so a certificate never rests on evidence that failed.
    pub(in crate::authority) async fn attest(
        &self,
        policy: &Policy,
        device: &Device,
        csr: &Csr,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Attested>, EnrollError> {
        let Some(der) = csr.evidence() else {
            return if requires_attestation(policy) {
                Err(AttestationProblem::Missing.into())
            } else {
                Ok(None)
            };
        };
        let evidence = parse_evidence(der).map_err(AttestationProblem::from)?;
        let secret = &evidence.certify.attest.extra_data;
        let secret_sha256 = ring::digest::digest(&ring::digest::SHA256, secret)
            .as_ref()
            .to_vec();
        let challenge = self
            .store
            .challenge(&secret_sha256)
            .await?
            .filter(|c| c.device_serial == device.serial)
            .ok_or(AttestationProblem::ChallengeUnknown)?;
        if challenge.used_at.is_some() {
            return Err(AttestationProblem::ChallengeUsed.into());
        }
        if challenge.expires_at <= now.unix_timestamp() {
            return Err(AttestationProblem::ChallengeExpired.into());
        }
        let ak = Public::parse(&challenge.ak_public).map_err(AttestationProblem::from)?;
        certify::verify_certify(&evidence, &ak, secret, &csr.spki_der)?;

        // The EK the challenge was sealed to, still chaining to a trusted root now.
        let sha256 = |der: &[u8]| ring::digest::digest(&ring::digest::SHA256, der);
        let (ek_certificate, chain): (Vec<_>, Vec<_>) = evidence
            .certificates
            .iter()
            .cloned()
            .partition(|c| sha256(c).as_ref() == challenge.ek_sha256.as_slice());
        let ek_certificate = ek_certificate
            .first()
            .ok_or(AttestationProblem::EkMismatch)?;
        let roots: Vec<Vec<u8>> = self
            .store
            .tpm_roots()
            .await?
            .into_iter()
            .map(|r| r.der)
            .collect();
        let verified = ek::verify_ek(ek_certificate, &chain, &roots, None, now.unix_timestamp())?;

        if let Some(bound) = self.store.device_tpm(&device.serial).await?
            && bound.ek_sha256 != verified.certificate_sha256
        {
            self.refuse_other_tpm(device, actor, &bound.ek_sha256, &verified, now)
                .await?;
            return Err(AttestationProblem::TpmMismatch {
                serial: device.serial.clone(),
                bound: hex::encode(&bound.ek_sha256),
            }
            .into());
        }
        Ok(Some(Attested {
            claim: AttestationClaim {
                challenge_sha256: secret_sha256,
                ek_sha256: verified.certificate_sha256.clone(),
                hw_serial: verified.hw_serial.clone(),
            },
            evidence_sha256: sha256(der).as_ref().to_vec(),
            manufacturer: verified.manufacturer,
        }))
    }

    /// Audits an attested enrollment of a device bound to another TPM (a cloned serial, or a
    /// replaced board that needs `device reprovision`).
    async fn refuse_other_tpm(
        &self,
        device: &Device,
        actor: &str,
        bound: &[u8],
        presented: &ek::VerifiedEk,
        now: OffsetDateTime,
    ) -> Result<(), EnrollError> {
        tracing::warn!(device = %device.serial, actor, "attested enrollment from another TPM refused");
        self.store
            .append_audit(&[AuditEvent {
                at: now.unix_timestamp(),
                actor: actor.to_owned(),
                action: AuditAction::EnrollmentRefusedTpm.into(),
                object: format!("device:{}", device.serial),
                details: serde_json::json!({
                    "reason": "device is bound to another TPM",
                    "bound_ek_sha256": hex::encode(bound),
                    "presented_ek_sha256": presented.id(),
                    "presented_manufacturer": presented.manufacturer,
                })
                .to_string(),
            }])
            .await?;
        Ok(())
    }
}
