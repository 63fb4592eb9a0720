//! The issuance pipeline every enrollment route ends in: vet the CSR against the policy and the
//! registration record, build and sign the certificate, lint it, and commit it with what
//! authorized it (token consumed, certificate superseded, station quota counted) and its audit
//! event in one transaction. Only then is the certificate returned.

use iomt_core::identity::{DeviceRecord, Identity, TpmResidency};
use iomt_core::policy::Policy;
use time::OffsetDateTime;

use super::admission::seconds_to_next_hour;
use super::conformant::{self, Conformant};
use super::replay::Attempt;
use super::{
    AttestationProblem, Authority, Csr, EnrollError, Issued, ReenrollProblem, StationProblem,
    TokenProblem, attestation, certificate, csr,
};
use crate::storage::{
    AuditAction, AuditEvent, CertificateRecord, CertificateStatus, Device, Issuance, StationQuota,
    StoreError,
};

/// How an issuance was authorized, and what it consumes or supersedes.
pub(super) enum Authorization {
    /// A one-time token (its hash), consumed in the issuance transaction.
    Token(Vec<u8>),
    /// The device's current certificate (its hex serial), superseded by the new one.
    CurrentCertificate(String),
    /// A manufacturing station's certificate; the issuance counts against its hourly limit.
    Station(StationQuota),
}

/// Everything the shared issuance step needs.
pub(super) struct IssueRequest<'a> {
    pub(super) device: &'a Device,
    pub(super) policy: &'a Policy,
    pub(super) identity: &'a Identity,
    pub(super) csr: &'a Csr,
    pub(super) sunset: time::Date,
    pub(super) spki_sha256: Vec<u8>,
    pub(super) now: OffsetDateTime,
    pub(super) authorization: Authorization,
    /// At re-enrollment: the current certificate, whose subject and SAN the new one must repeat.
    pub(super) same_identity_as: Option<&'a [u8]>,
    /// The key's verified TPM attestation, if the CSR carried evidence.
    pub(super) attested: Option<attestation::Attested>,
}

/// A CSR that passed every check shared by enrollment and re-enrollment.
pub(super) struct VettedCsr {
    pub(super) csr: Csr,
    /// The subject key type's sunset.
    pub(super) sunset: time::Date,
    /// What the certificate must say, from the registration record.
    pub(super) identity: Identity,
    pub(super) spki_sha256: Vec<u8>,
}

/// Parses the CSR, checks its key against the policy before the proof of possession (ring cannot
/// verify keys the policy refuses anyway), builds the identity from the record and checks that
/// whatever the CSR asks for matches it.
pub(super) fn vet_csr(
    policy: &Policy,
    device: &Device,
    csr: Csr,
) -> Result<VettedCsr, EnrollError> {
    let sunset = csr::check_key(policy, csr.key)?;
    csr.verify_signature()?;
    let identity = Identity::build(policy, &record_of(device))?;
    csr.check_identity(&identity)?;
    let spki_sha256 = csr.spki_sha256();
    Ok(VettedCsr {
        csr,
        sunset,
        identity,
        spki_sha256,
    })
}

/// The registration-record fields a certificate is built from.
fn record_of(device: &Device) -> DeviceRecord {
    DeviceRecord {
        serial: device.serial.clone(),
        gtin: device.gtin.clone(),
    }
}

/// Who is recorded as having asked, and what the issuance consumes.
struct Provenance {
    actor: String,
    authorized_by: String,
    consume_token: Option<Vec<u8>>,
    supersedes: Option<String>,
    station_quota: Option<StationQuota>,
    action: AuditAction,
}

