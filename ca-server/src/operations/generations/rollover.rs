//! `ca rollover`: the next generation of a CA with a new key in the same custody, signed by the
//! root (or, under an offline root, a CSR and the ceremony recipe until `ca import`), recorded
//! and audited; a root rollover also writes its link certificates.

use std::path::PathBuf;

use iomt_core::policy::PolicySet;
use time::OffsetDateTime;

use super::{GenerationError, adopt};
use crate::config::Settings;
use crate::pki::{
    CaMaterial, CaRole, GenerationId, HierarchyParams, KeyStore, NextGeneration, PkiError,
    RolloverError, RolloverParams, make_next, make_next_root, write_root_files,
};
use crate::storage::{AuditAction, AuditEvent, GenerationRecord, GenerationStatus, Store};

/// What `ca rollover` did.
#[derive(Debug, Clone)]
pub enum RolledOver {
    /// The new generation is active; the previous one is retiring.
    Active {
        previous: String,
        next: String,
        not_after: i64,
    },
    /// Under an offline root: the key and CSR are made, the ceremony recipe is in `csr_dir`.
    Pending { next: String, csr_dir: PathBuf },
    /// A new root generation is active, with its link certificates; the issuing and station
    /// CAs move under it with their own `ca rollover`.
    Root {
        previous: String,
        next: String,
        not_after: i64,
        /// The new root and its links, written to `DIR/ca/`.
        files: Vec<PathBuf>,
    },
}

/// `ca rollover --ca <role>`: the next generation, signed by the root (active at once, the
/// previous one retiring) or, under an offline root, pending until `ca import`.
pub async fn rollover(
    settings: &Settings,
    policies: &PolicySet,
    store: &dyn Store,
    role: CaRole,
    actor: &str,
) -> Result<RolledOver, GenerationError> {
    if !role.is_subordinate_ca() && role != CaRole::Root {
        return Err(RolloverError::Unsupported(role.as_str()).into());
    }
    let dir = settings.data_dir.clone();
    adopt(store, &dir).await?;
    let records = store.generations().await?;
    let of_role = |status| {
        records
            .iter()
            .find(|r| r.ca == role.as_str() && r.status == status)
    };
    if let Some(pending) = of_role(GenerationStatus::Pending) {
        return Err(RolloverError::AlreadyPending(pending.name.clone()).into());
    }
    let active = of_role(GenerationStatus::Active)
        .ok_or_else(|| PkiError::NotImported(dir.display().to_string()))?;
    let previous = active.name.clone();
    let next_id = GenerationId {
        role,
        number: u32::try_from(active.generation + 1).unwrap_or(u32::MAX),
    };
    let lifetime = settings.config.ca.lifetime(role.as_str())?;
    let hierarchy = HierarchyParams {
        organization: settings.config.organization.clone(),
        country: settings.config.country.clone(),
        evaluation: settings.config.evaluation,
        tls_names: Vec::new(),
        public_url: settings.config.public_url.clone(),
        external_root: false,
    };
    let access = settings.key_access.clone();
    let policies = policies.clone();
    let made = tokio::task::spawn_blocking(move || {
        let material = CaMaterial::load_generations(&dir, &access, &records)?;
        let keys = KeyStore::open(&dir, &access)?;
        let params = RolloverParams {
            hierarchy: &hierarchy,
            policies: &policies,
            lifetime,
            now: OffsetDateTime::now_utc(),
        };
        if role == CaRole::Root {
            return make_next_root(&keys, &material, next_id, &params).map(NextGeneration::Signed);
        }
        make_next(&dir, &keys, &material, next_id, &params)
    })
    .await
    .map_err(|e| GenerationError::Task(e.to_string()))??;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match made {
        NextGeneration::Signed(record) if role == CaRole::Root => {
            let not_after = record.not_after.unwrap_or(now);
            let mut details = rolled_over_details(role, &previous, &record, not_after);
            details["root_sha256"] = crate::pki::fingerprint::sha256_colon_hex(
                record.der.as_deref().unwrap_or_default(),
            )
            .into();
            details["links"] = serde_json::json!(["new-with-old", "old-with-new"]);
            let audit = rollover_event(AuditAction::CaRolledOver, actor, &record, details, now);
            store.activate_generation(&record, &audit).await?;
            let files = write_root_files(&settings.data_dir, &record)?;
            tracing::info!(%previous, next = %record.name, "root rolled over: link certificates published");
            Ok(RolledOver::Root {
                previous,
                next: record.name,
                not_after,
                files,
            })
        }
        NextGeneration::Signed(record) => {
            let not_after = record.not_after.unwrap_or(now);
            let details = rolled_over_details(role, &previous, &record, not_after);
            let audit = rollover_event(AuditAction::CaRolledOver, actor, &record, details, now);
            store.activate_generation(&record, &audit).await?;
            tracing::info!(ca = role.as_str(), %previous, next = %record.name, "CA rolled over");
            Ok(RolledOver::Active {
                previous,
                next: record.name,
                not_after,
            })
        }
        NextGeneration::Pending { record, csr_dir } => {
            let details = serde_json::json!({
                "ca": role.as_str(),
                "custody": record.custody.as_str(),
                "csr_dir": csr_dir.display().to_string(),
            });
            let audit =
                rollover_event(AuditAction::CaRolloverPending, actor, &record, details, now);
            store.add_pending_generation(&record, &audit).await?;
            Ok(RolledOver::Pending {
                next: record.name,
                csr_dir,
            })
        }
    }
}

/// What every audit event of an activated generation says.
fn rolled_over_details(
    role: CaRole,
    previous: &str,
    record: &GenerationRecord,
    not_after: i64,
) -> serde_json::Value {
    serde_json::json!({
        "ca": role.as_str(),
        "previous": previous,
        "custody": record.custody.as_str(),
        "not_after": not_after,
    })
}

/// The audit event recorded with a new generation (`ca rollover`, and `ca import` of what the
/// offline root signed).
pub fn rollover_event(
    action: AuditAction,
    actor: &str,
    record: &GenerationRecord,
    details: serde_json::Value,
    now: i64,
) -> AuditEvent {
    AuditEvent {
        at: now,
        actor: actor.to_owned(),
        action: action.into(),
        object: format!("ca:{}", record.name),
        details: details.to_string(),
    }
}
