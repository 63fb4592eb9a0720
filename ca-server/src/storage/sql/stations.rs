//! Stations, written once for every backend: the statements are built with `QueryBuilder`,
//! which writes each dialect's placeholders, and [`impl_station_store!`] instantiates the
//! [`StationStore`](crate::storage::StationStore) implementation for a backend's store type.

use sqlx::Row;

use crate::storage::stations::split_products;
use crate::storage::{Station, StationCertificate, StationStatus, StationToken};

/// The station columns of `row` (`SELECT * FROM stations`, or the join's station half).
pub(in crate::storage) fn station_from_row<R>(row: &R) -> Result<Station, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let token = match row.try_get::<Option<Vec<u8>>, _>("token_hash")? {
        Some(hash) => Some(StationToken {
            hash,
            expires_at: row.try_get("token_expires_at")?,
            used_at: row.try_get("token_used_at")?,
        }),
        None => None,
    };
    Ok(Station {
        name: row.try_get("name")?,
        products: split_products(row.try_get("products")?),
        rate_limit_per_hour: row
            .try_get::<Option<i64>, _>("rate_limit_per_hour")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        status: StationStatus::parse(row.try_get("status")?),
        created_at: row.try_get("created_at")?,
        token,
    })
}

/// A station certificate from `row`; `status_column` names its status column.
pub(in crate::storage) fn station_certificate_from_row<R>(
    row: &R,
    status_column: &str,
) -> Result<StationCertificate, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StationCertificate {
        serial: row.try_get("serial")?,
        station: row.try_get("station")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        spki_sha256: row.try_get("spki_sha256")?,
        der: row.try_get("der")?,
        revoked: row.try_get::<&str, _>(status_column)? != "valid",
        issued_at: row.try_get("issued_at")?,
    })
}

