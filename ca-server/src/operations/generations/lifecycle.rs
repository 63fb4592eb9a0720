//! What every replica does in the background around CA generations: pick up a rollover made
//! anywhere, retire a generation once its last certificate expired (publishing its final CRL),
//! and warn, daily, long before an issuing CA can no longer cover a full device lifetime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use iomt_core::policy::PolicySet;
use time::OffsetDateTime;

use super::{DAY, GenerationError, assess};
use crate::config::{CaLifecycle, Settings};
use crate::pki::{CaHandle, CaMaterial, CaRole, KeyAccess};
use crate::revocation::Revocation;
use crate::storage::{AuditAction, AuditEvent, GenerationStatus, Store};

/// The background duties of a running server around CA generations.
pub struct Lifecycle {
    dir: PathBuf,
    access: KeyAccess,
    store: Arc<dyn Store>,
    ca: CaHandle,
    revocation: Arc<Revocation>,
    policies: Arc<PolicySet>,
    config: CaLifecycle,
    /// When each warning was last logged (so a standing warning is logged daily, not per tick).
    warned: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle").finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// The lifecycle of the server configured by `settings`, over its handle and revocation.
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        ca: CaHandle,
        revocation: Arc<Revocation>,
        policies: Arc<PolicySet>,
    ) -> Lifecycle {
        Lifecycle {
            dir: settings.data_dir.clone(),
            access: settings.key_access.clone(),
            store,
            ca,
            revocation,
            policies,
            config: settings.config.ca.clone(),
            warned: Mutex::new(HashMap::new()),
        }
    }

    /// Time between ticks.
    pub fn interval(&self) -> std::time::Duration {
        self.config.reload_interval()
    }

    /// One look at the database: picks up new generations (and statuses), retires generations
    /// whose last certificate expired, and logs standing warnings. True when the material was
    /// replaced.
    pub async fn tick(&self) -> Result<bool, GenerationError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut reloaded = self.reload_if_changed().await?;
        if self.retire_expired(now).await? {
            reloaded |= self.reload_if_changed().await?;
        }
        self.warn(now).await?;
        Ok(reloaded)
    }

    async fn reload_if_changed(&self) -> Result<bool, GenerationError> {
        let records = self.store.generations().await?;
        let stored: Vec<(String, GenerationStatus)> =
            records.iter().map(|r| (r.name.clone(), r.status)).collect();
        if self.ca.current().loaded_from == stored {
            return Ok(false);
        }
        let (dir, access) = (self.dir.clone(), self.access.clone());
        let material = tokio::task::spawn_blocking(move || {
            CaMaterial::load_generations(&dir, &access, &records)
        })
        .await
        .map_err(|e| GenerationError::Task(e.to_string()))??;
        let active: Vec<String> = material
            .issuing
            .values()
            .chain(std::iter::once(&material.station))
            .map(|ca| ca.name.clone())
            .collect();
        self.ca.replace(Arc::new(material));
        self.revocation.reloaded()?;
        tracing::info!(active = ?active, "CA generations picked up: new certificates and renewals come from the active ones");
        Ok(true)
    }

    /// Retires the retiring generations none of whose certificates is unexpired any more,
    /// after publishing their final CRL. A generation is given two reload intervals after it
    /// started retiring, so a replica that had not yet picked up the rollover cannot have
    /// issued under it unseen.
    async fn retire_expired(&self, now: i64) -> Result<bool, GenerationError> {
        let records = self.store.generations().await?;
        let grace = 2 * i64::try_from(self.interval().as_secs()).unwrap_or(i64::MAX / 4);
        let mut retired = false;
        for record in records
            .iter()
            .filter(|r| r.status == GenerationStatus::Retiring && r.changed_at + grace <= now)
            // A retiring root still signs the CRL over the CA certificates it issued (their
            // holders' certificates are not in the certificate tables): it is never retired here.
            .filter(|r| r.ca != CaRole::Root.as_str())
        {
            if self.store.has_unexpired(&record.name, now).await? {
                continue;
            }
            if self.ca.current().signer(&record.name).is_none() {
                continue;
            }
            let crl = self.revocation.publish_final_crl(&record.name).await?;
            let audit = AuditEvent {
                at: now,
                actor: "system:lifecycle".into(),
                action: AuditAction::CaRetired.into(),
                object: format!("ca:{}", record.name),
                details: serde_json::json!({
                    "final_crl_number": crl.number,
                    "final_crl_next_update": crl.next_update,
                })
                .to_string(),
            };
            if self
                .store
                .retire_generation(&record.name, now, &audit)
                .await?
            {
                tracing::info!(generation = %record.name, crl = crl.number, "CA generation retired: its last certificate expired; final CRL published");
                retired = true;
            }
        }
        Ok(retired)
    }

    async fn warn(&self, now: i64) -> Result<(), GenerationError> {
        let records = self.store.generations().await?;
        // The warnings of active generations depend on dates only: no certificate count.
        let counts = [];
        let Ok(mut warned) = self.warned.lock() else {
            return Ok(());
        };
        for record in records
            .iter()
            .filter(|r| r.status == GenerationStatus::Active)
        {
            let view = assess(record, &counts, &self.policies, &self.config, now);
            for warning in view.warnings {
                let key = format!("{}: {warning}", view.name);
                if warned.get(&key).is_some_and(|at| now - at < DAY) {
                    continue;
                }
                tracing::warn!(generation = %view.name, "CA generation: {warning}");
                warned.insert(key, now);
            }
        }
        Ok(())
    }

    /// Ticks every interval until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.tick().await {
                tracing::error!(%error, "CA generation check failed; retrying at the next interval");
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval()) => {}
                () = crate::listener::stopped(&mut stop) => break,
            }
        }
    }
}
