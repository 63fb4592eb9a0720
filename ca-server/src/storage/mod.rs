//! Persistence behind one interface: the only place with SQL. SQLite is the embedded default;
//! a PostgreSQL implementation fills the same trait.

pub mod audit_action;
mod audit_checkpoints;
mod batch;
mod batcher;
mod facts;
mod group_commit;
pub mod inventory;
mod operations;
mod postgres;
pub mod provision;
pub mod recalls;
mod sql;
mod sqlite;
mod stations;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use async_trait::async_trait;

pub use audit_action::AuditAction;
pub use audit_checkpoints::{AuditHead, CheckpointStore, StoredCheckpoint};
pub use batch::MAX_BATCH;
pub use facts::{CertificateState, EnrollmentFacts, FactsQuery, HeldCertificate};
pub use group_commit::{CommitObserver, GroupCommit, StatusReader};
pub use inventory::{
    CertificateCount, DeviceCount, DeviceListing, DeviceQuery, InventoryStore, NewestCertificate,
    StationActivity,
};
pub use operations::OperationsStore;
pub use postgres::PostgresStore;
pub use recalls::{
    NewRecall, RecallAction, RecallCount, RecallMatch, RecallQuery, RecallRecord, RecallStore,
};
pub use sqlite::SqliteStore;
pub use stations::{
    Station, StationCertificate, StationIssuance, StationQuota, StationStatus, StationStore,
    StationToken,
};

/// A device as registered from the MES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub serial: String,
    pub product: String,
    pub gtin: String,
    pub lot: Option<String>,
    pub status: DeviceStatus,
    pub registered_at: i64,
}

/// Whether a device may enroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Disabled,
}

impl DeviceStatus {
    /// The name used in the database, the CLI and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Disabled => "disabled",
        }
    }

    fn parse(text: &str) -> DeviceStatus {
        if text == "active" {
            DeviceStatus::Active
        } else {
            DeviceStatus::Disabled
        }
    }
}

/// A stored one-time token (its hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_hash: Vec<u8>,
    pub device_serial: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Set when an operator cancelled the token before it was used.
    pub revoked_at: Option<i64>,
}

/// Revocation state of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    OnHold,
    Revoked,
    Valid,
}

impl CertificateStatus {
    /// The name used in the database and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::OnHold => "on_hold",
            CertificateStatus::Revoked => "revoked",
            CertificateStatus::Valid => "valid",
        }
    }

    /// Parses a status name strictly (`valid`, `on_hold`, `revoked`); `None` for anything else.
    pub fn from_name(text: &str) -> Option<CertificateStatus> {
        [
            CertificateStatus::OnHold,
            CertificateStatus::Revoked,
            CertificateStatus::Valid,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    fn parse(text: &str) -> CertificateStatus {
        match text {
            "valid" => CertificateStatus::Valid,
            "on_hold" => CertificateStatus::OnHold,
            // Anything unexpected is treated as the most restrictive state.
            _ => CertificateStatus::Revoked,
        }
    }
}

/// An issued certificate, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub serial: String,
    pub issuer: String,
    pub device_serial: String,
    pub product: String,
    pub policy_oid: String,
    pub not_before: i64,
    pub not_after: i64,
    pub spki_sha256: Vec<u8>,
    pub der: Vec<u8>,
    pub status: CertificateStatus,
    pub authorized_by: String,
    /// The certificate this one replaced at re-enrollment.
    pub supersedes: Option<String>,
    pub issued_at: i64,
}

/// An audit event before it is chained and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    /// JSON object with the event's details.
    pub details: String,
}

/// A stored, chained audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEvent {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// What an operator may do through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only: certificates, devices, the audit trail.
    Auditor,
    /// Devices and tokens.
    Registrar,
}

impl Role {
    /// The name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Registrar => "registrar",
        }
    }

    /// Parses a role name; `None` for anything else.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "registrar" => Some(Role::Registrar),
            _ => None,
        }
    }
}

/// How an operator authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorKind {
    /// A bearer API key (only its SHA-256 is stored).
    ApiKey,
    /// A client certificate chaining to our root, known by its SHA-256 fingerprint.
    Certificate,
}

impl OperatorKind {
    /// The name used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorKind::ApiKey => "api_key",
            OperatorKind::Certificate => "certificate",
        }
    }

    fn parse(text: &str) -> OperatorKind {
        if text == "api_key" {
            OperatorKind::ApiKey
        } else {
            OperatorKind::Certificate
        }
    }
}

