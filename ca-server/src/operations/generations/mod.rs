//! CA generations for the people who run the CA and for the running server (docs/PROFILE.md
//! §3.7): adopting the generations `init` made, loading the material of every recorded
//! generation, `ca rollover`, the per-generation view `ca list` and the console show
//! ([`list`]), and the background task every replica runs ([`Lifecycle`]): it picks up a
//! rollover made anywhere, retires a generation once its last certificate expired (publishing
//! its final CRL), and warns long before an issuing CA can no longer cover a full device
//! lifetime.

mod lifecycle;
mod rollover;
mod view;

pub use lifecycle::Lifecycle;
pub use rollover::{RolledOver, rollover, rollover_event};
pub use view::{GenerationView, assess, list, rollover_before_days};

use std::path::Path;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::OutOfRange;
use crate::pki::{CaMaterial, CaRole, KeyAccess, PkiError, RolloverError};
use crate::revocation::RevocationError;
use crate::storage::{GenerationRecord, GenerationStatus, KeyCustody, Store, StoreError};

const DAY: i64 = 86_400;

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
