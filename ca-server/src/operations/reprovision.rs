//! Re-provisioning a device (`ca-server device reprovision`): the operator's decision that a
//! device may enroll from scratch again, e.g. after a repair or a suspected clone. Its current
//! certificates are revoked (reason superseded) so clone detection lets the next enrollment in,
//! and its TPM binding is removed so the next attested enrollment may bring another TPM.

use time::OffsetDateTime;

use crate::revocation::{Change, Reason, Revocation, RevocationError};
use crate::storage::{AuditAction, AuditEvent, Store, StoreError};

/// Why a device could not be re-provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ReprovisionError {
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Revokes the device's unrevoked certificates and records the decision; returns what changed.
pub async fn reprovision(
    revocation: &Revocation,
    store: &dyn Store,
    serial: &str,
    actor: &str,
) -> Result<Vec<(String, Change)>, ReprovisionError> {
    if store.device(serial).await?.is_none() {
        return Err(ReprovisionError::UnknownDevice(serial.to_owned()));
    }
    let mut changes = Vec::new();
    for certificate in store.certificates_for_device(serial).await? {
        let change = revocation
            .revoke_stored(&certificate.serial, Reason::SUPERSEDED, actor)
            .await?;
        changes.push((certificate.serial, change));
    }
    // The next attested enrollment binds the device to whatever TPM it then has.
    let unbound = store.unbind_tpm(serial).await?;
    store
        .append_audit(&[AuditEvent {
            at: OffsetDateTime::now_utc().unix_timestamp(),
            actor: actor.to_owned(),
            action: AuditAction::DeviceReprovisioned.into(),
            object: format!("device:{serial}"),
            details: serde_json::json!({
                "revoked": changes.iter().filter(|(_, c)| *c == Change::Revoked).map(|(s, _)| s).collect::<Vec<_>>(),
                "unbound_tpm_ek_sha256": unbound.map(|b| hex::encode(b.ek_sha256)),
            })
            .to_string(),
        }])
        .await?;
    tracing::info!(device = %serial, "device re-provisioned");
    Ok(changes)
}
