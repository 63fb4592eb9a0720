//! What running the CA in production reads from the database: a liveness ping for `/readyz`
//! and the figures `/metrics` reports at each scrape. Every backend implements
//! [`OperationsStore`].

use async_trait::async_trait;

use super::StoreError;

/// Figures for the operator, each read with one small query.
#[async_trait]
pub trait OperationsStore: Send + Sync {
    /// One trivial round trip: `Ok` when the database answers queries.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The sequence number of the newest audit event (0 when the trail is empty).
    async fn audit_head_seq(&self) -> Result<i64, StoreError>;
    /// Valid device certificates whose `not_after` falls in `(from, to]` (Unix seconds).
    async fn count_valid_expiring(&self, from: i64, to: i64) -> Result<u64, StoreError>;
}

/// A count read as `i64` from SQL, as the unsigned value it is.
pub(super) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
