//! What `serve` does with the audit trail before it answers anyone.

use super::chain::{Verification, verify_at_start};
use crate::storage::{AuditAction, AuditEvent, Store, StoreError};

/// Why `serve` does not start on this audit trail.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "the audit trail is broken ({} problem(s); the first: {}): refusing to serve. Inspect it with `ca-server audit verify` (add `--checkpoint FILE` for each checkpoint copy you keep) and `ca-server audit export`, and restore the database from a backup",
        .0.problems().len(),
        .0.problems().first().cloned().unwrap_or_default()
    )]
    Broken(Verification),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-creates any append-only trigger someone dropped or disabled (audited as
/// `audit.protection_restored`), then verifies the whole chain against the newest stored
/// checkpoint and refuses a broken one (an edited or deleted event, deleted newest events).
pub async fn guard_at_start(
    store: &dyn Store,
    root_der: &[u8],
) -> Result<Verification, GuardError> {
    let restored = store.restore_audit_protection().await?;
    let verification = verify_at_start(store, root_der).await?;
    if !verification.is_intact() {
        return Err(GuardError::Broken(verification));
    }
    if !restored.is_empty() {
        tracing::warn!(
            ?restored,
            "the audit trail's append-only triggers were missing and have been re-created"
        );
        store
            .append_audit(&[AuditEvent {
                at: time::OffsetDateTime::now_utc().unix_timestamp(),
                actor: "ca".to_owned(),
                action: AuditAction::AuditProtectionRestored.into(),
                object: "audit_events".to_owned(),
                details: serde_json::json!({ "triggers": restored }).to_string(),
            }])
            .await?;
    }
    Ok(verification)
}
