//! CA generations for the people who run the CA and for the running server (docs/PROFILE.md
//! §3.7): adopting the generations `init` made, loading the material of every recorded
//! generation, `ca rollover`, the per-generation view `ca list` and the console show
//! ([`list`]), and the background task every replica runs ([`Lifecycle`]): it picks up a
//! rollover made anywhere, retires a generation once its last certificate expired (publishing
//! its final CRL), and warns long before an issuing CA can no longer cover a full device
//! lifetime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use iomt_core::policy::PolicySet;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{CaLifecycle, OutOfRange, Settings};
use crate::pki::{
    CaHandle, CaMaterial, CaRole, GenerationId, HierarchyParams, KeyAccess, KeyStore,
    NextGeneration, PkiError, RolloverError, RolloverParams, make_next, make_next_root,
    write_root_files,
};
use crate::revocation::{Revocation, RevocationError};
use crate::storage::{
    AuditAction, AuditEvent, GenerationRecord, GenerationStatus, IssuerCount, KeyCustody, Store,
    StoreError,
};

const DAY: i64 = 86_400;
/// Margin the default planned rollover date leaves before an issuing CA stops covering a full
/// certificate lifetime.
const DEFAULT_MARGIN_DAYS: i64 = 180;

/// Why a generation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Rollover(#[from] RolloverError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] OutOfRange),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error("the key task stopped: {0}")]
    Task(String),
}

/// The generations `init` made (G1 of every CA whose certificate is in `dir/ca/`).
pub fn initial_records(dir: &Path, now: i64) -> Result<Vec<GenerationRecord>, PkiError> {
    let mut records = Vec::new();
    for role in CaRole::ALL {
        let path = dir.join("ca").join(format!("{}.crt.pem", role.as_str()));
        if !path.exists() {
            // An offline root not imported yet: nothing to adopt.
            continue;
        }
        let der = crate::pki::read_certificate(&path)?;
        let (not_before, not_after) = validity(&der).ok_or_else(|| PkiError::Invalid {
            path: path.clone(),
            reason: "the certificate does not parse".into(),
        })?;
        records.push(GenerationRecord {
            name: role.as_str().to_owned(),
            ca: role.as_str().to_owned(),
            generation: 1,
            status: GenerationStatus::Active,
            not_before: Some(not_before),
            not_after: Some(not_after),
            der: Some(der.to_vec()),
            custody: KeyCustody::DataDir,
            key: None,
            created_at: now,
            changed_at: now,
            links: None,
        });
    }
    Ok(records)
}

fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let validity = cert.validity();
    Some((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// Records G1 of every CA unless recorded (idempotent: every replica runs it at start).
pub async fn adopt(store: &dyn Store, dir: &Path) -> Result<(), GenerationError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    store.adopt_generations(&initial_records(dir, now)?).await?;
    Ok(())
}

/// The CA material of every recorded generation (adopting G1 first); keys are unsealed on a
/// blocking thread.
pub async fn load(
    dir: &Path,
    access: &KeyAccess,
    store: &dyn Store,
) -> Result<CaMaterial, GenerationError> {
    adopt(store, dir).await?;
    load_recorded(dir, access, store).await
}

/// Like [`load`], writing nothing (a command that must change nothing on a wrong passphrase).
pub async fn load_recorded(
    dir: &Path,
    access: &KeyAccess,
    store: &dyn Store,
) -> Result<CaMaterial, GenerationError> {
    let records = store.generations().await?;
    let (dir, access) = (dir.to_path_buf(), access.clone());
    tokio::task::spawn_blocking(move || CaMaterial::load_generations(&dir, &access, &records))
        .await
        .map_err(|e| GenerationError::Task(e.to_string()))?
        .map_err(GenerationError::from)
}

/// One generation as `ca list` and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GenerationView {
    /// `basic`, `basic-g2`, ...
    pub name: String,
    /// The CA (`root`, `basic`, ..., `tls`).
    pub ca: String,
    /// `G1`, `G2`, ...
    pub generation: String,
    pub status: String,
    /// Where its key is: `data-dir` (made by `init`), `sealed` or `pkcs11` (made by `ca
    /// rollover`, referenced from the database).
    pub custody: String,
    /// Validity of its certificate (Unix seconds); absent while pending.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Certificates it issued that are unexpired and not revoked (issuing and station CAs).
    pub valid_certificates: Option<u64>,
    /// When the last certificate it issued expires (issuing and station CAs with any left).
    pub last_certificate_expires: Option<i64>,
    /// The planned rollover date: notAfter − `rollover_before_days` (active generations).
    pub planned_rollover: Option<i64>,
    /// The last moment a certificate of full lifetime fits before notAfter (issuing and
    /// station CAs); later ones are capped at notAfter.
    pub full_lifetime_until: Option<i64>,
    /// What the operator must know or do, in sentences.
    pub warnings: Vec<String>,
}

