//! Everything an initial enrollment decision reads, in one query: the device, its token, who
//! already holds the requested key, and the certificate the device already holds. One round
//! trip instead of five keeps the per-request cost of the hot path low; the authority still
//! checks each fact in its own order and reports the first problem.

use std::sync::LazyLock;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, Row, Type};

use super::{Device, DeviceStatus, StoreError, TokenRecord, classify};

/// What the registry says about one enrollment request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentFacts {
    /// A station is registered under the requested name (stations enroll their own keys).
    pub is_station: bool,
    pub device: Option<Device>,
    /// The presented token, whoever it belongs to.
    pub token: Option<TokenRecord>,
    /// A device that holds a certificate for the requested public key.
    pub key_holder: Option<String>,
    /// The newest certificate of the device that is neither revoked nor expired.
    pub held: Option<HeldCertificate>,
}

/// A certificate a device already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCertificate {
    pub serial: String,
    pub authorized_by: String,
}

/// What to look up: the device, and optionally a token (by hash) and a key (SPKI SHA-256).
#[derive(Debug, Clone, Copy)]
pub struct FactsQuery<'a> {
    pub serial: &'a str,
    pub token_hash: Option<&'a [u8]>,
    pub spki_sha256: Option<&'a [u8]>,
    /// Certificates with `not_after` at or before this are no longer held.
    pub now: i64,
}

/// The query, with PostgreSQL's `$n` parameters.
const FACTS_SQL: &str = "\
SELECT (SELECT COUNT(*) FROM stations WHERE name = $1) AS stations, \
    d.serial, d.product, d.gtin, d.lot, d.status, d.registered_at, \
    t.device_serial AS token_device, t.created_at AS token_created_at, \
    t.expires_at AS token_expires_at, t.used_at AS token_used_at, \
    (SELECT c.device_serial FROM certificates c WHERE c.spki_sha256 = $3 LIMIT 1) AS key_holder, \
    h.serial AS held_serial, h.authorized_by AS held_authorized_by \
FROM (SELECT 1 AS one) AS base \
LEFT JOIN devices d ON d.serial = $1 \
LEFT JOIN enrollment_tokens t ON t.token_hash = $2 \
LEFT JOIN (SELECT serial, authorized_by FROM certificates \
           WHERE device_serial = $1 AND status <> 'revoked' AND not_after > $4 \
           ORDER BY issued_at DESC LIMIT 1) AS h ON 1 = 1";

/// The same query with SQLite's numbered `?n` parameters.
static FACTS_SQL_SQLITE: LazyLock<String> = LazyLock::new(|| FACTS_SQL.replace('$', "?"));

/// The query text for a backend (`?n` for SQLite, `$n` for PostgreSQL).
pub(super) fn facts_sql(sqlite: bool) -> &'static str {
    if sqlite {
        FACTS_SQL_SQLITE.as_str()
    } else {
        FACTS_SQL
    }
}

/// Runs the facts query on any backend.
pub(super) async fn fetch<'e, DB, E>(
    executor: E,
    sql: &'static str,
    query: &FactsQuery<'_>,
) -> Result<EnrollmentFacts, StoreError>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    <DB as Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a [u8]>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
    for<'a> Option<i64>: Decode<'a, DB>,
    for<'a> Option<String>: Decode<'a, DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(sql)
        .bind(query.serial)
        .bind(query.token_hash)
        .bind(query.spki_sha256)
        .bind(query.now)
        .fetch_one(executor)
        .await
        .map_err(classify)?;
    from_row(&row, query).map_err(classify)
}

fn from_row<R: Row>(row: &R, query: &FactsQuery<'_>) -> Result<EnrollmentFacts, sqlx::Error>
where
    for<'a> &'a str: ColumnIndex<R> + Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database>,
    for<'a> Option<String>: Decode<'a, R::Database>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
{
    let device = match row.try_get::<Option<String>, _>("serial")? {
        None => None,
        Some(serial) => Some(Device {
            serial,
            product: row.try_get("product")?,
            gtin: row.try_get("gtin")?,
            lot: row.try_get("lot")?,
            status: DeviceStatus::parse(row.try_get::<&str, _>("status")?),
            registered_at: row.try_get("registered_at")?,
        }),
    };
    let token = match (
        query.token_hash,
        row.try_get::<Option<String>, _>("token_device")?,
    ) {
        (Some(hash), Some(device_serial)) => Some(TokenRecord {
            token_hash: hash.to_vec(),
            device_serial,
            created_at: row.try_get("token_created_at")?,
            expires_at: row.try_get("token_expires_at")?,
            used_at: row.try_get("token_used_at")?,
        }),
        _ => None,
    };
    let held = match row.try_get::<Option<String>, _>("held_serial")? {
        None => None,
        Some(serial) => Some(HeldCertificate {
            serial,
            authorized_by: row.try_get("held_authorized_by")?,
        }),
    };
    Ok(EnrollmentFacts {
        is_station: row.try_get::<i64, _>("stations")? > 0,
        device,
        token,
        key_holder: row.try_get("key_holder")?,
        held,
    })
}
