//! Revocation: revoke, hold and release; CRLs per CA (RFC 5280 §5); OCSP (RFC 6960). Status lives
//! in the database, so every process and replica answers the same, and a change is visible in
//! OCSP at once and in a CRL published in the same operation. CRLs are in [`crl`], the OCSP
//! responder in [`ocsp`], the offline root's pre-signed responses in [`presigned`].

mod crl;
mod ocsp;
mod presigned;
mod reason;
mod responder;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use iomt_core::policy::PolicySet;
use iomt_core::serial::CertSerial;
use time::{Duration, OffsetDateTime};

pub use crl::sign_crl;
use ocsp::IssuerIndex;
pub use ocsp::OcspIssuer;
use presigned::Presigned;
pub use reason::{REASON_NAMES, Reason};
use responder::Responder;

use crate::pki::{CaHandle, CaMaterial, CaRole, GenerationId, IssuingCa, PkiError, ROOT_CA};
use crate::storage::{AuditAction, AuditEvent, CertificateStatus, StatusReader, Store, StoreError};
use crate::telemetry::Metrics;

/// Why a revocation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("no certificate with serial {0}")]
    UnknownCertificate(String),
    #[error("device {0} has no certificates")]
    UnknownDevice(String),
    #[error("certificate {serial} is {state}, not on hold; only a hold can be released")]
    NotOnHold { serial: String, state: &'static str },
    #[error("no CA called `{0}` publishes a CRL (known: root, basic, substantial, high, station)")]
    UnknownIssuer(String),
    #[error("no OCSP responder called `{0}` (known: root, basic, substantial, high)")]
    UnknownResponder(String),
    #[error(
        "the root is offline and no root CRL was imported (`ca-server ca import --root-crl FILE`)"
    )]
    RootOffline,
    #[error("the root is offline; revoke CA certificates on the offline root")]
    RootSignerOffline,
    #[error("the imported root CRL is unreadable: {0}")]
    RootCrl(String),
    #[error("CRL signing failed: {0}")]
    Sign(#[from] rcgen::Error),
    #[error("responder: {0}")]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a revoke or release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    AlreadyOnHold,
    AlreadyRevoked,
    Held,
    Released,
    Revoked,
}

impl Change {
    /// Words for the operator.
    pub fn describe(self) -> &'static str {
        match self {
            Change::AlreadyOnHold => "was already on hold (nothing changed)",
            Change::AlreadyRevoked => "was already revoked (nothing changed)",
            Change::Held => "put on hold",
            Change::Released => "released from hold",
            Change::Revoked => "revoked",
        }
    }
}

/// Revocation state, CRL publication and the OCSP responder.
pub struct Revocation {
    /// The CA material, replaced when a rollover is picked up ([`Revocation::reloaded`]).
    ca: CaHandle,
    store: Arc<dyn Store>,
    /// OCSP's certificate-state lookups, batched across concurrent requests.
    states: StatusReader,
    policies: Arc<PolicySet>,
    /// Delegated responders, by CA generation name: one per issuing CA generation, and the
    /// root's while the root is online.
    responders: RwLock<BTreeMap<String, Arc<Responder>>>,
    /// What the material in use says about CertIDs and pre-signed answers.
    view: RwLock<Arc<View>>,
    /// Where OCSP answers are counted (a server's registry; none for the CLI).
    metrics: Option<Arc<Metrics>>,
}

/// The OCSP lookups derived from one CA material.
struct View {
    /// The material they were derived from.
    ca: Arc<CaMaterial>,
    /// Which of our CAs a CertID names.
    index: IssuerIndex,
    /// The offline root's pre-signed responses over the CA certificates (empty when online).
    presigned: Presigned,
}

impl View {
    fn of(ca: Arc<CaMaterial>, now: OffsetDateTime) -> Result<View, PkiError> {
        Ok(View {
            index: IssuerIndex::new(&ca)?,
            presigned: Presigned::new(&ca.root_ocsp, now),
            ca,
        })
    }
}

/// How long an OCSP answer may be cached: short, so a revocation spreads within the hour.
const OCSP_VALIDITY: Duration = Duration::hours(1);