/// An admin API credential and the role it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    pub kind: OperatorKind,
    pub role: Role,
    /// API key id, or the certificate's SHA-256 fingerprint (lowercase hex).
    pub lookup: String,
    /// SHA-256 of the whole API key (`None` for certificates).
    pub secret_sha256: Option<Vec<u8>>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for OperatorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key hash is elided: it is a credential verifier.
        f.debug_struct("OperatorRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("role", &self.role)
            .field("lookup", &self.lookup)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// Filters and paging for a certificate search; every filter is optional and they combine
/// with AND. Results are ordered by serial; `after` continues from a previous page's last serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateQuery {
    pub device: Option<String>,
    pub product: Option<String>,
    /// The device's production lot.
    pub lot: Option<String>,
    pub status: Option<CertificateStatus>,
    /// Only certificates with `from < not_after <= to` (Unix seconds).
    pub not_after_within: Option<(i64, i64)>,
    /// Keyset cursor: only serials greater than this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: String,
    pub revoked_at: i64,
    /// RFC 5280 reason name, e.g. `keyCompromise`.
    pub reason: Option<String>,
}

/// What a CRL is built from: the next number and the revoked certificates at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSnapshot {
    pub number: i64,
    pub entries: Vec<RevokedEntry>,
}

/// A signed CRL as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedCrl {
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

/// Everything one issuance writes, committed together or not at all.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub certificate: CertificateRecord,
    /// The one-time token consumed by this issuance, if it was token-authorized.
    pub consume_token: Option<Vec<u8>>,
    /// The station hour this issuance counts against, if a station authorized it.
    pub station_quota: Option<StationQuota>,
    /// An initial enrollment (token or station): refused at commit while the device holds a
    /// certificate neither revoked nor expired, and for a key certified before for any device.
    /// Any issuance is refused for a key certified for another device.
    pub initial: bool,
    pub audit: AuditEvent,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("device {0} is already registered")]
    DeviceExists(String),
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error("the token was used or expired while this request was in flight")]
    TokenNotConsumable,
    #[error("certificate serial {0} already exists")]
    SerialCollision(String),
    #[error("certificate {0} has already been superseded by a re-enrollment")]
    AlreadySuperseded(String),
    #[error("the public key is already certified for device {holder}")]
    KeyHeld { holder: String },
    #[error("device {0} already holds a certificate that is neither revoked nor expired")]
    DeviceHoldsCertificate(String),
    #[error("device {0} is named by an active recall")]
    DeviceRecalled(String),
    #[error("station {0} already exists")]
    StationExists(String),
    #[error("station {0} does not exist or is disabled")]
    UnknownStation(String),
    #[error("station {station} reached its hourly issuance limit")]
    StationRateLimited { station: String },
    #[error("an operator named `{0}` already exists")]
    OperatorExists(String),
    #[error("the storage batching task has stopped")]
    WriterStopped,
    #[error("storage is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("storage error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}` (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
}

/// Opens (creating or migrating as needed) the store a database URL names: `sqlite:` or
/// `postgres://` / `postgresql://`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

impl StoreError {
    /// True for failures of the database itself (unreachable, erroring, migrations), false for
    /// the decisions storage reports (a used token, a taken serial, a rate limit).
    pub fn is_database_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Database(_)
                | StoreError::Migration(_)
                | StoreError::WriterStopped
        )
    }
}

