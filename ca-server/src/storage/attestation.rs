//! TPM attestation records: the manufacturer roots EK certificates chain to, the single-use
//! challenges sealed to an EK and AK, and the TPM each device is bound to. The role trait
//! [`AttestationStore`] is implemented once for both backends (`sql/attestation.rs`); the
//! challenge is consumed and the binding made inside the issuance transaction
//! ([`check_claims`], [`write_claims`]), so a refused request leaves its challenge unused.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{AuditEvent, Issuance, StoreError};

/// A TPM manufacturer root certificate the operator trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmRoot {
    /// SHA-256 of `der`.
    pub sha256: Vec<u8>,
    pub subject: String,
    pub der: Vec<u8>,
    pub added_at: i64,
}

/// A challenge the CA sealed to one TPM (only the secret's digest is kept).
#[derive(Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub secret_sha256: Vec<u8>,
    pub device_serial: String,
    /// SHA-256 of the EK certificate the challenge was sealed to.
    pub ek_sha256: Vec<u8>,
    /// The AK's `TPMT_PUBLIC`.
    pub ak_public: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl std::fmt::Debug for ChallengeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeRecord")
            .field("device_serial", &self.device_serial)
            .field("ek_sha256", &hex::encode(&self.ek_sha256))
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// The TPM a device is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmBinding {
    pub device_serial: String,
    pub ek_sha256: Vec<u8>,
    pub hw_serial: String,
    pub bound_at: i64,
}

/// What an attested issuance consumes and binds in its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationClaim {
    pub challenge_sha256: Vec<u8>,
    pub ek_sha256: Vec<u8>,
    pub hw_serial: String,
}

/// The attestation records.
#[async_trait]
pub trait AttestationStore: Send + Sync {
    /// Adds roots and their audit events in one transaction; a root already present is left
    /// as it is (its event is not written). Returns the digests actually added.
    async fn add_tpm_roots(
        &self,
        roots: &[TpmRoot],
        audit: &[AuditEvent],
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Every trusted root, oldest first.
    async fn tpm_roots(&self) -> Result<Vec<TpmRoot>, StoreError>;
    /// Removes a root and appends the audit event; false if no root has that digest.
    async fn remove_tpm_root(&self, sha256: &[u8], audit: &AuditEvent) -> Result<bool, StoreError>;
    /// Stores a new challenge, and drops challenges that expired before `purge_before`.
    async fn insert_challenge(
        &self,
        challenge: &ChallengeRecord,
        purge_before: i64,
    ) -> Result<(), StoreError>;
    /// A challenge by the SHA-256 of its secret.
    async fn challenge(&self, secret_sha256: &[u8]) -> Result<Option<ChallengeRecord>, StoreError>;
    /// The TPM a device is bound to.
    async fn device_tpm(&self, serial: &str) -> Result<Option<TpmBinding>, StoreError>;
    /// Removes a device's TPM binding (`device reprovision`); returns the binding removed.
    async fn unbind_tpm(&self, serial: &str) -> Result<Option<TpmBinding>, StoreError>;
}

/// Decides, under the issuance transaction's write lock, the attested issuances of a batch: the
/// challenge must be unused and unexpired (and taken by one issuance of the batch only), and the
/// device unbound or bound to the same EK. Only reads; [`write_claims`] writes the admitted.
pub(super) async fn check_claims<DB>(
    conn: &mut DB::Connection,
    batch: &[Issuance],
    verdicts: &mut [Result<(), StoreError>],
    now: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (Vec<u8>,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut taken: HashSet<&[u8]> = HashSet::new();
    for (issuance, verdict) in batch.iter().zip(verdicts.iter_mut()) {
        let (Ok(()), Some(claim)) = (&verdict, &issuance.attestation) else {
            continue;
        };
        let mut query = QueryBuilder::<DB>::new(
            "SELECT expires_at FROM attestation_challenges WHERE used_at IS NULL AND expires_at > ",
        );
        query
            .push_bind(now)
            .push(" AND secret_sha256 = ")
            .push_bind(claim.challenge_sha256.as_slice())
            .push(" AND device_serial = ")
            .push_bind(issuance.certificate.device_serial.as_str());
        let consumable = query
            .build_query_as::<(i64,)>()
            .fetch_optional(&mut *conn)
            .await
            .map_err(super::classify)?
            .is_some();
        if !consumable || !taken.insert(claim.challenge_sha256.as_slice()) {
            *verdict = Err(StoreError::ChallengeNotConsumable);
            continue;
        }
        let mut query =
            QueryBuilder::<DB>::new("SELECT ek_sha256 FROM device_tpms WHERE device_serial = ");
        query.push_bind(issuance.certificate.device_serial.as_str());
        let bound = query
            .build_query_as::<(Vec<u8>,)>()
            .fetch_optional(&mut *conn)
            .await
            .map_err(super::classify)?;
        if let Some((ek,)) = bound
            && ek != claim.ek_sha256
        {
            *verdict = Err(StoreError::BoundToOtherTpm {
                device: issuance.certificate.device_serial.clone(),
                ek_sha256: hex::encode(ek),
            });
        }
    }
    Ok(())
}

/// Marks the admitted issuances' challenges used and binds their devices to their TPMs (a
/// device already bound to the same EK keeps its first binding).
pub(super) async fn write_claims<DB>(
    conn: &mut DB::Connection,
    admitted: &[&Issuance],
    now: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    for issuance in admitted {
        let Some(claim) = &issuance.attestation else {
            continue;
        };
        let mut query = QueryBuilder::<DB>::new("UPDATE attestation_challenges SET used_at = ");
        query
            .push_bind(now)
            .push(" WHERE secret_sha256 = ")
            .push_bind(claim.challenge_sha256.as_slice());
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(super::classify)?;
        let mut query = QueryBuilder::<DB>::new(
            "INSERT INTO device_tpms (device_serial, ek_sha256, hw_serial, bound_at) VALUES (",
        );
        query
            .push_bind(issuance.certificate.device_serial.as_str())
            .push(", ")
            .push_bind(claim.ek_sha256.as_slice())
            .push(", ")
            .push_bind(claim.hw_serial.as_str())
            .push(", ")
            .push_bind(now)
            .push(") ON CONFLICT (device_serial) DO NOTHING");
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(super::classify)?;
    }
    Ok(())
}
