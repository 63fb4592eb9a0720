//! The fleet as the operations team reads it: devices and certificates counted by product and
//! status, station issuance since a time, a page of devices with their newest certificate, and
//! a device's one-time tokens (listed, and revoked before use). The reads are written once here
//! for every backend; only the revocation, which appends to the audit chain in its transaction,
//! has a body per backend.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, QueryBuilder, Row, Type};

use super::{
    AuditEvent, CertificateStatus, Device, DeviceStatus, StoreError, TokenRecord, classify,
    operations::count,
};

/// Devices of one product in one registration status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCount {
    pub product: String,
    pub status: DeviceStatus,
    pub devices: u64,
    /// Of those, devices holding a valid, unexpired certificate.
    pub enrolled: u64,
}

/// Certificates of one product in one revocation status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateCount {
    pub product: String,
    pub status: CertificateStatus,
    /// Not yet expired.
    pub unexpired: u64,
    pub expired: u64,
    /// Unexpired and expiring within 30 days (valid ones only).
    pub expiring_30_days: u64,
    /// Unexpired and expiring within 90 days (valid ones only).
    pub expiring_90_days: u64,
}

/// Certificates a station had issued since a time (its quota windows summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationActivity {
    pub station: String,
    pub issued: u64,
}

/// Which devices a listing shows, one page after `after` (by serial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceQuery {
    pub product: Option<String>,
    pub lot: Option<String>,
    pub status: Option<DeviceStatus>,
    pub after: Option<String>,
    pub limit: u32,
}

/// A device's newest certificate, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestCertificate {
    pub serial: String,
    pub issuer: String,
    pub status: CertificateStatus,
    pub not_after: i64,
}

/// One device of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListing {
    pub device: Device,
    /// `None` when the device never enrolled.
    pub certificate: Option<NewestCertificate>,
}