impl Revocation {
    /// Issues the delegated responders, indexes the CertID hashes of our CAs and reads the
    /// offline root's pre-signed responses (warning when they near their nextUpdate).
    pub fn new(
        ca: impl Into<CaHandle>,
        store: Arc<dyn Store>,
        policies: Arc<PolicySet>,
    ) -> Result<Revocation, RevocationError> {
        let ca: CaHandle = ca.into();
        let now = OffsetDateTime::now_utc();
        let material = ca.current();
        let responders = issue_responders(&material, &BTreeMap::new(), now)?;
        let view = View::of(material.clone(), now)?;
        if material.root.is_none() && view.presigned.is_empty() {
            tracing::warn!(
                "the root is offline and no pre-signed OCSP responses for the CA certificates are \
                 installed: /ocsp/root answers `unauthorized`, so relying parties that check the whole \
                 chain by OCSP (nginx ssl_ocsp on) refuse every device; see `ca-server ca install-root-ocsp`"
            );
        }
        Ok(Revocation {
            view: RwLock::new(Arc::new(view)),
            ca,
            states: StatusReader::start(store.clone()),
            store,
            policies,
            responders: RwLock::new(responders),
            metrics: None,
        })
    }

    /// Takes up the material now in the handle (after a rollover was picked up): the CertID
    /// index, the pre-signed answers, and a responder for every generation that has none.
    pub fn reloaded(&self) -> Result<(), RevocationError> {
        let material = self.ca.current();
        if Arc::ptr_eq(&self.view().ca, &material) {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let current = self
            .responders
            .read()
            .map(|r| r.clone())
            .unwrap_or_default();
        let responders = issue_responders(&material, &current, now)?;
        let view = View::of(material, now)?;
        if let Ok(mut slot) = self.responders.write() {
            *slot = responders;
        }
        if let Ok(mut slot) = self.view.write() {
            *slot = Arc::new(view);
        }
        Ok(())
    }

    /// The CA material in use.
    pub fn ca(&self) -> &CaHandle {
        &self.ca
    }

    fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(view) => view.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The names `/ocsp/<name>` answers for: `root` and every issuing CA generation.
    pub fn responder_names(&self) -> Vec<String> {
        ocsp_names(&self.ca.current())
    }

    /// Counts OCSP answers in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Revocation {
        self.metrics = Some(metrics);
        self
    }

    fn count_ocsp(&self, status: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.ocsp_response(status);
        }
    }

    /// Revokes (or, with `certificateHold`, suspends) one certificate and publishes its CA's CRL.
    pub async fn revoke(
        &self,
        serial: &CertSerial,
        reason: Reason,
        actor: &str,
    ) -> Result<Change, RevocationError> {
        self.revoke_stored(serial.as_str(), reason, actor).await
    }

    /// [`Revocation::revoke`] for a serial read from the store (already in its spelling).
    #[tracing::instrument(skip(self), fields(reason = reason.name()))]
    pub(crate) async fn revoke_stored(
        &self,
        serial: &str,
        reason: Reason,
        actor: &str,
    ) -> Result<Change, RevocationError> {
        let serial = serial.to_owned();
        let record = self
            .store
            .certificate(&serial)
            .await?
            .ok_or_else(|| RevocationError::UnknownCertificate(serial.clone()))?;
        let (target, change) = match (record.status, reason.is_hold()) {
            (CertificateStatus::Revoked, _) => return Ok(Change::AlreadyRevoked),
            (CertificateStatus::OnHold, true) => return Ok(Change::AlreadyOnHold),
            (_, true) => (CertificateStatus::OnHold, Change::Held),
            (_, false) => (CertificateStatus::Revoked, Change::Revoked),
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let audit = AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: if reason.is_hold() {
                AuditAction::CertificateHeld
            } else {
                AuditAction::CertificateRevoked
            }
            .into(),
            object: format!("certificate:{serial}"),
            details: serde_json::json!({ "reason": reason.name(), "device": record.device_serial })
                .to_string(),
        };
        self.store
            .change_status(&serial, target, Some(reason.name()), now, &audit)
            .await?;
        self.publish_crl(&record.issuer).await?;
        tracing::info!(
            certificate = %serial,
            device = %record.device_serial,
            issuer = %record.issuer,
            reason = reason.name(),
            actor,
            "certificate {}",
            change.describe()
        );
        Ok(change)
    }

    /// Revokes every certificate of a device.
    pub async fn revoke_device(
        &self,
        device: &str,
        reason: Reason,
        actor: &str,
    ) -> Result<Vec<(String, Change)>, RevocationError> {
        let certificates = self.store.certificates_for_device(device).await?;
        if certificates.is_empty() {
            return Err(RevocationError::UnknownDevice(device.to_owned()));
        }
        let mut changes = Vec::with_capacity(certificates.len());
        for certificate in certificates {
            let change = self
                .revoke_stored(&certificate.serial, reason, actor)
                .await?;
            changes.push((certificate.serial, change));
        }
        Ok(changes)
    }

    /// Lifts a hold (removeFromCRL semantics: the entry leaves the next CRL).
    pub async fn release(
        &self,
        serial: &CertSerial,
        actor: &str,
    ) -> Result<Change, RevocationError> {
        let serial = serial.as_str().to_owned();
        let record = self
            .store
            .certificate(&serial)
            .await?
            .ok_or_else(|| RevocationError::UnknownCertificate(serial.clone()))?;
        match record.status {
            CertificateStatus::OnHold => {}
            CertificateStatus::Revoked => {
                return Err(RevocationError::NotOnHold {
                    serial,
                    state: "revoked",
                });
            }
            CertificateStatus::Valid => {
                return Err(RevocationError::NotOnHold {
                    serial,
                    state: "valid",
                });
            }
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let audit = AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: AuditAction::CertificateReleased.into(),
            object: format!("certificate:{serial}"),
            details: serde_json::json!({ "device": record.device_serial }).to_string(),
        };
        self.store
            .change_status(&serial, CertificateStatus::Valid, None, now, &audit)
            .await?;
        self.publish_crl(&record.issuer).await?;
        tracing::info!(
            certificate = %serial,
            device = %record.device_serial,
            issuer = %record.issuer,
            actor,
            "certificate released from hold"
        );
        Ok(Change::Released)
    }

    /// Renews responders and CRLs that are past half their life (the background task calls this).
    pub async fn refresh(&self) -> Result<(), RevocationError> {
        self.reloaded()?;
        let now = OffsetDateTime::now_utc();
        let ca = self.ca.current();
        for name in ocsp_names(&ca) {
            let Some(signer) = responder_signer(&ca, &name) else {
                continue;
            };
            let due = self.responder(&name).is_none_or(|r| r.due_for_renewal(now));
            if due {
                let fresh = Arc::new(Responder::issue(signer, &responder_title(&name), now)?);
                if let Ok(mut responders) = self.responders.write() {
                    responders.insert(name, fresh);
                }
            }
        }
        for issuer in ca.crl_issuers() {
            if issuer == ROOT_CA && ca.root.is_none() {
                // Published from the file the offline root produced; nothing to sign here.
                continue;
            }
            self.current_crl(&issuer).await?;
        }
        Ok(())
    }

    fn responder(&self, name: &str) -> Option<Arc<Responder>> {
        self.responders
            .read()
            .ok()
            .and_then(|r| r.get(name).cloned())
    }
}

