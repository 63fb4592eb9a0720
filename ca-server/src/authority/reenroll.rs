//! Re-enrollment (RFC 7030 §4.2.2): authorized by the device's current certificate over mutual
//! TLS; the new certificate carries exactly the current identity and supersedes the old one.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::replay::{self, Attempt, Repeat};
use super::{
    Authority, Authorization, EnrollError, IssueRequest, Issued, ReenrollProblem, VettedCsr,
    vet_csr,
};
use crate::storage::{CertificateRecord, CertificateStatus, Device};
use iomt_core::policy::{Policy, Strength};

/// A `simplereenroll` request, parsed from the transport.
pub struct Reenrollment<'a> {
    pub label: Option<&'a str>,
    /// The client certificate chain the TLS peer presented (leaf first).
    pub peer_chain: Option<&'a [CertificateDer<'static>]>,
    pub csr_der: &'a [u8],
    /// The connection's `tls-exporter` value (`None` when it has none).
    pub channel_binding: Option<&'a iomt_core::channel_binding::Exporter>,
}

fn refuse(problem: ReenrollProblem) -> EnrollError {
    EnrollError::Reenroll(problem)
}

impl Authority {
    /// Re-enrolls a device with its current certificate (DESIGN.md flow 5).
    #[tracing::instrument(skip_all, fields(label = request.label))]
    pub async fn reenroll(&self, request: Reenrollment<'_>) -> Result<Issued, EnrollError> {
        replay::settle(|| self.reenroll_attempt(&request)).await
    }

    async fn reenroll_attempt(&self, request: &Reenrollment<'_>) -> Result<Issued, Attempt> {
        let now = OffsetDateTime::now_utc();
        let leaf = request
            .peer_chain
            .and_then(|chain| chain.first())
            .ok_or_else(|| refuse(ReenrollProblem::NoCertificate))?;
        let current = self.current_certificate(leaf, now).await?;
        let (device, policy) = self.registered_device(&current.device_serial).await?;
        if let Some(label) = request.label {
            self.check_label(label, &device, policy)?;
        }
        if self.store.successor(&current.serial).await?.is_some() {
            return Ok(self
                .resend_successor(&current, &device, policy, request.csr_der, now)
                .await?);
        }
        check_validity(&current, policy, now)?;
        check_interval(&current, policy, now)?;

        let VettedCsr {
            csr,
            sunset,
            identity,
            spki_sha256,
        } = vet_csr(policy, &device, super::Csr::parse(request.csr_der)?)?;
        super::channel_binding::check(policy, &csr, request.channel_binding)?;
        self.check_rekey(&current, policy, &spki_sha256).await?;
        let actor = format!("device:{}", device.serial);
        let attested = self.attest(policy, &device, &csr, &actor, now).await?;

        self.issue(IssueRequest {
            device: &device,
            policy,
            identity: &identity,
            csr: &csr,
            sunset,
            spki_sha256,
            now,
            authorization: Authorization::CurrentCertificate(current.serial.clone()),
            same_identity_as: Some(&current.der),
            attested,
        })
        .await
    }