impl Provenance {
    fn of(authorization: Authorization, device: &Device) -> Provenance {
        let device_actor = format!("device:{}", device.serial);
        match authorization {
            Authorization::Token(hash) => Provenance {
                actor: device_actor,
                authorized_by: "token".to_owned(),
                consume_token: Some(hash),
                supersedes: None,
                station_quota: None,
                action: AuditAction::CertificateIssued,
            },
            Authorization::CurrentCertificate(serial) => Provenance {
                actor: device_actor,
                authorized_by: format!("certificate:{serial}"),
                consume_token: None,
                supersedes: Some(serial),
                station_quota: None,
                action: AuditAction::CertificateReissued,
            },
            Authorization::Station(quota) => Provenance {
                actor: format!("station:{}", quota.station),
                authorized_by: format!("station:{}", quota.station),
                consume_token: None,
                supersedes: None,
                station_quota: Some(quota),
                action: AuditAction::CertificateIssued,
            },
        }
    }
}

impl Authority {
    /// Builds, signs, lints and commits one certificate (shared by every enrollment route). A
    /// refusal at commit because a concurrent request committed first is a lost race: the
    /// route then decides again on the committed state ([`super::replay::settle`]).
    pub(super) async fn issue(&self, request: IssueRequest<'_>) -> Result<Issued, Attempt> {
        // One material for the whole issuance: a rollover picked up meanwhile applies to the
        // next request.
        let ca = self.ca.current();
        let level = request.policy.policy.level;
        let issuer = ca.issuing(level);
        let conformant = self.conformant_certificate(&request, issuer)?;
        let signed = conformant.certificate();
        let device = request.device;
        let now = request.now;
        let attestation = request.attested.as_ref();
        let provenance = Provenance::of(request.authorization, device);
        let authorized_by = provenance.authorized_by.clone();
        let action = provenance.action;
        let issuance = Issuance {
            certificate: CertificateRecord {
                serial: signed.serial_hex.clone(),
                issuer: issuer.name.clone(),
                device_serial: device.serial.clone(),
                product: device.product.clone(),
                policy_oid: request.policy.policy.certificate_policy_oid.clone(),
                not_before: signed.not_before.unix_timestamp(),
                not_after: signed.not_after.unix_timestamp(),
                spki_sha256: request.spki_sha256,
                der: signed.der.clone(),
                status: CertificateStatus::Valid,
                authorized_by: provenance.authorized_by.clone(),
                supersedes: provenance.supersedes.clone(),
                issued_at: now.unix_timestamp(),
            },
            initial: provenance.consume_token.is_some() || provenance.station_quota.is_some(),
            attestation: attestation.map(|a| a.claim.clone()),
            audit: issued_event(&provenance, device, signed, attestation, now),
            consume_token: provenance.consume_token,
            station_quota: provenance.station_quota,
        };
        self.commits
            .commit(issuance)
            .await
            .map_err(|refusal| commit_refusal(refusal, device, now))?;
        tracing::info!(
            certificate = %signed.serial_hex,
            device = %device.serial,
            product = %device.product,
            level = level.as_str(),
            issuer = %issuer.name,
            authorized_by = %authorized_by,
            action = action.as_str(),
            "certificate issued"
        );
        Ok(Issued {
            certificate: conformant.into_certificate(),
            issuer_der: issuer.cert_der.clone(),
            issuer: issuer.name.clone(),
            product: device.product.clone(),
        })
    }

    /// Builds the certificate from the policy and the identity (naming the TPM when the key's
    /// residency was attested), signs it with `issuer`, and lints what was signed.
    fn conformant_certificate(
        &self,
        request: &IssueRequest<'_>,
        issuer: &crate::pki::IssuingCa,
    ) -> Result<Conformant, EnrollError> {
        let policy = request.policy;
        // A key verified to be in a TPM: the certificate names that TPM where the policy allows
        // (docs/PROFILE.md §2.7, §2.9); built and linted from the same identity.
        let attested_identity = request.attested.as_ref().map(|attested| {
            request.identity.clone().with_tpm_residency(
                policy,
                &TpmResidency {
                    hw_serial: attested.claim.hw_serial.clone(),
                    ek_certificate_sha256: attested.claim.ek_sha256.clone(),
                },
            )
        });
        let identity = attested_identity.as_ref().unwrap_or(request.identity);
        let signed = certificate::build_and_sign(&certificate::CertificateInputs {
            policy,
            identity,
            spki_der: &request.csr.spki_der,
            sunset: request.sunset,
            issuer,
            urls: &self.urls,
            now: request.now,
        })?;
        if let Some(current) = request.same_identity_as
            && !same_identity(current, &signed.der)
        {
            return Err(EnrollError::Reenroll(ReenrollProblem::IdentityChanged));
        }
        // Second line of defence: the built-in level as well, whatever the files in the data
        // directory say (one parse; the signature is checked once).
        conformant::lint(
            signed,
            &conformant::LintContext {
                issuer_der: &issuer.cert_der,
                policy,
                baseline: self.policies.baseline_for(policy),
                identity,
                now: request.now,
                // A key held in this process was matched to its certificate at load; a token
                // (HSM) signature is checked every time, since the token is outside our control.
                verify_signature: !issuer.issuer.key().is_in_process(),
            },
        )
    }
}

