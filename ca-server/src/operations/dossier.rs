//! One device as an operator looks it up: its registration, every certificate it was issued
//! (current and superseded, with issuer, validity and how it was authorized) and the audit
//! events about it and its certificates. Reads only.

use iomt_core::policy::PolicySet;

use crate::storage::{CertificateRecord, Device, Store, StoreError, StoredAuditEvent};

/// Audit events a dossier shows (newest first).
pub const DOSSIER_EVENTS: u32 = 100;

/// A certificate of the device, with its place in the renewal chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub record: CertificateRecord,
    /// The certificate that replaced this one at re-enrollment, if any.
    pub superseded_by: Option<String>,
}

/// What the console's device page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dossier {
    pub device: Device,
    /// The product's assurance level (`unknown` when no loaded policy defines it any more).
    pub level: &'static str,
    /// Newest first.
    pub certificates: Vec<DeviceCertificate>,
    /// About `device:<serial>` and each `certificate:<serial>`, newest first.
    pub events: Vec<StoredAuditEvent>,
}

impl Dossier {
    /// The certificate in use: the newest one nothing superseded.
    pub fn current(&self) -> Option<&DeviceCertificate> {
        self.certificates.iter().find(|c| c.superseded_by.is_none())
    }
}

/// The dossier of `serial`; `None` when no such device is registered.
pub async fn dossier(
    store: &dyn Store,
    policies: &PolicySet,
    serial: &str,
) -> Result<Option<Dossier>, StoreError> {
    let Some(device) = store.device(serial).await? else {
        return Ok(None);
    };
    let records = store.certificates_for_device(serial).await?;
    let certificates: Vec<DeviceCertificate> = records
        .iter()
        .map(|record| DeviceCertificate {
            superseded_by: records
                .iter()
                .find(|other| other.supersedes.as_deref() == Some(record.serial.as_str()))
                .map(|other| other.serial.clone()),
            record: record.clone(),
        })
        .collect();
    let mut objects = vec![format!("device:{serial}")];
    objects.extend(
        certificates
            .iter()
            .map(|c| format!("certificate:{}", c.record.serial)),
    );
    let events = store.audit_events_about(&objects, DOSSIER_EVENTS).await?;
    Ok(Some(Dossier {
        level: policies
            .product(&device.product)
            .map_or("unknown", |p| p.policy.level.as_str()),
        device,
        certificates,
        events,
    }))
}

/// One certificate's PEM text, when it is a device certificate on record.
pub async fn certificate_pem(
    store: &dyn Store,
    serial: &str,
) -> Result<Option<String>, StoreError> {
    Ok(store
        .certificate(serial)
        .await?
        .map(|record| pem::encode(&pem::Pem::new("CERTIFICATE", record.der))))
}
