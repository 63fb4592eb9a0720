//! The readiness and metrics reads, written once for every backend.

/// Implements `OperationsStore` for `$store` over `$db`.
macro_rules! impl_operations_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::operations::OperationsStore for $store {
            async fn ping(&self) -> Result<(), $crate::storage::StoreError> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok(())
            }

            async fn audit_head_seq(&self) -> Result<i64, $crate::storage::StoreError> {
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::storage::classify)
            }

            async fn count_valid_expiring(
                &self,
                from: i64,
                to: i64,
            ) -> Result<u64, $crate::storage::StoreError> {
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM certificates WHERE status = 'valid' AND not_after > ",
                );
                select
                    .push_bind(from)
                    .push(" AND not_after <= ")
                    .push_bind(to);
                let (n,): (i64,) = select
                    .build_query_as()
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok($crate::storage::operations::count(n))
            }
        }
    };
}
pub(in crate::storage) use impl_operations_store;