/// The audit event committed with the certificate.
fn issued_event(
    provenance: &Provenance,
    device: &Device,
    signed: &certificate::SignedCertificate,
    attested: Option<&attestation::Attested>,
    now: OffsetDateTime,
) -> AuditEvent {
    let attestation = attested.map(|a| {
        serde_json::json!({
            "ek_sha256": hex::encode(&a.claim.ek_sha256),
            "hw_serial": a.claim.hw_serial,
            "manufacturer": a.manufacturer,
            "evidence_sha256": hex::encode(&a.evidence_sha256),
        })
    });
    AuditEvent {
        at: now.unix_timestamp(),
        actor: provenance.actor.clone(),
        action: provenance.action.into(),
        object: format!("certificate:{}", signed.serial_hex),
        details: serde_json::json!({
            "device": device.serial,
            "product": device.product,
            "authorized_by": provenance.authorized_by,
            "supersedes": provenance.supersedes,
            "not_after": signed.not_after.unix_timestamp(),
            "attestation": attestation,
        })
        .to_string(),
    }
}

/// What a refusal at commit means for the request: a final answer, or a lost race to decide
/// again on the committed state.
fn commit_refusal(refusal: StoreError, device: &Device, now: OffsetDateTime) -> Attempt {
    let lost_race = Attempt::LostRace;
    match refusal {
        StoreError::TokenNotConsumable => lost_race(EnrollError::Token {
            problem: TokenProblem::Used,
        }),
        StoreError::StationRateLimited { station } => {
            EnrollError::Station(StationProblem::RateLimited {
                station,
                retry_after_secs: seconds_to_next_hour(now),
            })
            .into()
        }
        StoreError::AlreadySuperseded(serial) => {
            lost_race(EnrollError::Reenroll(ReenrollProblem::Superseded {
                serial,
            }))
        }
        StoreError::KeyHeld { holder } => lost_race(EnrollError::DuplicateKey {
            same_device: holder == device.serial,
            holder,
        }),
        StoreError::ChallengeNotConsumable => lost_race(AttestationProblem::ChallengeUsed.into()),
        StoreError::BoundToOtherTpm { device, ek_sha256 } => lost_race(
            AttestationProblem::TpmMismatch {
                serial: device,
                bound: ek_sha256,
            }
            .into(),
        ),
        StoreError::DeviceRecalled(serial) => EnrollError::DeviceRecalled { serial }.into(),
        StoreError::DeviceHoldsCertificate(serial) => lost_race(EnrollError::AlreadyEnrolled {
            serial,
            certificate: "issued concurrently".to_owned(),
        }),
        other => EnrollError::from(other).into(),
    }
}

/// True when two certificates carry the same subject and subjectAltName, byte for byte.
fn same_identity(a: &[u8], b: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let names = |der: &[u8]| {
        X509Certificate::from_der(der).ok().map(|(_, cert)| {
            let san = cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "2.5.29.17")
                .map(|e| e.value.to_vec());
            (cert.subject().as_raw().to_vec(), san)
        })
    };
    matches!((names(a), names(b)), (Some(x), Some(y)) if x == y)
}
