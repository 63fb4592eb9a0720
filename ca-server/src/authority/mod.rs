//! The issuance pipeline: authorize → verify CSR → identity from the record → build → sign →
//! lint → store with the token and the audit event in one transaction → answer.

mod admission;
pub mod attestation;
mod certificate;
mod chain;
mod channel_binding;
mod conformant;
mod csr;
mod error;
mod reenroll;
mod replay;
mod station;
mod station_certificate;
mod token;

use std::sync::Arc;

use iomt_core::identity::{DeviceRecord, Identity, TpmResidency};
use iomt_core::policy::{Level, Policy, PolicySet};
use iomt_core::wire::CsrRequirements;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use admission::seconds_to_next_hour;
pub use admission::{allow_station_enrollment, allow_token_enrollment};
pub use attestation::AttestationProblem;
pub use certificate::{BuildError, CertificateInputs, SignedCertificate, build_and_sign};
pub use channel_binding::BindingProblem;
pub use csr::{Csr, CsrError, KeyNotAllowed, SubjectKey};
pub use error::{EnrollError, ReenrollProblem, StationProblem, TokenProblem};
pub use reenroll::Reenrollment;
use replay::Attempt;
pub use station::StationEnrollment;
pub use station_certificate::STATION_VALIDITY;
pub use token::TokenEnrollment;
pub use token::{token_with_attestation, tokens_accepted};

use crate::pki::{CaHandle, PublicUrls};
use crate::storage::{
    AuditAction, AuditEvent, CertificateRecord, CertificateStatus, Device, DeviceStatus,
    GroupCommit, HeldCertificate, Issuance, StationQuota, Store, StoreError,
};

/// A certificate that was issued and committed.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate: SignedCertificate,
    /// The issuing CA certificate (for a client building its chain).
    pub issuer_der: CertificateDer<'static>,
    /// The issuing CA generation's name (`basic`, `basic-g2`, `station`, ...).
    pub issuer: String,
    /// The device's product policy id (`station` for a station's own certificate).
    pub product: String,
}

/// The CA's decision-maker: policies, keys and the registry.
pub struct Authority {
    policies: Arc<PolicySet>,
    /// The CA material, replaced when a rollover is picked up.
    ca: CaHandle,
    store: Arc<dyn Store>,
    /// Enrollment reads and issuance writes go through the batching reader and writer.
    commits: GroupCommit,
    /// Station certificates whose chain already verified.
    station_chains: chain::VerifiedChains,
    urls: PublicUrls,
}

/// How an issuance was authorized, and what it consumes or supersedes.
enum Authorization {
    /// A one-time token (its hash), consumed in the issuance transaction.
    Token(Vec<u8>),
    /// The device's current certificate (its hex serial), superseded by the new one.
    CurrentCertificate(String),
    /// A manufacturing station's certificate; the issuance counts against its hourly limit.
    Station(StationQuota),
}

/// Everything the shared issuance step needs.
struct IssueRequest<'a> {
    device: &'a Device,
    policy: &'a Policy,
    identity: &'a Identity,
    csr: &'a Csr,
    sunset: time::Date,
    spki_sha256: Vec<u8>,
    now: OffsetDateTime,
    authorization: Authorization,
    /// At re-enrollment: the current certificate, whose subject and SAN the new one must repeat.
    same_identity_as: Option<&'a [u8]>,
    /// The key's verified TPM attestation, if the CSR carried evidence.
    attested: Option<attestation::Attested>,
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

/// A CSR that passed every check shared by enrollment and re-enrollment.
struct VettedCsr {
    csr: Csr,
    /// The subject key type's sunset.
    sunset: time::Date,
    /// What the certificate must say, from the registration record.
    identity: Identity,
    spki_sha256: Vec<u8>,
}

