//! Signed checkpoints of the audit trail as stored, and the trail's head. One SQL text serves
//! both backends (numbered placeholders and `ON CONFLICT` mean the same in SQLite and
//! PostgreSQL), so the implementation is written once, by [`checkpoint_store!`], for each store.

use async_trait::async_trait;

use super::StoreError;

/// A checkpoint: the newest event's sequence number and hash at `at`, signed by the audit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub seq: i64,
    pub head_hash: Vec<u8>,
    /// Unix seconds when it was signed.
    pub at: i64,
    /// ECDSA signature (DER) over the checkpoint statement.
    pub signature: Vec<u8>,
    /// DER certificate of the key that signed it.
    pub signer_der: Vec<u8>,
}

/// The newest event of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// Where checkpoints are kept; every backend implements it.
#[async_trait]
pub trait CheckpointStore {
    /// Stores a checkpoint; false when one for the same sequence number is already stored
    /// (another replica signed the same head first).
    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<bool, StoreError>;
    /// The checkpoint with the highest sequence number.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// Every stored checkpoint, oldest first.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// The newest event's sequence number and hash (`None` for an empty trail).
    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;
}

type CheckpointRow = (i64, Vec<u8>, i64, Vec<u8>, Vec<u8>);

pub(super) const INSERT: &str = "INSERT INTO audit_checkpoints (seq, head_hash, at, signature, signer) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING";
pub(super) const SELECT_LATEST: &str = "SELECT seq, head_hash, at, signature, signer \
     FROM audit_checkpoints ORDER BY seq DESC LIMIT 1";
pub(super) const SELECT_ALL: &str =
    "SELECT seq, head_hash, at, signature, signer FROM audit_checkpoints ORDER BY seq";
pub(super) const SELECT_HEAD: &str = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";

pub(super) fn from_row(row: CheckpointRow) -> StoredCheckpoint {
    let (seq, head_hash, at, signature, signer_der) = row;
    StoredCheckpoint {
        seq,
        head_hash,
        at,
        signature,
        signer_der,
    }
}

/// Implements [`CheckpointStore`] for a store whose `pool` field is an sqlx pool.
macro_rules! checkpoint_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::audit_checkpoints::CheckpointStore for $store {
            async fn add_checkpoint(
                &self,
                checkpoint: &$crate::storage::audit_checkpoints::StoredCheckpoint,
            ) -> Result<bool, $crate::storage::StoreError> {
                let done = sqlx::query($crate::storage::audit_checkpoints::INSERT)
                    .bind(checkpoint.seq)
                    .bind(&checkpoint.head_hash)
                    .bind(checkpoint.at)
                    .bind(&checkpoint.signature)
                    .bind(&checkpoint.signer_der)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok(done.rows_affected() == 1)
            }

            async fn latest_checkpoint(
                &self,
            ) -> Result<
                Option<$crate::storage::audit_checkpoints::StoredCheckpoint>,
                $crate::storage::StoreError,
            > {
                let row = sqlx::query_as($crate::storage::audit_checkpoints::SELECT_LATEST)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok(row.map($crate::storage::audit_checkpoints::from_row))
            }

            async fn checkpoints(
                &self,
            ) -> Result<
                Vec<$crate::storage::audit_checkpoints::StoredCheckpoint>,
                $crate::storage::StoreError,
            > {
                let rows: Vec<_> = sqlx::query_as($crate::storage::audit_checkpoints::SELECT_ALL)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok(rows
                    .into_iter()
                    .map($crate::storage::audit_checkpoints::from_row)
                    .collect())
            }

            async fn audit_head(
                &self,
            ) -> Result<
                Option<$crate::storage::audit_checkpoints::AuditHead>,
                $crate::storage::StoreError,
            > {
                let row: Option<(i64, Vec<u8>)> =
                    sqlx::query_as($crate::storage::audit_checkpoints::SELECT_HEAD)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::storage::classify)?;
                Ok(row
                    .map(|(seq, hash)| $crate::storage::audit_checkpoints::AuditHead { seq, hash }))
            }
        }
    };
}

checkpoint_store!(super::SqliteStore);
checkpoint_store!(super::PostgresStore);