/// The storage interface every backend implements.
#[async_trait]
pub trait Store:
    StationStore
    + CheckpointStore
    + InventoryStore
    + OperationsStore
    + RecallStore
    + Send
    + Sync
    + 'static
{
    /// Registers devices: all of them, or none if any serial exists.
    async fn register_devices(
        &self,
        devices: &[Device],
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    /// A device by serial.
    async fn device(&self, serial: &str) -> Result<Option<Device>, StoreError>;
    /// Which of `serials` are already registered.
    async fn registered_serials(&self, serials: &[String]) -> Result<Vec<String>, StoreError>;
    /// Stores token hashes, all or none.
    async fn create_tokens(
        &self,
        tokens: &[TokenRecord],
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    /// A token by its hash.
    async fn token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError>;
    /// The device serials holding a certificate for this public key (SHA-256 of the SPKI).
    async fn key_holders(&self, spki_sha256: &[u8]) -> Result<Vec<String>, StoreError>;
    /// Stores a certificate, consumes its token and appends its audit event in one transaction:
    /// a batch of one, so a single issuance passes the same admission under the same lock.
    async fn commit_issuance(&self, issuance: &Issuance, now: i64) -> Result<(), StoreError> {
        match self.commit_batch(std::slice::from_ref(issuance), now).await {
            Ok(mut verdicts) => verdicts.pop().unwrap_or(Ok(())),
            // Admission already ruled out every other unique key (tokens, supersedes).
            Err(StoreError::Database(sqlx::Error::Database(db))) if db.is_unique_violation() => {
                Err(StoreError::SerialCollision(
                    issuance.certificate.serial.clone(),
                ))
            }
            Err(error) => Err(error),
        }
    }
    /// Commits a whole batch in one transaction (group commit), all or nothing: one verdict per
    /// issuance, in order, where a refused issuance (token already used, certificate already
    /// superseded, station over its limit) is simply left out. `Err` when the transaction
    /// itself failed; nothing was written then.
    async fn commit_batch(
        &self,
        batch: &[Issuance],
        now: i64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;
    /// Commits a batch: together when possible, else one issuance at a time so that each
    /// request gets its own precise answer (e.g. the one with a colliding serial).
    async fn commit_issuances(&self, batch: &[Issuance], now: i64) -> Vec<Result<(), StoreError>> {
        if batch.len() > 1 {
            match self.commit_batch(batch, now).await {
                Ok(verdicts) => return verdicts,
                Err(error) => tracing::warn!(
                    %error,
                    size = batch.len(),
                    "group commit failed; committing the batch one issuance at a time"
                ),
            }
        }
        let mut verdicts = Vec::with_capacity(batch.len());
        for issuance in batch {
            verdicts.push(self.commit_issuance(issuance, now).await);
        }
        verdicts
    }
    /// Everything initial enrollment decisions read (device, token, key holder, the certificate
    /// the device holds), for several requests in one round trip; one answer per query, in order.
    async fn enrollment_facts(
        &self,
        queries: &[FactsQuery],
    ) -> Result<Vec<EnrollmentFacts>, StoreError>;
    /// Issuer and revocation state of several certificates in one round trip (`None` for a
    /// serial not on record), in the order asked.
    async fn certificate_states(
        &self,
        serials: &[String],
    ) -> Result<Vec<Option<CertificateState>>, StoreError>;
    /// A certificate by hex serial.
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Sets a certificate's revocation state (revoke, hold, release); false if unknown.
    async fn set_status(
        &self,
        serial: &str,
        status: CertificateStatus,
        reason: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError>;
    /// Changes a certificate's state and appends the audit event in one transaction.
    async fn change_status(
        &self,
        serial: &str,
        status: CertificateStatus,
        reason: Option<&str>,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Changes the state of many certificates at once (a recalled lot, a compromised line)
    /// and appends the audit events, in one transaction; unknown serials are skipped.
    async fn change_status_many(
        &self,
        serials: &[String],
        status: CertificateStatus,
        reason: Option<&str>,
        at: i64,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    /// Atomically takes the next CRL number of `issuer` and the revoked (and held) certificates
    /// as of that moment: a higher number never sees fewer changes than a lower one.
    async fn crl_snapshot(&self, issuer: &str) -> Result<CrlSnapshot, StoreError>;
    /// Stores a signed CRL unless a newer one is already stored.
    async fn publish_crl(&self, issuer: &str, crl: &PublishedCrl) -> Result<(), StoreError>;
    /// When and why a certificate was revoked or held (`None` if it is valid or unknown).
    async fn revocation_of(&self, serial: &str) -> Result<Option<RevokedEntry>, StoreError>;
    /// The latest published CRL of `issuer`.
    async fn latest_crl(&self, issuer: &str) -> Result<Option<PublishedCrl>, StoreError>;
    /// The certificate that superseded `serial`, if it was re-enrolled.
    async fn successor(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates of a device, newest first.
    async fn certificates_for_device(
        &self,
        serial: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Appends audit events (outside an issuance).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// The audit trail in order.
    async fn audit_events(&self) -> Result<Vec<StoredAuditEvent>, StoreError>;
    /// Re-creates the triggers that make `audit_events` append-only if any is missing (dropped
    /// by someone with write access to the database); returns the names it re-created.
    async fn restore_audit_protection(&self) -> Result<Vec<&'static str>, StoreError>;
    /// The `policy.loaded` and `policy.changed` events, in order: what each policy file held
    /// when last recorded.
    async fn policy_events(&self) -> Result<Vec<StoredAuditEvent>, StoreError>;
    /// Up to `limit` audit events with `seq > after_seq`, in order.
    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;
    /// Certificates matching a search, ordered by serial, at most `query.limit`.
    async fn search_certificates(
        &self,
        query: &CertificateQuery,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Adds an admin API credential and its audit event; `OperatorExists` if the name is taken.
    async fn add_operator(
        &self,
        operator: &OperatorRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// A credential by its lookup value (API key id or certificate fingerprint).
    async fn operator(&self, lookup: &str) -> Result<Option<OperatorRecord>, StoreError>;
    /// Every credential, revoked ones included, by name.
    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError>;
    /// Revokes a credential and appends the audit event; false if no active one has that name.
    async fn revoke_operator(
        &self,
        name: &str,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
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

/// Classifies a sqlx error: connection-level failures are "unavailable" (HTTP 503).
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
        sqlx::Error::Database(ref db) if db.message().contains("database is locked") => {
            StoreError::Unavailable(error)
        }
        // PostgreSQL connection exceptions (08xxx) and operator intervention (57xxx: shutdown,
        // terminated backends) mean "try again", not "bad request".
        sqlx::Error::Database(ref db)
            if db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")) =>
        {
            StoreError::Unavailable(error)
        }
        other => StoreError::Database(other),
    }
}

#[cfg(test)]
mod tests;
