//! Everything an initial enrollment decision reads, in one query: the device, its token, who
//! already holds the requested key, and the certificate the device already holds. One round
//! trip instead of five keeps the per-request cost of the hot path low; the authority still
//! checks each fact in its own order and reports the first problem.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsQuery {
    pub serial: String,
    pub token_hash: Option<Vec<u8>>,
    pub spki_sha256: Option<Vec<u8>>,
    /// Certificates with `not_after` at or before this are no longer held.
    pub now: i64,
}

/// Everything after the `q` table of lookups; one row per lookup, in order.
const FACTS_SELECT: &str = ") \
SELECT q.idx, (SELECT COUNT(*) FROM stations s WHERE s.name = q.serial) AS stations, \
    d.serial, d.product, d.gtin, d.lot, d.status, d.registered_at, \
    t.device_serial AS token_device, t.created_at AS token_created_at, \
    t.expires_at AS token_expires_at, t.used_at AS token_used_at, \
    t.revoked_at AS token_revoked_at, \
    (SELECT c.device_serial FROM certificates c WHERE c.spki_sha256 = q.spki LIMIT 1) AS key_holder, \
    (SELECT c.serial FROM certificates c WHERE c.device_serial = q.serial \
        AND c.status <> 'revoked' AND c.not_after > q.now \
        ORDER BY c.issued_at DESC, c.serial LIMIT 1) AS held_serial, \
    (SELECT c.authorized_by FROM certificates c WHERE c.device_serial = q.serial \
        AND c.status <> 'revoked' AND c.not_after > q.now \
        ORDER BY c.issued_at DESC, c.serial LIMIT 1) AS held_authorized_by \
FROM q \
LEFT JOIN devices d ON d.serial = q.serial \
LEFT JOIN enrollment_tokens t ON t.token_hash = q.token_hash \
ORDER BY q.idx";

/// Runs the lookups with one query on any backend; one answer per query, in order.
pub(super) async fn fetch<'e, DB, E>(
    executor: E,
    queries: &[FactsQuery],
) -> Result<Vec<EnrollmentFacts>, StoreError>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a [u8]>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB> + Decode<'a, DB>,
    for<'a> Option<i64>: Decode<'a, DB>,
    for<'a> Option<String>: Decode<'a, DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let mut builder =
        sqlx::QueryBuilder::<DB>::new("WITH q (idx, serial, token_hash, spki, now) AS (");
    builder.push_values(queries.iter().enumerate(), |mut row, (idx, query)| {
        row.push_bind(idx as i64)
            .push_bind(query.serial.as_str())
            .push_bind(query.token_hash.as_deref())
            .push_bind(query.spki_sha256.as_deref())
            .push_bind(query.now);
    });
    builder.push(FACTS_SELECT);
    let rows = builder
        .build()
        .fetch_all(executor)
        .await
        .map_err(classify)?;
    rows.iter()
        .zip(queries)
        .map(|(row, query)| from_row(row, query))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(classify)
}

fn from_row<R: Row>(row: &R, query: &FactsQuery) -> Result<EnrollmentFacts, sqlx::Error>
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
        &query.token_hash,
        row.try_get::<Option<String>, _>("token_device")?,
    ) {
        (Some(hash), Some(device_serial)) => Some(TokenRecord {
            token_hash: hash.clone(),
            device_serial,
            created_at: row.try_get("token_created_at")?,
            expires_at: row.try_get("token_expires_at")?,
            used_at: row.try_get("token_used_at")?,
            revoked_at: row.try_get("token_revoked_at")?,
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

/// What OCSP needs of a certificate: who issued it and its revocation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateState {
    pub serial: String,
    pub issuer: String,
    pub status: super::CertificateStatus,
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    pub reason: Option<String>,
}

/// The states of several certificates with one query; `None` for a serial not on record.
pub(super) async fn fetch_states<'e, DB, E>(
    executor: E,
    serials: &[String],
) -> Result<Vec<Option<CertificateState>>, StoreError>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + Decode<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<i64>: Decode<'a, DB> + Type<DB>,
    for<'a> Option<String>: Decode<'a, DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    if serials.is_empty() {
        return Ok(Vec::new());
    }
    let mut builder = sqlx::QueryBuilder::<DB>::new(
        "SELECT serial, issuer, status, revoked_at, revocation_reason FROM certificates \
         WHERE serial IN ",
    );
    super::batch::push_in_list(&mut builder, serials.iter().map(String::as_str));
    let rows = builder
        .build()
        .fetch_all(executor)
        .await
        .map_err(classify)?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let state = CertificateState {
            serial: row.try_get("serial").map_err(classify)?,
            issuer: row.try_get("issuer").map_err(classify)?,
            status: super::CertificateStatus::parse(
                row.try_get::<&str, _>("status").map_err(classify)?,
            ),
            revoked_at: row.try_get("revoked_at").map_err(classify)?,
            reason: row.try_get("revocation_reason").map_err(classify)?,
        };
        found.insert(state.serial.clone(), state);
    }
    Ok(serials.iter().map(|s| found.get(s).cloned()).collect())
}
