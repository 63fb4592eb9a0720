//! Persistence behind one interface: the only place with SQL. SQLite is the embedded default;
//! a PostgreSQL implementation fills the same trait.
//!
//! | file | holds |
//! |---|---|
//! | `model.rs`, `audit_action.rs` | the records and the audit vocabulary |
//! | `error.rs` | `StoreError` and the classification of database failures |
//! | `store.rs` | the `Store` trait, composed of the role traits below |
//! | `stations.rs`, `attestation.rs`, `generations.rs`, `inventory.rs`, `recalls.rs`, `operations.rs`, `audit_checkpoints.rs`, `provision.rs`, `console.rs` | one role trait each, with its records |
//! | `sql/` | statements written once for both backends (`QueryBuilder` writes the placeholders) |
//! | `batch.rs`, `facts.rs` | the issuance batch and enrollment facts, generic over the database |
//! | `batcher.rs`, `group_commit.rs` | the group commit: concurrent issuances share one durable commit |
//! | `sqlite.rs` + `sqlite/`, `postgres.rs` + `postgres/` | connecting (SQLite's driver threads at the priority `serve` asks for: `sqlite/priority.rs`), write transactions, the group writer, what each dialect does differently |

pub mod attestation;
pub mod audit_action;
mod audit_checkpoints;
mod batch;
mod batcher;
pub mod console;
mod error;
mod facts;
pub mod generations;
mod group_commit;
pub mod inventory;
mod model;
mod operations;
mod postgres;
pub mod provision;
pub mod recalls;
mod sql;
mod sqlite;
mod stations;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use attestation::{AttestationClaim, AttestationStore, ChallengeRecord, TpmBinding, TpmRoot};
pub use audit_action::AuditAction;
pub use audit_checkpoints::{AuditHead, CheckpointStore, StoredCheckpoint};
pub use batch::MAX_BATCH;
pub use console::{ConsoleSession, ConsoleStore, ExpiringOnDay, IssuedInHour};
pub use error::StoreError;
pub(crate) use error::classify;
pub use facts::{CertificateState, EnrollmentFacts, FactsQuery, HeldCertificate};
pub use generations::{
    GenerationRecord, GenerationStatus, GenerationStore, IssuerCount, KeyCustody, RootLinks,
};
pub use group_commit::{CommitObserver, GroupCommit, StatusReader};
pub use inventory::{
    CertificateCount, DeviceCount, DeviceListing, DeviceQuery, InventoryStore, NewestCertificate,
    StationActivity,
};
pub use model::*;
pub use operations::OperationsStore;
pub use postgres::PostgresStore;
pub use recalls::{
    NewRecall, RecallAction, RecallCount, RecallMatch, RecallQuery, RecallRecord, RecallStore,
};
pub use sqlite::{DriverPriority, SqliteStore};
pub use stations::{
    Station, StationCertificate, StationIssuance, StationQuota, StationStatus, StationStore,
    StationToken,
};
pub use store::Store;

/// Opens (creating or migrating as needed) the store a database URL names: `sqlite:` or
/// `postgres://` / `postgresql://`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with_priority(url, DriverPriority::Normal).await
}

/// [`open`], with SQLite's driver threads scheduled as `priority` says (PostgreSQL's run in
/// the database server and are left as they are).
pub async fn open_with_priority(
    url: &str,
    priority: DriverPriority,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect_with_priority(url, priority).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// The `certificates` columns every backend reads and writes, in this order.
const CERTIFICATE_COLUMNS: &str = "serial, issuer, device_serial, product, policy_oid, not_before, \
     not_after, spki_sha256, der, status, authorized_by, supersedes, issued_at";

/// Hash of an audit event chained to its predecessor: SHA-256 over the previous hash and the
/// event's fields, each length-prefixed so no two events can collide by shifting bytes.
pub fn chain_hash(prev_hash: &[u8], event: &AuditEvent) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let at = event.at.to_be_bytes();
    for part in [
        prev_hash,
        &at[..],
        event.actor.as_bytes(),
        event.action.as_bytes(),
        event.object.as_bytes(),
        event.details.as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

#[cfg(test)]
mod tests;