    /// A renewal repeated with the certificate it already superseded, and a CSR for its
    /// successor's key, within a day: the successor again (the device never installed it).
    /// Anything else from a superseded certificate is refused.
    async fn resend_successor(
        &self,
        current: &CertificateRecord,
        device: &Device,
        policy: &Policy,
        csr_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<Issued, EnrollError> {
        let superseded = || {
            refuse(ReenrollProblem::Superseded {
                serial: current.serial.clone(),
            })
        };
        let Ok(vetted) = super::Csr::parse(csr_der)
            .map_err(EnrollError::from)
            .and_then(|csr| vet_csr(policy, device, csr))
        else {
            return Err(superseded());
        };
        let resent = self
            .resend(
                Repeat {
                    device,
                    spki_sha256: &vetted.spki_sha256,
                    authorized_by: &format!("certificate:{}", current.serial),
                    issued_between: replay::last_day(now),
                    actor: &format!("device:{}", device.serial),
                },
                now,
            )
            .await?;
        resent.ok_or_else(superseded)
    }

    /// Finds the presented certificate in the registry and checks it chains to the issuing CA
    /// that issued it and its state.
    pub(in crate::authority) async fn current_certificate(
        &self,
        leaf: &CertificateDer<'static>,
        now: OffsetDateTime,
    ) -> Result<CertificateRecord, EnrollError> {
        let not_ours = |reason: &str| {
            refuse(ReenrollProblem::NotOurs {
                reason: reason.to_owned(),
            })
        };
        let serial = super::chain::presented_serial(leaf).map_err(not_ours)?;
        let record = self
            .store
            .certificate(&serial)
            .await?
            .filter(|record| record.der == leaf.as_ref())
            .ok_or_else(|| not_ours("this CA has no record of it"))?;
        let is_device_issuer = crate::pki::GenerationId::parse(&record.issuer)
            .is_some_and(|g| matches!(g.role, crate::pki::CaRole::Issuing(_)));
        let ca = self.ca.current();
        // Any loaded generation of the issuing CA: a device whose certificate a retiring
        // generation signed renews under the active one (docs/PROFILE.md §3.7).
        let issuer = ca
            .signer(&record.issuer)
            .filter(|_| is_device_issuer)
            .ok_or_else(|| not_ours("it was not issued by a device issuing CA"))?;
        // Chain check at a moment inside its validity: expiry itself is judged by policy below.
        let at = now
            .unix_timestamp()
            .min(record.not_after - 1)
            .max(record.not_before);
        super::chain::verify_client_certificate(leaf, &issuer.cert_der, at)
            .map_err(|reason| not_ours(&reason.to_string()))?;
        match record.status {
            CertificateStatus::Valid => {}
            CertificateStatus::OnHold => return Err(refuse(ReenrollProblem::OnHold)),
            CertificateStatus::Revoked => return Err(refuse(ReenrollProblem::Revoked)),
        }
        Ok(record)
    }

    /// The policy's re-key rule (docs/PROFILE.md §6.6), and clone detection for a new key.
    async fn check_rekey(
        &self,
        current: &CertificateRecord,
        policy: &Policy,
        spki_sha256: &[u8],
    ) -> Result<(), EnrollError> {
        let holders = self.store.key_holders(spki_sha256).await?;
        if let Some(other) = holders
            .iter()
            .find(|holder| **holder != current.device_serial)
        {
            return Err(EnrollError::DuplicateKey {
                holder: other.clone(),
                same_device: false,
            });
        }
        if holders.is_empty() {
            return Ok(());
        }
        let renewal = &policy.renewal;
        if renewal.rekey == Strength::Required {
            return Err(refuse(ReenrollProblem::KeyReuse {
                rule: format!(
                    "policy {} requires a new key at every renewal",
                    policy.policy.id
                ),
            }));
        }
        let certified = self
            .store
            .certificates_for_device(&current.device_serial)
            .await?
            .iter()
            .filter(|c| c.spki_sha256 == spki_sha256)
            .count();
        let reuses = certified.saturating_sub(1) as u32;
        if reuses >= renewal.max_key_reuse {
            return Err(refuse(ReenrollProblem::KeyReuse {
                rule: format!(
                    "policy {} allows a key to be reused at most {} time(s)",
                    policy.policy.id, renewal.max_key_reuse
                ),
            }));
        }
        Ok(())
    }
}

/// The policy's minimum interval counts between re-enrollments: a certificate from an initial
/// enrollment may be renewed at once (a device, or a factory test, renewing right after it
/// enrolled), a renewed one only `min_reenroll_interval_minutes` after it was issued.
fn check_interval(
    current: &CertificateRecord,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(), EnrollError> {
    if current.supersedes.is_none() {
        return Ok(());
    }
    let min_interval = i64::from(policy.renewal.min_reenroll_interval_minutes) * 60;
    let wait = current.issued_at + min_interval - now.unix_timestamp();
    if wait > 0 {
        return Err(refuse(ReenrollProblem::TooSoon {
            retry_after_secs: wait as u64,
        }));
    }
    Ok(())
}

fn check_validity(
    current: &CertificateRecord,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(), EnrollError> {
    let now = now.unix_timestamp();
    if now < current.not_before {
        return Err(refuse(ReenrollProblem::NotYetValid));
    }
    let grace_days = policy.renewal.expired_grace_days;
    if now > current.not_after + i64::from(grace_days) * 86_400 {
        return Err(refuse(ReenrollProblem::Expired {
            not_after: current.not_after,
            grace_days,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iomt_core::policy::{PolicySet, shipped_sources};

    fn record(not_before: i64, not_after: i64) -> CertificateRecord {
        CertificateRecord {
            serial: "aa".into(),
            issuer: "substantial".into(),
            device_serial: "PM70000001".into(),
            product: "example-patient-monitor".into(),
            policy_oid: "1.2.3".into(),
            not_before,
            not_after,
            spki_sha256: vec![],
            der: vec![],
            status: CertificateStatus::Valid,
            authorized_by: "token".into(),
            supersedes: None,
            issued_at: not_before,
        }
    }

    fn at(ts: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(ts).unwrap()
    }

    #[test]
    fn expiry_is_judged_by_the_policy_grace() {
        let set = PolicySet::from_sources(shipped_sources()).unwrap();
        let substantial = set.product("example-patient-monitor").unwrap(); // 30 days of grace
        let basic = set.product("example-infusion-pump").unwrap(); // none
        let current = record(1_000, 2_000);
        assert!(check_validity(&current, basic, at(2_000)).is_ok());
        let expired = check_validity(&current, basic, at(2_001)).unwrap_err();
        assert!(matches!(
            expired,
            EnrollError::Reenroll(ReenrollProblem::Expired { grace_days: 0, .. })
        ));
        assert!(check_validity(&current, substantial, at(2_000 + 30 * 86_400)).is_ok());
        assert!(check_validity(&current, substantial, at(2_001 + 30 * 86_400)).is_err());
        let early = check_validity(&current, basic, at(999)).unwrap_err();
        assert!(matches!(
            early,
            EnrollError::Reenroll(ReenrollProblem::NotYetValid)
        ));
    }
}