/// Fleet reads and token cancellation.
#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// Devices per product and registration status.
    async fn device_counts(&self, now: i64) -> Result<Vec<DeviceCount>, StoreError>;
    /// Device certificates per product and status; `now` splits expired from unexpired.
    async fn certificate_counts(&self, now: i64) -> Result<Vec<CertificateCount>, StoreError>;
    /// Every station with the certificates it had issued in quota windows starting at or after
    /// `since` (Unix seconds), by name.
    async fn station_activity(&self, since: i64) -> Result<Vec<StationActivity>, StoreError>;
    /// Up to `query.limit` devices by serial, each with its newest certificate.
    async fn devices_page(&self, query: &DeviceQuery) -> Result<Vec<DeviceListing>, StoreError>;
    /// A device's tokens (hashes only), newest first.
    async fn device_tokens(&self, serial: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes the device's unused, unexpired, unrevoked tokens and appends `audit` (with the
    /// count in its details) in one transaction; returns how many. Nothing is appended when
    /// none was revocable. A token consumed by a concurrent enrollment is either used or
    /// revoked, never both: the consuming batch and this update meet in the same row.
    async fn revoke_tokens(
        &self,
        serial: &str,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
}

const DEVICE_COUNTS: &str = "SELECT d.product, d.status, COUNT(*) AS devices, \
     COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM certificates c WHERE c.device_serial = d.serial \
     AND c.status = 'valid' AND c.not_after > ";

const CERTIFICATE_COUNTS: &str = "SELECT product, status, \
     COALESCE(SUM(CASE WHEN not_after > $now THEN 1 ELSE 0 END), 0) AS unexpired, \
     COALESCE(SUM(CASE WHEN not_after <= $now THEN 1 ELSE 0 END), 0) AS expired, \
     COALESCE(SUM(CASE WHEN status = 'valid' AND not_after > $now AND not_after <= $d30 THEN 1 ELSE 0 END), 0) AS expiring_30, \
     COALESCE(SUM(CASE WHEN status = 'valid' AND not_after > $now AND not_after <= $d90 THEN 1 ELSE 0 END), 0) AS expiring_90 \
     FROM certificates GROUP BY product, status ORDER BY product, status";

/// The newest certificate of `d`, one column at a time (correlated, index on device_serial).
fn newest(column: &str) -> String {
    format!(
        "(SELECT c.{column} FROM certificates c WHERE c.device_serial = d.serial \
         ORDER BY c.issued_at DESC, c.serial DESC LIMIT 1) AS cert_{column}"
    )
}

/// The reads, generic over the backend; the impls in `sqlite/` and `postgres/` call these.
pub(super) mod read {
    use super::*;

    /// Devices per product and status.
    pub async fn device_counts<'e, DB, E>(
        executor: E,
        now: i64,
    ) -> Result<Vec<DeviceCount>, StoreError>
    where
        DB: Database,
        E: Executor<'e, Database = DB>,
        <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
        for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
        for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
        for<'a> String: Decode<'a, DB> + Type<DB>,
    {
        let mut builder = QueryBuilder::<DB>::new(DEVICE_COUNTS);
        builder.push_bind(now).push(
            ") THEN 1 ELSE 0 END), 0) AS enrolled \
             FROM devices d GROUP BY d.product, d.status ORDER BY d.product, d.status",
        );
        let rows = builder
            .build()
            .fetch_all(executor)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(DeviceCount {
                    product: row.try_get("product")?,
                    status: DeviceStatus::parse(row.try_get::<&str, _>("status")?),
                    devices: count(row.try_get("devices")?),
                    enrolled: count(row.try_get("enrolled")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    /// Certificates per product and status.
    pub async fn certificate_counts<'e, DB, E>(
        executor: E,
        now: i64,
    ) -> Result<Vec<CertificateCount>, StoreError>
    where
        DB: Database,
        E: Executor<'e, Database = DB>,
        <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
        for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
        for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
        for<'a> String: Decode<'a, DB> + Type<DB>,
    {
        // Plain integers, not binds: the three instants recur in every column, and they are
        // ours (computed from the clock), never a caller's text.
        let sql = CERTIFICATE_COUNTS
            .replace("$now", &now.to_string())
            .replace("$d30", &(now + 30 * 86_400).to_string())
            .replace("$d90", &(now + 90 * 86_400).to_string());
        let rows = QueryBuilder::<DB>::new(sql)
            .build()
            .fetch_all(executor)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(CertificateCount {
                    product: row.try_get("product")?,
                    status: CertificateStatus::parse(row.try_get::<&str, _>("status")?),
                    unexpired: count(row.try_get("unexpired")?),
                    expired: count(row.try_get("expired")?),
                    expiring_30_days: count(row.try_get("expiring_30")?),
                    expiring_90_days: count(row.try_get("expiring_90")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    /// Every station and what it issued since `since`.
    pub async fn station_activity<'e, DB, E>(
        executor: E,
        since: i64,
    ) -> Result<Vec<StationActivity>, StoreError>
    where
        DB: Database,
        E: Executor<'e, Database = DB>,
        <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
        for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
        for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
        for<'a> String: Decode<'a, DB> + Type<DB>,
    {
        let mut builder = QueryBuilder::<DB>::new(
            "SELECT s.name, CAST(COALESCE(SUM(u.issued), 0) AS BIGINT) AS issued FROM stations s \
             LEFT JOIN station_usage u ON u.station = s.name AND u.window_start >= ",
        );
        builder
            .push_bind(since)
            .push(" GROUP BY s.name ORDER BY s.name");
        let rows = builder
            .build()
            .fetch_all(executor)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(StationActivity {
                    station: row.try_get("name")?,
                    issued: count(row.try_get("issued")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    /// One page of devices with their newest certificate.
    pub async fn devices_page<'e, DB, E>(
        executor: E,
        query: &DeviceQuery,
    ) -> Result<Vec<DeviceListing>, StoreError>
    where
        DB: Database,
        E: Executor<'e, Database = DB>,
        <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
        for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
        for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
        for<'a> Option<i64>: Decode<'a, DB>,
        for<'a> Option<String>: Decode<'a, DB>,
        for<'a> String: Decode<'a, DB> + Type<DB>,
    {
        let mut builder = QueryBuilder::<DB>::new(format!(
            "SELECT d.serial, d.product, d.gtin, d.lot, d.status, d.registered_at, {}, {}, {}, {} \
             FROM devices d WHERE 1 = 1",
            newest("serial"),
            newest("issuer"),
            newest("status"),
            newest("not_after"),
        ));
        if let Some(product) = query.product.as_deref() {
            builder.push(" AND d.product = ").push_bind(product);
        }
        if let Some(lot) = query.lot.as_deref() {
            builder.push(" AND d.lot = ").push_bind(lot);
        }
        if let Some(status) = query.status {
            builder.push(" AND d.status = ").push_bind(status.as_str());
        }
        if let Some(after) = query.after.as_deref() {
            builder.push(" AND d.serial > ").push_bind(after);
        }
        builder
            .push(" ORDER BY d.serial LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = builder
            .build()
            .fetch_all(executor)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let certificate = match row.try_get::<Option<String>, _>("cert_serial")? {
                    None => None,
                    Some(serial) => Some(NewestCertificate {
                        serial,
                        issuer: row.try_get("cert_issuer")?,
                        status: CertificateStatus::parse(row.try_get::<&str, _>("cert_status")?),
                        not_after: row.try_get("cert_not_after")?,
                    }),
                };
                Ok(DeviceListing {
                    device: Device {
                        serial: row.try_get("serial")?,
                        product: row.try_get("product")?,
                        gtin: row.try_get("gtin")?,
                        lot: row.try_get("lot")?,
                        status: DeviceStatus::parse(row.try_get::<&str, _>("status")?),
                        registered_at: row.try_get("registered_at")?,
                    },
                    certificate,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    /// A device's tokens, newest first.
    pub async fn device_tokens<'e, DB, E>(
        executor: E,
        serial: &str,
    ) -> Result<Vec<TokenRecord>, StoreError>
    where
        DB: Database,
        E: Executor<'e, Database = DB>,
        <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
        for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
        for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
        for<'a> Option<i64>: Decode<'a, DB>,
        for<'a> Vec<u8>: Decode<'a, DB> + Type<DB>,
        for<'a> String: Decode<'a, DB> + Type<DB>,
    {
        let mut builder = QueryBuilder::<DB>::new(
            "SELECT token_hash, device_serial, created_at, expires_at, used_at, revoked_at \
             FROM enrollment_tokens WHERE device_serial = ",
        );
        builder
            .push_bind(serial)
            .push(" ORDER BY created_at DESC, token_hash");
        let rows = builder
            .build()
            .fetch_all(executor)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(TokenRecord {
                    token_hash: row.try_get("token_hash")?,
                    device_serial: row.try_get("device_serial")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    used_at: row.try_get("used_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}

/// `UPDATE enrollment_tokens SET revoked_at = at` for the device's still consumable tokens,
/// `RETURNING token_hash`.
pub(super) fn revoke<DB>(serial: &str, at: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new("UPDATE enrollment_tokens SET revoked_at = ");
    builder
        .push_bind(at)
        .push(" WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ")
        .push_bind(at)
        .push(" AND device_serial = ")
        .push_bind(serial)
        .push(" RETURNING token_hash");
    builder
}

/// The audit event of a revocation, with the count added to its details.
pub(super) fn with_count(audit: &AuditEvent, revoked: usize) -> AuditEvent {
    let mut event = audit.clone();
    let mut details: serde_json::Value =
        serde_json::from_str(&event.details).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = details.as_object_mut() {
        object.insert("tokens".into(), revoked.into());
    }
    event.details = details.to_string();
    event
}

/// Implements [`InventoryStore`] for a backend from the shared reads above: `$store` over
/// `$db`, whose `$begin` opens a transaction that may append to the audit chain and whose
/// `$append` appends to it. One body for every backend.
macro_rules! impl_inventory_store {
    ($store:ty, $db:ty, $begin:ident, $append:path) => {
        #[async_trait::async_trait]
        impl $crate::storage::inventory::InventoryStore for $store {
            async fn device_counts(
                &self,
                now: i64,
            ) -> Result<Vec<$crate::storage::inventory::DeviceCount>, $crate::storage::StoreError>
            {
                $crate::storage::inventory::read::device_counts(&self.pool, now).await
            }

            async fn certificate_counts(
                &self,
                now: i64,
            ) -> Result<
                Vec<$crate::storage::inventory::CertificateCount>,
                $crate::storage::StoreError,
            > {
                $crate::storage::inventory::read::certificate_counts(&self.pool, now).await
            }

            async fn station_activity(
                &self,
                since: i64,
            ) -> Result<
                Vec<$crate::storage::inventory::StationActivity>,
                $crate::storage::StoreError,
            > {
                $crate::storage::inventory::read::station_activity(&self.pool, since).await
            }

            async fn devices_page(
                &self,
                query: &$crate::storage::inventory::DeviceQuery,
            ) -> Result<Vec<$crate::storage::inventory::DeviceListing>, $crate::storage::StoreError>
            {
                $crate::storage::inventory::read::devices_page(&self.pool, query).await
            }

            async fn device_tokens(
                &self,
                serial: &str,
            ) -> Result<Vec<$crate::storage::TokenRecord>, $crate::storage::StoreError> {
                $crate::storage::inventory::read::device_tokens(&self.pool, serial).await
            }

            async fn revoke_tokens(
                &self,
                serial: &str,
                at: i64,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<u64, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut tx = self.$begin().await?;
                let revoked: Vec<(Vec<u8>,)> =
                    $crate::storage::inventory::revoke::<$db>(serial, at)
                        .build_query_as()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(classify)?;
                if revoked.is_empty() {
                    return Ok(0);
                }
                let event = $crate::storage::inventory::with_count(audit, revoked.len());
                $append(&mut tx, std::slice::from_ref(&event)).await?;
                tx.commit().await.map_err(classify)?;
                Ok(revoked.len() as u64)
            }
        }
    };
}
pub(super) use impl_inventory_store;
