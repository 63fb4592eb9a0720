//! The issuing authority: authorize → verify CSR → identity from the record → build → sign →
//! lint → store with the token and the audit event in one transaction → answer.
//!
//! Each route authorizes in its own file ([`token`], [`station`], [`reenroll`]) and ends in the
//! shared pipeline of [`issue`]; [`replay`] decides again when a concurrent request committed
//! first. This file holds the [`Authority`] itself and the registry checks the routes share.

mod admission;
pub mod attestation;
mod certificate;
mod chain;
mod channel_binding;
mod conformant;
mod csr;
mod error;
mod issue;
mod reenroll;
mod replay;
mod station;
mod station_certificate;
mod token;

use std::sync::Arc;

use iomt_core::policy::{Level, Policy, PolicySet};
use iomt_core::wire::CsrRequirements;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

pub use admission::{allow_station_enrollment, allow_token_enrollment};
pub use attestation::AttestationProblem;
pub use certificate::{BuildError, CertificateInputs, SignedCertificate, build_and_sign};
pub use channel_binding::BindingProblem;
pub use csr::{Csr, CsrError, KeyNotAllowed, SubjectKey};
pub use error::{EnrollError, ReenrollProblem, StationProblem, TokenProblem};
use issue::{Authorization, IssueRequest, VettedCsr, vet_csr};
pub use reenroll::Reenrollment;
pub use station::StationEnrollment;
pub use station_certificate::STATION_VALIDITY;
pub use token::TokenEnrollment;
pub use token::{token_with_attestation, tokens_accepted};

use crate::pki::{CaHandle, PublicUrls};
use crate::storage::{
    AuditAction, AuditEvent, Device, DeviceStatus, GroupCommit, HeldCertificate, Store,
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
