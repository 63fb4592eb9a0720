//! The `Store` trait: the storage interface every backend implements, composed of the role
//! traits (stations, inventory, recalls, checkpoints, operations, console) and the core record methods.

use async_trait::async_trait;

use super::{
    AttestationStore, AuditEvent, CertificateQuery, CertificateRecord, CertificateState,
    CertificateStatus, CheckpointStore, ConsoleStore, CrlSnapshot, Device, EnrollmentFacts,
    FactsQuery, GenerationStore, InventoryStore, Issuance, OperationsStore, OperatorRecord,
    PublishedCrl, RecallStore, RevokedEntry, StationStore, StoreError, StoredAuditEvent,
    TokenRecord,
};

/// The storage interface every backend implements.
#[async_trait]
pub trait Store:
    StationStore
    + AttestationStore
    + CheckpointStore
    + GenerationStore
    + InventoryStore
    + OperationsStore
    + RecallStore
    + ConsoleStore
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