/// The longest certificate a CA issues, in days: its level's and products' `validity.max_days`,
/// a station certificate's year, the longest subordinate CA lifetime for the root.
fn longest_issued_days(role: CaRole, policies: &PolicySet, lifecycle: &CaLifecycle) -> i64 {
    match role {
        CaRole::Issuing(level) => policies
            .products()
            .filter(|p| p.policy.level == level)
            .chain(std::iter::once(policies.level(level)))
            .map(|p| i64::from(p.validity.max_days))
            .max()
            .unwrap_or(0),
        CaRole::Station => crate::authority::STATION_VALIDITY.whole_days(),
        CaRole::Root => ["basic", "substantial", "high", "station"]
            .iter()
            .filter_map(|name| lifecycle.lifetime(name).ok())
            .map(|d| d.whole_days())
            .max()
            .unwrap_or(0),
        CaRole::Tls => 0,
    }
}

/// The planned rollover lead of a CA, in days (configured, or longest issued + 180).
pub fn rollover_before_days(role: CaRole, policies: &PolicySet, lifecycle: &CaLifecycle) -> i64 {
    lifecycle
        .of(role.as_str())
        .and_then(|s| s.rollover_before_days)
        .map(i64::from)
        .unwrap_or_else(|| longest_issued_days(role, policies, lifecycle) + DEFAULT_MARGIN_DAYS)
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// The view of one generation at `now`, with its warnings.
pub fn assess(
    record: &GenerationRecord,
    counts: &[IssuerCount],
    policies: &PolicySet,
    lifecycle: &CaLifecycle,
    now: i64,
) -> GenerationView {
    let id = GenerationId::parse(&record.name);
    let role = id.map(|g| g.role);
    let subordinate = role.is_some_and(CaRole::is_subordinate_ca);
    let count = counts.iter().find(|c| c.issuer == record.name);
    let mut view = GenerationView {
        name: record.name.clone(),
        ca: record.ca.clone(),
        generation: id.map(GenerationId::label).unwrap_or_default(),
        status: record.status.as_str().to_owned(),
        custody: record.custody.as_str().to_owned(),
        not_before: record.not_before,
        not_after: record.not_after,
        valid_certificates: subordinate.then(|| count.map_or(0, |c| c.valid)),
        last_certificate_expires: count.filter(|_| subordinate).map(|c| c.last_not_after),
        planned_rollover: None,
        full_lifetime_until: None,
        warnings: Vec::new(),
    };
    let (Some(role), Some(not_after)) = (role, record.not_after) else {
        if record.status == GenerationStatus::Pending {
            view.warnings.push(format!(
                "pending: have the offline root sign {}/{}.csr.pem, then `ca-server ca import`",
                crate::pki::ROLLOVER_DIR,
                record.name
            ));
        }
        return view;
    };
    let flag = role.as_str();
    if not_after <= now {
        view.warnings
            .push(format!("expired on {}", date(not_after)));
    }
    match record.status {
        GenerationStatus::Active => {
            let lead = rollover_before_days(role, policies, lifecycle);
            let planned = not_after - lead * DAY;
            view.planned_rollover = Some(planned);
            let longest = longest_issued_days(role, policies, lifecycle);
            if subordinate {
                let full = not_after - longest * DAY;
                view.full_lifetime_until = Some(full);
                if now >= full && not_after > now {
                    view.warnings.push(format!(
                        "can no longer cover a full certificate lifetime ({longest} days): new \
                         certificates end at its notAfter {}; roll over now: `ca-server ca \
                         rollover --ca {flag}`",
                        date(not_after)
                    ));
                }
            }
            if now >= planned && not_after > now {
                view.warnings.push(format!(
                    "planned rollover date {} reached ({lead} days before notAfter {}): `ca-server \
                     ca rollover --ca {flag}`",
                    date(planned),
                    date(not_after)
                ));
            }
        }
        GenerationStatus::Retiring if role == CaRole::Root => {
            view.warnings.push(format!(
                "retiring root: signs only its CRL and OCSP answers over the CA certificates it \
                 issued; its link certificates carry devices to the next root until its notAfter \
                 {}; each issuing CA moves under the new root with its own `ca-server ca \
                 rollover --ca <name>`",
                date(not_after)
            ));
        }
        GenerationStatus::Retiring => {
            let until = count.map(|c| c.last_not_after).unwrap_or(now);
            view.warnings.push(format!(
                "retiring: issues nothing; keeps its CRL and OCSP until its last certificate \
                 expires ({})",
                date(until)
            ));
        }
        GenerationStatus::Retired | GenerationStatus::Pending => {}
    }
    view
}

/// Every generation (adopting G1 first), assessed at `now`.
pub async fn list(
    store: &dyn Store,
    dir: &Path,
    policies: &PolicySet,
    lifecycle: &CaLifecycle,
    now: i64,
) -> Result<Vec<GenerationView>, GenerationError> {
    adopt(store, dir).await?;
    let records = store.generations().await?;
    let counts = store.valid_by_issuer(now).await?;
    let mut views: Vec<GenerationView> = records
        .iter()
        .map(|r| assess(r, &counts, policies, lifecycle, now))
        .collect();
    let order = |v: &GenerationView| {
        let id = GenerationId::parse(&v.name);
        (
            id.map(|g| CaRole::ALL.iter().position(|r| *r == g.role)),
            id.map(|g| g.number),
        )
    };
    views.sort_by_key(order);
    Ok(views)
}

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
            let audit = AuditEvent {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::CaRolledOver.into(),
                object: format!("ca:{}", record.name),
                details: serde_json::json!({
                    "ca": role.as_str(),
                    "previous": previous,
                    "custody": record.custody.as_str(),
                    "not_after": not_after,
                    "root_sha256": crate::pki::fingerprint::sha256_colon_hex(
                        record.der.as_deref().unwrap_or_default()
                    ),
                    "links": ["new-with-old", "old-with-new"],
                })
                .to_string(),
            };
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
            let audit = AuditEvent {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::CaRolledOver.into(),
                object: format!("ca:{}", record.name),
                details: serde_json::json!({
                    "ca": role.as_str(),
                    "previous": previous,
                    "custody": record.custody.as_str(),
                    "not_after": not_after,
                })
                .to_string(),
            };
            store.activate_generation(&record, &audit).await?;
            tracing::info!(ca = role.as_str(), %previous, next = %record.name, "CA rolled over");
            Ok(RolledOver::Active {
                previous,
                next: record.name,
                not_after,
            })
        }
        NextGeneration::Pending { record, csr_dir } => {
            let audit = AuditEvent {
                at: now,
                actor: actor.to_owned(),
                action: AuditAction::CaRolloverPending.into(),
                object: format!("ca:{}", record.name),
                details: serde_json::json!({
                    "ca": role.as_str(),
                    "custody": record.custody.as_str(),
                    "csr_dir": csr_dir.display().to_string(),
                })
                .to_string(),
            };
            store.add_pending_generation(&record, &audit).await?;
            Ok(RolledOver::Pending {
                next: record.name,
                csr_dir,
            })
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: GenerationStatus, not_after: i64) -> GenerationRecord {
        let id = GenerationId::parse(name).expect("name");
        GenerationRecord {
            name: name.into(),
            ca: id.role.as_str().into(),
            generation: i64::from(id.number),
            status,
            not_before: Some(0),
            not_after: Some(not_after),
            der: None,
            custody: KeyCustody::DataDir,
            key: None,
            created_at: 0,
            changed_at: 0,
            links: None,
        }
    }

    #[test]
    fn warnings_start_at_the_planned_date_and_again_when_a_full_lifetime_no_longer_fits() {
        let policies = PolicySet::from_sources(iomt_core::policy::shipped_sources())
            .expect("shipped policies");
        let mut lifecycle = CaLifecycle::default();
        lifecycle.basic.rollover_before_days = Some(800);
        let longest = longest_issued_days(
            CaRole::Issuing(iomt_core::policy::Level::Basic),
            &policies,
            &lifecycle,
        );
        assert!(longest > 0);
        let not_after = 10_000 * DAY;
        let basic = record("basic", GenerationStatus::Active, not_after);
        let at = |days_before: i64| {
            assess(
                &basic,
                &[],
                &policies,
                &lifecycle,
                not_after - days_before * DAY,
            )
            .warnings
        };
        assert!(at(801).is_empty(), "{:?}", at(801));
        assert_eq!(at(800).len(), 1, "planned date reached");
        assert!(at(800)[0].contains("planned rollover"));
        let capped = at(longest);
        assert_eq!(capped.len(), 2, "{capped:?}");
        assert!(capped[0].contains("full certificate lifetime"));
        let view = assess(&basic, &[], &policies, &lifecycle, 0);
        assert_eq!(view.planned_rollover, Some(not_after - 800 * DAY));
        assert_eq!(view.full_lifetime_until, Some(not_after - longest * DAY));
        assert_eq!(view.valid_certificates, Some(0));

        // The default lead is the longest certificate plus 180 days.
        assert_eq!(
            rollover_before_days(
                CaRole::Issuing(iomt_core::policy::Level::High),
                &policies,
                &lifecycle
            ),
            longest_issued_days(
                CaRole::Issuing(iomt_core::policy::Level::High),
                &policies,
                &lifecycle
            ) + 180
        );
        let retiring = record("basic", GenerationStatus::Retiring, not_after);
        let counts = [IssuerCount {
            issuer: "basic".into(),
            valid: 3,
            unexpired: 4,
            last_not_after: 77 * DAY,
        }];
        let view = assess(&retiring, &counts, &policies, &lifecycle, 0);
        assert_eq!(view.valid_certificates, Some(3));
        assert!(
            view.warnings[0].starts_with("retiring"),
            "{:?}",
            view.warnings
        );
    }
}
