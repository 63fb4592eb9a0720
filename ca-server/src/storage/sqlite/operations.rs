//! [`OperationsStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::storage::operations::{OperationsStore, count};
use crate::storage::{StoreError, classify};

#[async_trait]
impl OperationsStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn audit_head_seq(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn count_valid_expiring(&self, from: i64, to: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM certificates \
             WHERE status = 'valid' AND not_after > ? AND not_after <= ?",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(count(n))
    }
}