/// Parses the CSR, checks its key against the policy before the proof of possession (ring cannot
/// verify keys the policy refuses anyway), builds the identity from the record and checks that
/// whatever the CSR asks for matches it.
fn vet_csr(policy: &Policy, device: &Device, csr: Csr) -> Result<VettedCsr, EnrollError> {
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

/// What an EST label selects.
enum Selection<'a> {
    Level(Level),
    Product(&'a Policy),
}

impl Authority {
    /// Assembles the authority and starts its issuance writer (on the current tokio runtime).
    pub fn new(
        policies: Arc<PolicySet>,
        ca: impl Into<CaHandle>,
        store: Arc<dyn Store>,
        urls: PublicUrls,
    ) -> Authority {
        Authority::observed(policies, ca, store, urls, None)
    }

    /// Like [`Authority::new`], reporting group-commit batches to `observer` (the metrics).
    pub fn observed(
        policies: Arc<PolicySet>,
        ca: impl Into<CaHandle>,
        store: Arc<dyn Store>,
        urls: PublicUrls,
        observer: Option<Arc<dyn crate::storage::CommitObserver>>,
    ) -> Authority {
        Authority {
            policies,
            ca: ca.into(),
            commits: GroupCommit::start_observed(store.clone(), observer),
            station_chains: chain::VerifiedChains::default(),
            store,
            urls,
        }
    }

    /// The loaded policies.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.ca.current().root_der.clone()
    }

    /// The CA material in use (replaced when a rollover is picked up).
    pub fn ca(&self) -> &CaHandle {
        &self.ca
    }

    /// The registry, as a shared handle (for services built beside the authority).
    pub fn shared_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The registry.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// CA certificates for `/cacerts`: the active root and the issuing CA the label selects;
    /// without a label every issuing CA and the station CA. During a root key update (a root
    /// rollover whose previous root has not expired) also, per RFC 7030 §4.1.3, the older roots
    /// (OldWithOld), the link certificates (NewWithOld, OldWithNew) and the retiring
    /// generations of the selected CAs, so both the old chain and the new one can be built.
    pub fn ca_certificates(
        &self,
        label: Option<&str>,
    ) -> Result<Vec<CertificateDer<'static>>, EnrollError> {
        let ca = self.ca.current();
        let active_root = ca.active_root_der().clone();
        let mut certs = vec![active_root.clone()];
        let level = label
            .map(|l| self.select(l))
            .transpose()?
            .map(|selection| self.level_of(&selection));
        match level {
            None => {
                certs.extend(Level::ALL.iter().map(|l| ca.issuing(*l).cert_der.clone()));
                // Stations enroll their own keys on the unlabeled path.
                certs.push(ca.station.cert_der.clone());
            }
            Some(level) => certs.push(ca.issuing(level).cert_der.clone()),
        }
        let links = ca.root_links();
        if links.is_empty() {
            return Ok(certs);
        }
        certs.extend(
            ca.roots()
                .into_iter()
                .filter(|r| **r != active_root)
                .cloned(),
        );
        certs.extend(links.into_iter().cloned());
        let retiring = ca.earlier.iter().filter(|e| {
            e.status == crate::storage::GenerationStatus::Retiring
                && match level {
                    None => true,
                    Some(level) => ca.level_generations(level).any(|g| g.name == e.ca.name),
                }
        });
        certs.extend(retiring.map(|e| e.ca.cert_der.clone()));
        // A certs-only SET OF holds each certificate once.
        let mut seen = std::collections::HashSet::new();
        certs.retain(|c| seen.insert(c.clone()));
        Ok(certs)
    }

    /// What a CSR must contain under the label (the Basic level when there is none).
    pub fn csr_requirements(&self, label: Option<&str>) -> Result<CsrRequirements, EnrollError> {
        let policy = match label.map(|l| self.select(l)).transpose()? {
            None => self.policies.level(Level::Basic),
            Some(Selection::Level(level)) => self.policies.level(level),
            Some(Selection::Product(policy)) => policy,
        };
        Ok(csr::requirements(policy))
    }

    /// Builds, signs, lints and commits one certificate (shared by every enrollment route). A
    /// refusal at commit because a concurrent request committed first is a lost race: the
    /// route then decides again on the committed state ([`replay::settle`]).
    async fn issue(&self, request: IssueRequest<'_>) -> Result<Issued, Attempt> {
        let IssueRequest {
            device,
            policy,
            identity,
            csr,
            sunset,
            now,
            ..
        } = request;
        let level = policy.policy.level;
        // A key verified to be in a TPM: the certificate names that TPM where the policy allows
        // (docs/PROFILE.md §2.7, §2.9); built and linted from the same identity.
        let attested_identity = request.attested.as_ref().map(|attested| {
            identity.clone().with_tpm_residency(
                policy,
                &TpmResidency {
                    hw_serial: attested.claim.hw_serial.clone(),
                    ek_certificate_sha256: attested.claim.ek_sha256.clone(),
                },
            )
        });
        let identity = attested_identity.as_ref().unwrap_or(identity);
        // One material for the whole issuance: a rollover picked up meanwhile applies to the
        // next request.
        let ca = self.ca.current();
        let issuer = ca.issuing(level);
        let signed = certificate::build_and_sign(&certificate::CertificateInputs {
            policy,
            identity,
            spki_der: &csr.spki_der,
            sunset,
            issuer,
            urls: &self.urls,
            now,
        })
        .map_err(EnrollError::from)?;
        if let Some(current) = request.same_identity_as
            && !same_identity(current, &signed.der)
        {
            return Err(EnrollError::Reenroll(ReenrollProblem::IdentityChanged).into());
        }
        // Second line of defence: the built-in level as well, whatever the files in the data
        // directory say (one parse; the signature is checked once).
        let conformant = conformant::lint(
            signed,
            &conformant::LintContext {
                issuer_der: &issuer.cert_der,
                policy,
                baseline: self.policies.baseline_for(policy),
                identity,
                now,
                // A key held in this process was matched to its certificate at load; a token
                // (HSM) signature is checked every time, since the token is outside our control.
                verify_signature: !issuer.issuer.key().is_in_process(),
            },
        )?;
        let signed = conformant.certificate();

        let device_actor = format!("device:{}", device.serial);
        let (actor, authorized_by, consume_token, supersedes, station_quota, action) =
            match request.authorization {
                Authorization::Token(hash) => (
                    device_actor,
                    "token".to_owned(),
                    Some(hash),
                    None,
                    None,
                    AuditAction::CertificateIssued,
                ),
                Authorization::CurrentCertificate(serial) => (
                    device_actor,
                    format!("certificate:{serial}"),
                    None,
                    Some(serial),
                    None,
                    AuditAction::CertificateReissued,
                ),
                Authorization::Station(quota) => (
                    format!("station:{}", quota.station),
                    format!("station:{}", quota.station),
                    None,
                    None,
                    Some(quota),
                    AuditAction::CertificateIssued,
                ),
            };
        let initial = consume_token.is_some() || station_quota.is_some();
        let attested = request.attested.as_ref().map(|a| {
            serde_json::json!({
                "ek_sha256": hex::encode(&a.claim.ek_sha256),
                "hw_serial": a.claim.hw_serial,
                "manufacturer": a.manufacturer,
                "evidence_sha256": hex::encode(&a.evidence_sha256),
            })
        });
        let issuance = Issuance {
            certificate: CertificateRecord {
                serial: signed.serial_hex.clone(),
                issuer: issuer.name.clone(),
                device_serial: device.serial.clone(),
                product: device.product.clone(),
                policy_oid: policy.policy.certificate_policy_oid.clone(),
                not_before: signed.not_before.unix_timestamp(),
                not_after: signed.not_after.unix_timestamp(),
                spki_sha256: request.spki_sha256,
                der: signed.der.clone(),
                status: CertificateStatus::Valid,
                authorized_by: authorized_by.clone(),
                supersedes: supersedes.clone(),
                issued_at: now.unix_timestamp(),
            },
            consume_token,
            station_quota,
            initial,
            attestation: request.attested.as_ref().map(|a| a.claim.clone()),
            audit: AuditEvent {
                at: now.unix_timestamp(),
                actor,
                action: action.into(),
                object: format!("certificate:{}", signed.serial_hex),
                details: serde_json::json!({
                    "device": device.serial,
                    "product": device.product,
                    "authorized_by": authorized_by,
                    "supersedes": supersedes,
                    "not_after": signed.not_after.unix_timestamp(),
                    "attestation": attested,
                })
                .to_string(),
            },
        };
        let lost_race = |error: EnrollError| Err(Attempt::LostRace(error));
        match self.commits.commit(issuance).await {
            Ok(()) => {}
            Err(StoreError::TokenNotConsumable) => {
                return lost_race(EnrollError::Token {
                    problem: TokenProblem::Used,
                });
            }
            Err(StoreError::StationRateLimited { station }) => {
                return Err(EnrollError::Station(StationProblem::RateLimited {
                    station,
                    retry_after_secs: seconds_to_next_hour(now),
                })
                .into());
            }
            Err(StoreError::AlreadySuperseded(serial)) => {
                return lost_race(EnrollError::Reenroll(ReenrollProblem::Superseded {
                    serial,
                }));
            }
            Err(StoreError::KeyHeld { holder }) => {
                return lost_race(EnrollError::DuplicateKey {
                    same_device: holder == device.serial,
                    holder,
                });
            }
            Err(StoreError::ChallengeNotConsumable) => {
                return lost_race(AttestationProblem::ChallengeUsed.into());
            }
            Err(StoreError::BoundToOtherTpm { device, ek_sha256 }) => {
                return lost_race(
                    AttestationProblem::TpmMismatch {
                        serial: device,
                        bound: ek_sha256,
                    }
                    .into(),
                );
            }
            Err(StoreError::DeviceRecalled(serial)) => {
                return Err(EnrollError::DeviceRecalled { serial }.into());
            }
            Err(StoreError::DeviceHoldsCertificate(serial)) => {
                return lost_race(EnrollError::AlreadyEnrolled {
                    serial,
                    certificate: "issued concurrently".to_owned(),
                });
            }
            Err(e) => return Err(EnrollError::from(e).into()),
        }
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

    async fn registered_device(&self, serial: &str) -> Result<(Device, &Policy), EnrollError> {
        let device = self.store.device(serial).await?;
        self.check_registered(serial, device)
    }

    /// The device must be registered, active, and of a product with a loaded policy.
    fn check_registered(
        &self,
        serial: &str,
        device: Option<Device>,
    ) -> Result<(Device, &Policy), EnrollError> {
        let device = device.ok_or_else(|| EnrollError::UnknownDevice {
            serial: serial.to_owned(),
        })?;
        if device.status != DeviceStatus::Active {
            return Err(EnrollError::DeviceDisabled {
                serial: device.serial,
            });
        }
        let policy =
            self.policies
                .product(&device.product)
                .ok_or_else(|| EnrollError::UnknownProduct {
                    serial: device.serial.clone(),
                    product: device.product.clone(),
                })?;
        Ok((device, policy))
    }

    fn select(&self, label: &str) -> Result<Selection<'_>, EnrollError> {
        if let Some(policy) = self.policies.product(label) {
            return Ok(Selection::Product(policy));
        }
        Level::parse(label)
            .map(Selection::Level)
            .ok_or_else(|| EnrollError::UnknownLabel {
                label: label.to_owned(),
            })
    }

    fn level_of(&self, selection: &Selection<'_>) -> Level {
        match selection {
            Selection::Level(level) => *level,
            Selection::Product(policy) => policy.policy.level,
        }
    }

    fn check_label(
        &self,
        label: &str,
        device: &Device,
        policy: &Policy,
    ) -> Result<(), EnrollError> {
        let matches = match self.select(label)? {
            Selection::Level(level) => level == policy.policy.level,
            Selection::Product(selected) => selected.policy.id == device.product,
        };
        if matches {
            Ok(())
        } else {
            Err(EnrollError::LabelMismatch {
                label: label.to_owned(),
                serial: device.serial.clone(),
                product: device.product.clone(),
            })
        }
    }

    /// Clone detection: a device that holds a certificate (valid or on hold, unexpired) does not
    /// get a second one by initial enrollment. The attempt is audited; an operator clears the
    /// way with `device reprovision`.
    async fn check_not_enrolled(
        &self,
        device: &Device,
        held: Option<HeldCertificate>,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<(), EnrollError> {
        let Some(held) = held else {
            return Ok(());
        };
        tracing::warn!(device = %device.serial, actor, certificate = %held.serial, "second initial enrollment refused (possible clone)");
        self.store
            .append_audit(&[AuditEvent {
                at: now.unix_timestamp(),
                actor: actor.to_owned(),
                action: AuditAction::EnrollmentRefusedClone.into(),
                object: format!("device:{}", device.serial),
                details: serde_json::json!({
                    "reason": "device already holds a valid certificate",
                    "certificate": held.serial,
                    "authorized_by": held.authorized_by,
                })
                .to_string(),
            }])
            .await?;
        Err(EnrollError::AlreadyEnrolled {
            serial: device.serial.clone(),
            certificate: held.serial,
        })
    }
}