/// Implements `StationStore` for `$store` over the database `$db`: its `$begin` opens a
/// transaction that may append to the audit chain, and `$append` appends to it.
macro_rules! impl_station_store {
    ($store:ty, $db:ty, $begin:ident, $append:path) => {
        #[async_trait::async_trait]
        impl $crate::storage::StationStore for $store {
            async fn create_station(
                &self,
                station: &$crate::storage::Station,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::{StoreError, classify, stations::join_products};
                let mut tx = self.$begin().await?;
                let token = station.token.as_ref();
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO stations (name, products, rate_limit_per_hour, status, \
                     created_at, token_hash, token_expires_at) VALUES (",
                );
                let mut values = insert.separated(", ");
                values
                    .push_bind(&station.name)
                    .push_bind(join_products(&station.products))
                    .push_bind(station.rate_limit_per_hour.map(i64::from))
                    .push_bind(station.status.as_str())
                    .push_bind(station.created_at)
                    .push_bind(token.map(|t| t.hash.clone()))
                    .push_bind(token.map(|t| t.expires_at));
                insert.push(") ON CONFLICT (name) DO NOTHING");
                let inserted = insert.build().execute(&mut *tx).await.map_err(classify)?;
                if inserted.rows_affected() == 0 {
                    return Err(StoreError::StationExists(station.name.clone()));
                }
                $append(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err(classify)
            }

            async fn set_station_token(
                &self,
                name: &str,
                token: &$crate::storage::StationToken,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::{StoreError, classify};
                let mut tx = self.$begin().await?;
                let mut update =
                    sqlx::QueryBuilder::<$db>::new("UPDATE stations SET token_hash = ");
                update
                    .push_bind(&token.hash)
                    .push(", token_expires_at = ")
                    .push_bind(token.expires_at)
                    .push(", token_used_at = NULL WHERE name = ")
                    .push_bind(name)
                    .push(" AND status = 'active'");
                let updated = update.build().execute(&mut *tx).await.map_err(classify)?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::UnknownStation(name.to_owned()));
                }
                $append(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err(classify)
            }

            async fn station(
                &self,
                name: &str,
            ) -> Result<Option<$crate::storage::Station>, $crate::storage::StoreError> {
                use $crate::storage::{classify, sql::stations::station_from_row};
                let mut select =
                    sqlx::QueryBuilder::<$db>::new("SELECT * FROM stations WHERE name = ");
                select.push_bind(name);
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.as_ref()
                    .map(station_from_row)
                    .transpose()
                    .map_err(classify)
            }

            async fn stations(
                &self,
            ) -> Result<Vec<$crate::storage::Station>, $crate::storage::StoreError> {
                use $crate::storage::{classify, sql::stations::station_from_row};
                let rows = sqlx::QueryBuilder::<$db>::new("SELECT * FROM stations ORDER BY name")
                    .build()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                rows.iter()
                    .map(station_from_row)
                    .collect::<Result<_, _>>()
                    .map_err(classify)
            }

            async fn disable_station(
                &self,
                name: &str,
                at: i64,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<Vec<String>, $crate::storage::StoreError> {
                use $crate::storage::{StoreError, classify};
                let mut tx = self.$begin().await?;
                let mut disable = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE stations SET status = 'disabled', disabled_at = ",
                );
                disable
                    .push_bind(at)
                    .push(", token_hash = NULL WHERE name = ")
                    .push_bind(name);
                let disabled = disable.build().execute(&mut *tx).await.map_err(classify)?;
                if disabled.rows_affected() == 0 {
                    return Err(StoreError::UnknownStation(name.to_owned()));
                }
                let mut revoke = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE station_certificates SET status = 'revoked', revoked_at = ",
                );
                revoke
                    .push_bind(at)
                    .push(", revocation_reason = 'cessationOfOperation' WHERE station = ")
                    .push_bind(name)
                    .push(" AND status = 'valid' RETURNING serial");
                let revoked: Vec<(String,)> = revoke
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(classify)?;
                $append(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err(classify)?;
                Ok(revoked.into_iter().map(|(serial,)| serial).collect())
            }

            async fn commit_station_certificate(
                &self,
                issuance: &$crate::storage::StationIssuance,
                now: i64,
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::{StoreError, classify};
                let cert = &issuance.certificate;
                let mut tx = self.$begin().await?;
                let mut consume =
                    sqlx::QueryBuilder::<$db>::new("UPDATE stations SET token_used_at = ");
                consume
                    .push_bind(now)
                    .push(" WHERE name = ")
                    .push_bind(&cert.station)
                    .push(" AND status = 'active' AND token_hash = ")
                    .push_bind(&issuance.token_hash)
                    .push(" AND token_used_at IS NULL AND token_expires_at > ")
                    .push_bind(now);
                let consumed = consume.build().execute(&mut *tx).await.map_err(classify)?;
                if consumed.rows_affected() != 1 {
                    return Err(StoreError::TokenNotConsumable);
                }
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO station_certificates (serial, station, not_before, not_after, \
                     spki_sha256, der, issued_at, issuer) VALUES (",
                );
                let mut values = insert.separated(", ");
                values
                    .push_bind(&cert.serial)
                    .push_bind(&cert.station)
                    .push_bind(cert.not_before)
                    .push_bind(cert.not_after)
                    .push_bind(&cert.spki_sha256)
                    .push_bind(&cert.der)
                    .push_bind(cert.issued_at)
                    .push_bind(&issuance.issuer);
                insert.push(")");
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match &e {
                        sqlx::Error::Database(db) if db.is_unique_violation() => {
                            StoreError::SerialCollision(cert.serial.clone())
                        }
                        _ => classify(e),
                    })?;
                $append(&mut tx, std::slice::from_ref(&issuance.audit)).await?;
                tx.commit().await.map_err(classify)
            }

            async fn station_certificate(
                &self,
                serial: &str,
            ) -> Result<Option<$crate::storage::StationCertificate>, $crate::storage::StoreError>
            {
                use $crate::storage::{classify, sql::stations::station_certificate_from_row};
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT * FROM station_certificates WHERE serial = ",
                );
                select.push_bind(serial);
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.as_ref()
                    .map(|row| station_certificate_from_row(row, "status"))
                    .transpose()
                    .map_err(classify)
            }

            async fn station_by_certificate(
                &self,
                serial: &str,
            ) -> Result<
                Option<(
                    $crate::storage::StationCertificate,
                    $crate::storage::Station,
                )>,
                $crate::storage::StoreError,
            > {
                use $crate::storage::classify;
                use $crate::storage::sql::stations::{
                    station_certificate_from_row, station_from_row,
                };
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT c.serial, c.station, c.not_before, c.not_after, c.spki_sha256, c.der, \
                     c.status AS certificate_status, c.issued_at, s.name, s.products, \
                     s.rate_limit_per_hour, s.status, s.created_at, s.token_hash, \
                     s.token_expires_at, s.token_used_at FROM station_certificates c \
                     JOIN stations s ON s.name = c.station WHERE c.serial = ",
                );
                select.push_bind(serial);
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.map(|row| {
                    Ok((
                        station_certificate_from_row(&row, "certificate_status")?,
                        station_from_row(&row)?,
                    ))
                })
                .transpose()
                .map_err(classify)
            }

            async fn station_usage(
                &self,
                station: &str,
                window_start: i64,
            ) -> Result<u32, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT issued FROM station_usage WHERE station = ",
                );
                select
                    .push_bind(station)
                    .push(" AND window_start = ")
                    .push_bind(window_start);
                let issued: Option<(i64,)> = select
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(issued.map_or(0, |(n,)| u32::try_from(n).unwrap_or(u32::MAX)))
            }
        }
    };
}
pub(in crate::storage) use impl_station_store;
