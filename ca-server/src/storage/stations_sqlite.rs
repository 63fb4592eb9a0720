//! Stations in the SQLite backend.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::sqlite::append_events;
use super::stations::{join_products, split_products};
use super::{
    AuditEvent, SqliteStore, Station, StationCertificate, StationIssuance, StationStatus,
    StationStore, StationToken, StoreError, classify,
};

fn station_from_row(row: &SqliteRow) -> Result<Station, sqlx::Error> {
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

fn station_certificate_from_row(row: &SqliteRow) -> Result<StationCertificate, sqlx::Error> {
    Ok(StationCertificate {
        serial: row.try_get("serial")?,
        station: row.try_get("station")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        spki_sha256: row.try_get("spki_sha256")?,
        der: row.try_get("der")?,
        revoked: row.try_get::<&str, _>("status")? != "valid",
        issued_at: row.try_get("issued_at")?,
    })
}

#[async_trait]
impl StationStore for SqliteStore {
    async fn create_station(
        &self,
        station: &Station,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let token = station.token.as_ref();
        let inserted = sqlx::query(
            "INSERT INTO stations (name, products, rate_limit_per_hour, status, created_at, \
             token_hash, token_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&station.name)
        .bind(join_products(&station.products))
        .bind(station.rate_limit_per_hour.map(i64::from))
        .bind(station.status.as_str())
        .bind(station.created_at)
        .bind(token.map(|t| &t.hash))
        .bind(token.map(|t| t.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::StationExists(station.name.clone()));
        }
        append_events(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await.map_err(classify)
    }

    async fn set_station_token(
        &self,
        name: &str,
        token: &StationToken,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE stations SET token_hash = ?, token_expires_at = ?, token_used_at = NULL \
             WHERE name = ? AND status = 'active'",
        )
        .bind(&token.hash)
        .bind(token.expires_at)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::UnknownStation(name.to_owned()));
        }
        append_events(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await.map_err(classify)
    }

    async fn station(&self, name: &str) -> Result<Option<Station>, StoreError> {
        let row = sqlx::query("SELECT * FROM stations WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(station_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn stations(&self) -> Result<Vec<Station>, StoreError> {
        let rows = sqlx::query("SELECT * FROM stations ORDER BY name")
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
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let disabled = sqlx::query(
            "UPDATE stations SET status = 'disabled', disabled_at = ?, token_hash = NULL \
             WHERE name = ?",
        )
        .bind(at)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if disabled.rows_affected() == 0 {
            return Err(StoreError::UnknownStation(name.to_owned()));
        }
        let revoked: Vec<String> = sqlx::query_scalar(
            "UPDATE station_certificates SET status = 'revoked', revoked_at = ?, \
             revocation_reason = 'cessationOfOperation' \
             WHERE station = ? AND status = 'valid' RETURNING serial",
        )
        .bind(at)
        .bind(name)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        append_events(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(revoked)
    }

    async fn commit_station_certificate(
        &self,
        issuance: &StationIssuance,
        now: i64,
    ) -> Result<(), StoreError> {
        let cert = &issuance.certificate;
        let mut tx = self.begin().await?;
        let consumed = sqlx::query(
            "UPDATE stations SET token_used_at = ? WHERE name = ? AND status = 'active' \
             AND token_hash = ? AND token_used_at IS NULL AND token_expires_at > ?",
        )
        .bind(now)
        .bind(&cert.station)
        .bind(&issuance.token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if consumed.rows_affected() != 1 {
            return Err(StoreError::TokenNotConsumable);
        }
        sqlx::query(
            "INSERT INTO station_certificates (serial, station, not_before, not_after, \
             spki_sha256, der, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&cert.serial)
        .bind(&cert.station)
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(&cert.spki_sha256)
        .bind(&cert.der)
        .bind(cert.issued_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::SerialCollision(cert.serial.clone())
            }
            _ => classify(e),
        })?;
        append_events(&mut tx, std::slice::from_ref(&issuance.audit)).await?;
        tx.commit().await.map_err(classify)
    }

    async fn station_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<StationCertificate>, StoreError> {
        let row = sqlx::query("SELECT * FROM station_certificates WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(station_certificate_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn station_by_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<(StationCertificate, Station)>, StoreError> {
        let row = sqlx::query(
            "SELECT c.serial, c.station, c.not_before, c.not_after, c.spki_sha256, c.der, \
             c.status AS certificate_status, c.issued_at, s.name, s.products, \
             s.rate_limit_per_hour, s.status, s.created_at, s.token_hash, s.token_expires_at, \
             s.token_used_at FROM station_certificates c JOIN stations s ON s.name = c.station \
             WHERE c.serial = ?",
        )
        .bind(serial)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|row| {
            let certificate = StationCertificate {
                serial: row.try_get("serial")?,
                station: row.try_get("station")?,
                not_before: row.try_get("not_before")?,
                not_after: row.try_get("not_after")?,
                spki_sha256: row.try_get("spki_sha256")?,
                der: row.try_get("der")?,
                revoked: row.try_get::<&str, _>("certificate_status")? != "valid",
                issued_at: row.try_get("issued_at")?,
            };
            Ok((certificate, station_from_row(&row)?))
        })
        .transpose()
        .map_err(classify)
    }

    async fn station_usage(&self, station: &str, window_start: i64) -> Result<u32, StoreError> {
        let issued: Option<i64> = sqlx::query_scalar(
            "SELECT issued FROM station_usage WHERE station = ? AND window_start = ?",
        )
        .bind(station)
        .bind(window_start)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(issued.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }
}