/// The CA generation that certifies the responder `name`: an issuing CA generation, or the
/// root while it is online.
fn responder_signer<'a>(ca: &'a CaMaterial, name: &str) -> Option<&'a IssuingCa> {
    if ca.is_root(name) {
        return ca.signer(name);
    }
    // An expired generation has nothing left to answer for (and cannot certify a responder).
    ca.signer(name).filter(|signer| {
        is_issuing_generation(name) && signer.not_after > OffsetDateTime::now_utc()
    })
}

/// True for a generation of a level's issuing CA (device certificates).
fn is_issuing_generation(name: &str) -> bool {
    GenerationId::parse(name).is_some_and(|g| matches!(g.role, CaRole::Issuing(_)))
}

/// `/ocsp/<name>` names: the root and every loaded issuing CA generation (URL order).
fn ocsp_names(ca: &CaMaterial) -> Vec<String> {
    let mut names: Vec<String> = ca
        .subordinates()
        .map(|c| c.name.clone())
        .filter(|name| is_issuing_generation(name))
        .collect();
    names.sort_by_key(|name| GenerationId::parse(name));
    let roots =
        std::iter::once(ROOT_CA.to_owned()).chain(ca.later_roots.iter().map(|r| r.ca.name.clone()));
    roots.chain(names).collect()
}

/// The delegated responder certificate's common name.
fn responder_title(name: &str) -> String {
    match name {
        ROOT_CA => "IoMT Root OCSP Responder".to_owned(),
        other if GenerationId::parse(other).is_some_and(|g| g.role == CaRole::Root) => {
            format!(
                "IoMT Root {} OCSP Responder",
                GenerationId::parse(other)
                    .map(|g| g.label())
                    .unwrap_or_default()
            )
        }
        other => format!("IoMT {other} OCSP Responder"),
    }
}

/// A responder for every generation of `ca`, keeping the ones in `current` that still serve.
fn issue_responders(
    ca: &CaMaterial,
    current: &BTreeMap<String, Arc<Responder>>,
    now: OffsetDateTime,
) -> Result<BTreeMap<String, Arc<Responder>>, RevocationError> {
    let mut responders = BTreeMap::new();
    for name in ocsp_names(ca) {
        let Some(signer) = responder_signer(ca, &name) else {
            continue;
        };
        let responder = match current.get(&name) {
            Some(kept) if !kept.due_for_renewal(now) => kept.clone(),
            _ => Arc::new(Responder::issue(signer, &responder_title(&name), now)?),
        };
        responders.insert(name, responder);
    }
    Ok(responders)
}
