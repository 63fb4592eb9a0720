//! CA generations as stored (`ca_generations`): which generation of each CA is active, which
//! are retiring or retired, and for the ones `ca rollover` made, their certificate and key
//! reference. Every backend implements [`GenerationStore`] (SQL in `sql/generations.rs`).

use async_trait::async_trait;

use super::{AuditEvent, StoreError};

/// Where a generation's signing key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCustody {
    /// A generation made by `init`: its key is found in the data directory by name (a sealed
    /// file, or the CKA_ID recorded in `DIR/ca/pkcs11.toml`).
    DataDir,
    /// A sealed key (`IOMT ENCRYPTED PRIVATE KEY` PEM, under the CA passphrase) in `key`.
    Sealed,
    /// A key inside the CA's PKCS#11 token; `key` holds its CKA_ID (hex).
    Pkcs11,
}

impl KeyCustody {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyCustody::DataDir => "data-dir",
            KeyCustody::Pkcs11 => "pkcs11",
            KeyCustody::Sealed => "sealed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<KeyCustody> {
        [KeyCustody::DataDir, KeyCustody::Pkcs11, KeyCustody::Sealed]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// The life stage of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GenerationStatus {
    /// Issues every new certificate and renewal of its CA.
    Active,
    /// Made by `ca rollover` under an offline root: a key and a CSR, waiting for `ca import`.
    Pending,
    /// Expired: the last certificate it issued has expired; its final CRL stays published.
    Retired,
    /// Superseded by a newer generation: issues nothing, still publishes its CRL and answers
    /// OCSP for the certificates it issued until the last one expires.
    Retiring,
}

impl GenerationStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationStatus::Active => "active",
            GenerationStatus::Pending => "pending",
            GenerationStatus::Retired => "retired",
            GenerationStatus::Retiring => "retiring",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<GenerationStatus> {
        [
            GenerationStatus::Active,
            GenerationStatus::Pending,
            GenerationStatus::Retired,
            GenerationStatus::Retiring,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One generation of one CA.
#[derive(Clone, PartialEq, Eq)]
pub struct GenerationRecord {
    /// What certificates, CRLs and URLs call it: `basic` for G1, `basic-g2` for G2.
    pub name: String,
    /// The CA: `root`, `basic`, `substantial`, `high`, `station` or `tls`.
    pub ca: String,
    /// 1 for the generation `init` made, then 2, 3, ...
    pub generation: i64,
    pub status: GenerationStatus,
    /// Validity of its certificate (Unix seconds); `None` while pending.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Its certificate (DER); `None` while pending.
    pub der: Option<Vec<u8>>,
    pub custody: KeyCustody,
    /// The sealed key (PEM bytes) or the token key's CKA_ID; `None` for [`KeyCustody::DataDir`].
    pub key: Option<Vec<u8>>,
    pub created_at: i64,
    pub changed_at: i64,
    /// A root generation after G1: its link certificates (RFC 4210 §4.4); `None` otherwise.
    pub links: Option<RootLinks>,
}

/// The two link certificates made with a new root generation (RFC 4210 §4.4), DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootLinks {
    /// NewWithOld: the new root's subject and key, signed by the previous root's key.
    pub new_with_old: Vec<u8>,
    /// OldWithNew: the previous root's subject and key, signed by the new root's key.
    pub old_with_new: Vec<u8>,
}

impl std::fmt::Debug for GenerationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key reference is elided: a sealed key is still key material.
        f.debug_struct("GenerationRecord")
            .field("name", &self.name)
            .field("status", &self.status)
            .field("not_after", &self.not_after)
            .field("custody", &self.custody)
            .finish_non_exhaustive()
    }
}

/// How many certificates a generation issued are still unexpired, and how many of those are
/// valid (not revoked; a hold still counts as in use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerCount {
    /// The generation's name (the certificates' `issuer`).
    pub issuer: String,
    pub valid: u64,
    /// Unexpired, whatever their status: what its CRL must still cover.
    pub unexpired: u64,
    /// The latest notAfter among them (Unix seconds).
    pub last_not_after: i64,
}

/// The CA generations; every backend implements it.
#[async_trait]
pub trait GenerationStore: Send + Sync {
    /// Every generation, by CA then generation number.
    async fn generations(&self) -> Result<Vec<GenerationRecord>, StoreError>;
    /// Records the generations `init` made (G1) unless already recorded; idempotent, so every
    /// replica may run it at start.
    async fn adopt_generations(&self, initial: &[GenerationRecord]) -> Result<(), StoreError>;
    /// Records a pending generation (a key and a CSR waiting for the offline root).
    async fn add_pending_generation(
        &self,
        pending: &GenerationRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Makes `next` (status active) the active generation of its CA in one transaction: the
    /// active generation `next.generation - 1` becomes retiring, a pending row of the same name
    /// is replaced. [`StoreError::GenerationConflict`] when that generation is not the active one
    /// any more (a concurrent rollover won); nothing is written then.
    async fn activate_generation(
        &self,
        next: &GenerationRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Marks a retiring generation retired; false when it was not retiring.
    async fn retire_generation(
        &self,
        name: &str,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Per issuer (device certificates and station certificates), the certificates not expired
    /// at `now`, and how many of them are not revoked.
    async fn valid_by_issuer(&self, now: i64) -> Result<Vec<IssuerCount>, StoreError>;
    /// True when `issuer` signed a certificate (device or station) that is unexpired at `now`,
    /// whatever its status: what its CRL must still cover. One index probe.
    async fn has_unexpired(&self, issuer: &str, now: i64) -> Result<bool, StoreError>;
}

/// The stored columns, in this order.
pub(super) const COLUMNS: &str = "name, ca, generation, status, not_before, not_after, der, \
     custody, key, created_at, changed_at, link_new_with_old, link_old_with_new";

/// A row of [`COLUMNS`].
pub(super) type GenerationRow = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    String,
    Option<Vec<u8>>,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// A stored row as a record; a row with an unknown status or custody is a damaged database.
pub(super) fn from_row(row: GenerationRow) -> Result<GenerationRecord, StoreError> {
    let (
        name,
        ca,
        generation,
        status,
        not_before,
        not_after,
        der,
        custody,
        key,
        created,
        changed,
        new_with_old,
        old_with_new,
    ) = row;
    let status = GenerationStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("generation {name}: status `{status}`")))?;
    let custody = KeyCustody::parse(&custody)
        .ok_or_else(|| StoreError::Corrupt(format!("generation {name}: custody `{custody}`")))?;
    Ok(GenerationRecord {
        name,
        ca,
        generation,
        status,
        not_before,
        not_after,
        der,
        custody,
        key,
        created_at: created,
        changed_at: changed,
        links: new_with_old
            .zip(old_with_new)
            .map(|(new_with_old, old_with_new)| RootLinks {
                new_with_old,
                old_with_new,
            }),
    })
}
