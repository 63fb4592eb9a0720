//! PostgreSQL backend for several replicas on one database: connecting, the write
//! transactions (the audit chain is serialized with a transaction-scoped advisory lock), the
//! group commit, and `= ANY` lists; the statements shared with SQLite are in `sql/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};

use super::{AuditEvent, Issuance, StoreError, batch, chain_hash, classify};

mod admin;
mod group_write;

super::inventory::impl_inventory_store!(
    PostgresStore,
    Postgres,
    begin_with_chain_lock,
    append_events
);
super::sql::stations::impl_station_store!(PostgresStore, Postgres, begin, append_events);
super::sql::operations::impl_operations_store!(PostgresStore, Postgres);
super::sql::attestation::impl_attestation_store!(
    PostgresStore,
    Postgres,
    begin_with_chain_lock,
    append_events
);
super::sql::console::impl_console_store!(
    PostgresStore,
    Postgres,
    begin_with_chain_lock,
    append_events
);
super::sql::generations::impl_generation_store!(
    PostgresStore,
    Postgres,
    begin_with_chain_lock,
    append_events
);
super::sql::recalls::impl_recall_store!(
    PostgresStore,
    Postgres,
    begin_with_chain_lock,
    append_events
);

/// The PostgreSQL store shared by replicas.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(super) pool: PgPool,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL and applies migrations. Connection failures surface
    /// quickly (a few seconds) so requests can answer 503 instead of hanging.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(classify)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(classify)?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(classify)
    }

    /// Begins a transaction holding the audit chain's advisory lock from its first statement,
    /// as the group commit does: serialized with issuance batches, and taking its locks in the
    /// same order as they do.
    pub(super) async fn begin_with_chain_lock(
        &self,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin_with(BEGIN_WITH_CHAIN_LOCK)
            .await
            .map_err(classify)
    }
}

pub(super) async fn append_events(
    tx: &mut Transaction<'static, Postgres>,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut prev = batch::chain_head::<Postgres>(tx, Some(AUDIT_CHAIN_LOCK)).await?;
    for event in events {
        let hash = chain_hash(&prev, event);
        sqlx::query(
            "INSERT INTO audit_events (at, actor, action, object, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.object)
        .bind(&event.details)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
        prev = hash;
    }
    Ok(())
}

/// Appenders in every replica take turns on the one audit chain (transaction-scoped).
macro_rules! audit_chain_lock {
    () => {
        "SELECT pg_advisory_xact_lock(7001)"
    };
}
const AUDIT_CHAIN_LOCK: &str = audit_chain_lock!();
/// A transaction that takes the audit chain's lock as it begins (the group commit's).
const BEGIN_WITH_CHAIN_LOCK: &str = concat!("BEGIN; ", audit_chain_lock!());

impl PostgresStore {
    /// The given serials that are registered (the dialect's `IN` list).
    pub(super) async fn registered_serials_in(
        &self,
        serials: &[String],
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT serial FROM devices WHERE serial = ANY($1)")
            .bind(serials)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    /// Commits a batch of issuances with this backend's group commit.
    pub(super) async fn write_batch(
        &self,
        batch: &[Issuance],
        now: i64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        // A certificate superseded concurrently by another replica trips the unique index at
        // the insert, and the batch is then retried one issuance at a time.
        group_write::commit(&self.pool, batch, now, BEGIN_WITH_CHAIN_LOCK).await
    }
}

super::sql::records::impl_store!(PostgresStore, Postgres, PgRow);
