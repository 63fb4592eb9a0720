//! PostgreSQL backend for several replicas on one database. Statements mirror the SQLite
//! backend; the audit chain is serialized with a transaction-scoped advisory lock.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
// Dynamic SQL here is only ever built from constant column lists and `?` placeholders.
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::{
    AuditEvent, CertificateQuery, CertificateRecord, CertificateStatus, CrlSnapshot, Device,
    DeviceStatus, Issuance, OperatorRecord, PublishedCrl, RevokedEntry, Store, StoreError,
    StoredAuditEvent, TokenRecord, batch, chain_hash, classify,
};

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

fn device_from_row(row: &PgRow) -> Result<Device, sqlx::Error> {
    Ok(Device {
        serial: row.try_get("serial")?,
        product: row.try_get("product")?,
        gtin: row.try_get("gtin")?,
        lot: row.try_get("lot")?,
        status: DeviceStatus::parse(row.try_get::<&str, _>("status")?),
        registered_at: row.try_get("registered_at")?,
    })
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        token_hash: row.try_get("token_hash")?,
        device_serial: row.try_get("device_serial")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn certificate_from_row(row: &PgRow) -> Result<CertificateRecord, sqlx::Error> {
    Ok(CertificateRecord {
        serial: row.try_get("serial")?,
        issuer: row.try_get("issuer")?,
        device_serial: row.try_get("device_serial")?,
        product: row.try_get("product")?,
        policy_oid: row.try_get("policy_oid")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        spki_sha256: row.try_get("spki_sha256")?,
        der: row.try_get("der")?,
        status: CertificateStatus::parse(row.try_get::<&str, _>("status")?),
        authorized_by: row.try_get("authorized_by")?,
        supersedes: row.try_get("supersedes")?,
        issued_at: row.try_get("issued_at")?,
    })
}

use super::CERTIFICATE_COLUMNS;

#[async_trait]
impl Store for PostgresStore {
    async fn register_devices(
        &self,
        devices: &[Device],
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for device in devices {
            let inserted = sqlx::query(
                "INSERT INTO devices (serial, product, gtin, lot, status, registered_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (serial) DO NOTHING",
            )
            .bind(&device.serial)
            .bind(&device.product)
            .bind(&device.gtin)
            .bind(&device.lot)
            .bind(device.status.as_str())
            .bind(device.registered_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::DeviceExists(device.serial.clone()));
            }
        }
        append_events(&mut tx, audit).await?;
        tx.commit().await.map_err(classify)
    }

    async fn device(&self, serial: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query("SELECT * FROM devices WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(device_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn registered_serials(&self, serials: &[String]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT serial FROM devices WHERE serial = ANY($1)")
            .bind(serials)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn create_tokens(
        &self,
        tokens: &[TokenRecord],
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for token in tokens {
            sqlx::query(
                "INSERT INTO enrollment_tokens (token_hash, device_serial, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&token.token_hash)
            .bind(&token.device_serial)
            .bind(token.created_at)
            .bind(token.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::UnknownDevice(token.device_serial.clone())
                }
                _ => classify(e),
            })?;
        }
        append_events(&mut tx, audit).await?;
        tx.commit().await.map_err(classify)
    }

    async fn token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM enrollment_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(token_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn key_holders(&self, spki_sha256: &[u8]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT DISTINCT device_serial FROM certificates WHERE spki_sha256 = $1")
            .bind(spki_sha256)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn commit_batch(
        &self,
        batch: &[Issuance],
        now: i64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        // A certificate superseded concurrently by another replica trips the unique index at
        // the insert, and the batch is then retried one issuance at a time.
        group_write::commit(&self.pool, batch, now, BEGIN_WITH_CHAIN_LOCK).await
    }

    async fn enrollment_facts(
        &self,
        queries: &[super::FactsQuery],
    ) -> Result<Vec<super::EnrollmentFacts>, StoreError> {
        super::facts::fetch::<Postgres, _>(&self.pool, queries).await
    }

    async fn certificate_states(
        &self,
        serials: &[String],
    ) -> Result<Vec<Option<super::CertificateState>>, StoreError> {
        super::facts::fetch_states::<Postgres, _>(&self.pool, serials).await
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let sql = format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE serial = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(certificate_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn set_status(
        &self,
        serial: &str,
        status: CertificateStatus,
        reason: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        let revoked_at = (status != CertificateStatus::Valid).then_some(at);
        let done = sqlx::query("UPDATE certificates SET status = $1, revocation_reason = $2, revoked_at = $3 WHERE serial = $4")
            .bind(status.as_str())
            .bind(reason)
            .bind(revoked_at)
            .bind(serial)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn change_status(
        &self,
        serial: &str,
        status: CertificateStatus,
        reason: Option<&str>,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let revoked_at = (status != CertificateStatus::Valid).then_some(at);
        let done = sqlx::query("UPDATE certificates SET status = $1, revocation_reason = $2, revoked_at = $3 WHERE serial = $4")
            .bind(status.as_str())
            .bind(reason)
            .bind(revoked_at)
            .bind(serial)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        append_events(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn change_status_many(
        &self,
        serials: &[String],
        status: CertificateStatus,
        reason: Option<&str>,
        at: i64,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        batch::change_status_many::<Postgres>(&mut tx, serials, status, reason, at).await?;
        append_events(&mut tx, audit).await?;
        tx.commit().await.map_err(classify)
    }

    async fn crl_snapshot(&self, issuer: &str) -> Result<CrlSnapshot, StoreError> {
        let mut tx = self.begin().await?;
        // The row lock taken here orders concurrent snapshots of one issuer (in every replica):
        // the later number's SELECT sees everything the earlier one saw.
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO crl_state (issuer, number) VALUES ($1, 1) \
             ON CONFLICT (issuer) DO UPDATE SET number = crl_state.number + 1 RETURNING number",
        )
        .bind(issuer)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = $1 AND status <> 'valid' \
             UNION ALL SELECT serial, revoked_at, revocation_reason FROM station_certificates \
             WHERE $1 = 'station' AND status <> 'valid' ORDER BY serial",
        )
        .bind(issuer)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let entries = rows
            .iter()
            .map(|row| {
                Ok(RevokedEntry {
                    serial: row.try_get("serial")?,
                    revoked_at: row
                        .try_get::<Option<i64>, _>("revoked_at")?
                        .unwrap_or_default(),
                    reason: row.try_get("revocation_reason")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(CrlSnapshot { number, entries })
    }

    async fn publish_crl(&self, issuer: &str, crl: &PublishedCrl) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE crl_state SET der = $1, this_update = $2, next_update = $3, published_number = $4 \
             WHERE issuer = $5 AND (published_number IS NULL OR published_number < $6)",
        )
        .bind(&crl.der)
        .bind(crl.this_update)
        .bind(crl.next_update)
        .bind(crl.number)
        .bind(issuer)
        .bind(crl.number)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn revocation_of(&self, serial: &str) -> Result<Option<RevokedEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE serial = $1 AND status <> 'valid' \
             UNION ALL SELECT serial, revoked_at, revocation_reason FROM station_certificates \
             WHERE serial = $1 AND status <> 'valid'",
        )
        .bind(serial)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|row| {
            Ok(RevokedEntry {
                serial: row.try_get("serial")?,
                revoked_at: row
                    .try_get::<Option<i64>, _>("revoked_at")?
                    .unwrap_or_default(),
                reason: row.try_get("revocation_reason")?,
            })
        })
        .transpose()
        .map_err(classify)
    }

    async fn latest_crl(&self, issuer: &str) -> Result<Option<PublishedCrl>, StoreError> {
        let row = sqlx::query("SELECT published_number, this_update, next_update, der FROM crl_state WHERE issuer = $1 AND der IS NOT NULL")
            .bind(issuer)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            Ok(PublishedCrl {
                number: row.try_get("published_number")?,
                this_update: row.try_get("this_update")?,
                next_update: row.try_get("next_update")?,
                der: row.try_get("der")?,
            })
        })
        .transpose()
        .map_err(classify)
    }

    async fn successor(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let sql = format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE supersedes = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(certificate_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn certificates_for_device(
        &self,
        serial: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let sql = format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE device_serial = $1 ORDER BY issued_at DESC"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(serial)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(certificate_from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_events(&mut tx, events).await?;
        tx.commit().await.map_err(classify)
    }

    async fn audit_events(&self) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit_events ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(admin::audit_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    async fn restore_audit_protection(&self) -> Result<Vec<&'static str>, StoreError> {
        admin::restore_audit_protection(self).await
    }

    async fn policy_events(&self) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE action IN ('policy.loaded', 'policy.changed') \
             ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(admin::audit_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        admin::audit_page(self, after_seq, limit).await
    }

    async fn search_certificates(
        &self,
        query: &CertificateQuery,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        admin::search_certificates(self, query).await
    }

    async fn add_operator(
        &self,
        operator: &OperatorRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        admin::add_operator(self, operator, audit).await
    }

    async fn operator(&self, lookup: &str) -> Result<Option<OperatorRecord>, StoreError> {
        admin::operator(self, lookup).await
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        admin::operators(self).await
    }

    async fn revoke_operator(
        &self,
        name: &str,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        admin::revoke_operator(self, name, at, audit).await
    }
}
