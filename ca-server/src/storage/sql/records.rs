//! The core records (devices, tokens, certificates, CRL state, the audit trail), written once
//! for every backend. [`impl_store!`] implements `Store` for a backend's store type and defines
//! its row mappers. The two methods whose SQL truly differs by dialect are inherent methods of
//! that type: `registered_serials_in` (an `IN` list chunked for SQLite, `= ANY` on PostgreSQL)
//! and `write_batch` (each backend's group commit). The invoking module also provides
//! `begin` (a transaction that may append to the audit chain), `append_events`, and `admin`
//! (the instantiated `admin_queries!` beside the audit-trigger restore).

/// Implements `Store` for `$store` over `$db`, whose rows are `$row`.
macro_rules! impl_store {
    ($store:ty, $db:ty, $row:ty) => {
        fn device_from_row(row: &$row) -> Result<$crate::storage::Device, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::storage::Device {
                serial: row.try_get("serial")?,
                product: row.try_get("product")?,
                gtin: row.try_get("gtin")?,
                lot: row.try_get("lot")?,
                status: $crate::storage::DeviceStatus::parse(row.try_get::<&str, _>("status")?),
                registered_at: row.try_get("registered_at")?,
            })
        }

        fn token_from_row(row: &$row) -> Result<$crate::storage::TokenRecord, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::storage::TokenRecord {
                token_hash: row.try_get("token_hash")?,
                device_serial: row.try_get("device_serial")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        fn certificate_from_row(
            row: &$row,
        ) -> Result<$crate::storage::CertificateRecord, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::storage::CertificateRecord {
                serial: row.try_get("serial")?,
                issuer: row.try_get("issuer")?,
                device_serial: row.try_get("device_serial")?,
                product: row.try_get("product")?,
                policy_oid: row.try_get("policy_oid")?,
                not_before: row.try_get("not_before")?,
                not_after: row.try_get("not_after")?,
                spki_sha256: row.try_get("spki_sha256")?,
                der: row.try_get("der")?,
                status: $crate::storage::CertificateStatus::parse(
                    row.try_get::<&str, _>("status")?,
                ),
                authorized_by: row.try_get("authorized_by")?,
                supersedes: row.try_get("supersedes")?,
                issued_at: row.try_get("issued_at")?,
            })
        }

        fn revoked_entry_from_row(
            row: &$row,
        ) -> Result<$crate::storage::RevokedEntry, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::storage::RevokedEntry {
                serial: row.try_get("serial")?,
                revoked_at: row
                    .try_get::<Option<i64>, _>("revoked_at")?
                    .unwrap_or_default(),
                reason: row.try_get("revocation_reason")?,
            })
        }

        /// `SELECT <certificate columns> FROM certificates WHERE <column> = <value>`.
        fn select_certificates_where(column: &str, value: &str) -> sqlx::QueryBuilder<$db> {
            let mut select = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {} FROM certificates WHERE {column} = ",
                $crate::storage::CERTIFICATE_COLUMNS
            ));
            select.push_bind(value);
            select
        }

        /// `UPDATE certificates SET status, revocation_reason, revoked_at WHERE serial`.
        fn update_status(
            serial: &str,
            status: $crate::storage::CertificateStatus,
            reason: Option<&str>,
            at: i64,
        ) -> sqlx::QueryBuilder<$db> {
            let revoked_at = (status != $crate::storage::CertificateStatus::Valid).then_some(at);
            let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE certificates SET status = ");
            update
                .push_bind(status.as_str())
                .push(", revocation_reason = ")
                .push_bind(reason)
                .push(", revoked_at = ")
                .push_bind(revoked_at)
                .push(" WHERE serial = ")
                .push_bind(serial);
            update
        }

        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            async fn register_devices(
                &self,
                devices: &[$crate::storage::Device],
                audit: &[$crate::storage::AuditEvent],
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::{StoreError, classify};
                let mut tx = self.begin().await?;
                for device in devices {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO devices (serial, product, gtin, lot, status, registered_at) \
                         VALUES (",
                    );
                    insert
                        .separated(", ")
                        .push_bind(&device.serial)
                        .push_bind(&device.product)
                        .push_bind(&device.gtin)
                        .push_bind(&device.lot)
                        .push_bind(device.status.as_str())
                        .push_bind(device.registered_at);
                    insert.push(") ON CONFLICT (serial) DO NOTHING");
                    let inserted = insert
                        .build()
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

            async fn device(
                &self,
                serial: &str,
            ) -> Result<Option<$crate::storage::Device>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut select =
                    sqlx::QueryBuilder::<$db>::new("SELECT * FROM devices WHERE serial = ");
                select.push_bind(serial);
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.as_ref()
                    .map(device_from_row)
                    .transpose()
                    .map_err(classify)
            }

            async fn registered_serials(
                &self,
                serials: &[String],
            ) -> Result<Vec<String>, $crate::storage::StoreError> {
                self.registered_serials_in(serials).await
            }

            async fn create_tokens(
                &self,
                tokens: &[$crate::storage::TokenRecord],
                audit: &[$crate::storage::AuditEvent],
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::{StoreError, classify};
                let mut tx = self.begin().await?;
                for token in tokens {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO enrollment_tokens (token_hash, device_serial, created_at, \
                         expires_at) VALUES (",
                    );
                    insert
                        .separated(", ")
                        .push_bind(&token.token_hash)
                        .push_bind(&token.device_serial)
                        .push_bind(token.created_at)
                        .push_bind(token.expires_at);
                    insert.push(")");
                    insert
                        .build()
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

            async fn token(
                &self,
                token_hash: &[u8],
            ) -> Result<Option<$crate::storage::TokenRecord>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT * FROM enrollment_tokens WHERE token_hash = ",
                );
                select.push_bind(token_hash);
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.as_ref()
                    .map(token_from_row)
                    .transpose()
                    .map_err(classify)
            }

            async fn key_holders(
                &self,
                spki_sha256: &[u8],
            ) -> Result<Vec<String>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT DISTINCT device_serial FROM certificates WHERE spki_sha256 = ",
                );
                select.push_bind(spki_sha256);
                let holders: Vec<(String,)> = select
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(holders.into_iter().map(|(serial,)| serial).collect())
            }

            async fn commit_batch(
                &self,
                batch: &[$crate::storage::Issuance],
                now: i64,
            ) -> Result<Vec<Result<(), $crate::storage::StoreError>>, $crate::storage::StoreError>
            {
                self.write_batch(batch, now).await
            }

            async fn enrollment_facts(
                &self,
                queries: &[$crate::storage::FactsQuery],
            ) -> Result<Vec<$crate::storage::EnrollmentFacts>, $crate::storage::StoreError> {
                $crate::storage::facts::fetch::<$db, _>(&self.pool, queries).await
            }

            async fn certificate_states(
                &self,
                serials: &[String],
            ) -> Result<
                Vec<Option<$crate::storage::CertificateState>>,
                $crate::storage::StoreError,
            > {
                $crate::storage::facts::fetch_states::<$db, _>(&self.pool, serials).await
            }

            async fn certificate(
                &self,
                serial: &str,
            ) -> Result<Option<$crate::storage::CertificateRecord>, $crate::storage::StoreError>
            {
                use $crate::storage::classify;
                let row = select_certificates_where("serial", serial)
                    .build()
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
                status: $crate::storage::CertificateStatus,
                reason: Option<&str>,
                at: i64,
            ) -> Result<bool, $crate::storage::StoreError> {
                let done = update_status(serial, status, reason, at)
                    .build()
                    .execute(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok(done.rows_affected() == 1)
            }

            async fn change_status(
                &self,
                serial: &str,
                status: $crate::storage::CertificateStatus,
                reason: Option<&str>,
                at: i64,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<bool, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut tx = self.begin().await?;
                let done = update_status(serial, status, reason, at)
                    .build()
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
                status: $crate::storage::CertificateStatus,
                reason: Option<&str>,
                at: i64,
                audit: &[$crate::storage::AuditEvent],
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut tx = self.begin().await?;
                $crate::storage::batch::change_status_many::<$db>(
                    &mut tx, serials, status, reason, at,
                )
                .await?;
                append_events(&mut tx, audit).await?;
                tx.commit().await.map_err(classify)
            }

            async fn crl_snapshot(
                &self,
                issuer: &str,
            ) -> Result<$crate::storage::CrlSnapshot, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut tx = self.begin().await?;
                // The number is taken by a write first: under SQLite's write lock, or holding
                // the row lock on PostgreSQL, which orders concurrent snapshots of one issuer in
                // every replica. Either way the later number's SELECT sees everything the
                // earlier one saw.
                let mut next = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO crl_state (issuer, number) VALUES (",
                );
                next.push_bind(issuer).push(
                    ", 1) ON CONFLICT (issuer) DO UPDATE SET number = crl_state.number + 1 \
                     RETURNING number",
                );
                let (number,): (i64,) = next
                    .build_query_as()
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates WHERE issuer = ",
                );
                select
                    .push_bind(issuer)
                    .push(
                        " AND status <> 'valid' UNION ALL SELECT serial, revoked_at, \
                         revocation_reason FROM station_certificates WHERE issuer = ",
                    )
                    .push_bind(issuer)
                    .push(" AND status <> 'valid' ORDER BY serial");
                let rows = select
                    .build()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(classify)?;
                let entries = rows
                    .iter()
                    .map(revoked_entry_from_row)
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(classify)?;
                tx.commit().await.map_err(classify)?;
                Ok($crate::storage::CrlSnapshot { number, entries })
            }

            async fn publish_crl(
                &self,
                issuer: &str,
                crl: &$crate::storage::PublishedCrl,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE crl_state SET der = ");
                update
                    .push_bind(&crl.der)
                    .push(", this_update = ")
                    .push_bind(crl.this_update)
                    .push(", next_update = ")
                    .push_bind(crl.next_update)
                    .push(", published_number = ")
                    .push_bind(crl.number)
                    .push(" WHERE issuer = ")
                    .push_bind(issuer)
                    .push(" AND (published_number IS NULL OR published_number < ")
                    .push_bind(crl.number)
                    .push(")");
                update
                    .build()
                    .execute(&self.pool)
                    .await
                    .map_err($crate::storage::classify)?;
                Ok(())
            }

            async fn revocation_of(
                &self,
                serial: &str,
            ) -> Result<Option<$crate::storage::RevokedEntry>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates WHERE serial = ",
                );
                select
                    .push_bind(serial)
                    .push(
                        " AND status <> 'valid' UNION ALL SELECT serial, revoked_at, \
                         revocation_reason FROM station_certificates WHERE serial = ",
                    )
                    .push_bind(serial)
                    .push(" AND status <> 'valid'");
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.as_ref()
                    .map(revoked_entry_from_row)
                    .transpose()
                    .map_err(classify)
            }

            async fn latest_crl(
                &self,
                issuer: &str,
            ) -> Result<Option<$crate::storage::PublishedCrl>, $crate::storage::StoreError> {
                use sqlx::Row as _;
                use $crate::storage::classify;
                let mut select = sqlx::QueryBuilder::<$db>::new(
                    "SELECT published_number, this_update, next_update, der FROM crl_state \
                     WHERE der IS NOT NULL AND issuer = ",
                );
                select.push_bind(issuer);
                let row = select
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                row.map(|row| {
                    Ok($crate::storage::PublishedCrl {
                        number: row.try_get("published_number")?,
                        this_update: row.try_get("this_update")?,
                        next_update: row.try_get("next_update")?,
                        der: row.try_get("der")?,
                    })
                })
                .transpose()
                .map_err(classify)
            }

            async fn successor(
                &self,
                serial: &str,
            ) -> Result<Option<$crate::storage::CertificateRecord>, $crate::storage::StoreError>
            {
                use $crate::storage::classify;
                let row = select_certificates_where("supersedes", serial)
                    .build()
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
            ) -> Result<Vec<$crate::storage::CertificateRecord>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut select = select_certificates_where("device_serial", serial);
                select.push(" ORDER BY issued_at DESC");
                let rows = select
                    .build()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                rows.iter()
                    .map(certificate_from_row)
                    .collect::<Result<_, _>>()
                    .map_err(classify)
            }

            async fn append_audit(
                &self,
                events: &[$crate::storage::AuditEvent],
            ) -> Result<(), $crate::storage::StoreError> {
                use $crate::storage::classify;
                let mut tx = self.begin().await?;
                append_events(&mut tx, events).await?;
                tx.commit().await.map_err(classify)
            }

            async fn audit_events(
                &self,
            ) -> Result<Vec<$crate::storage::StoredAuditEvent>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let rows = sqlx::query("SELECT * FROM audit_events ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                rows.iter()
                    .map(admin::audit_from_row)
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(classify)
            }

            async fn restore_audit_protection(
                &self,
            ) -> Result<Vec<&'static str>, $crate::storage::StoreError> {
                admin::restore_audit_protection(self).await
            }

            async fn policy_events(
                &self,
            ) -> Result<Vec<$crate::storage::StoredAuditEvent>, $crate::storage::StoreError> {
                use $crate::storage::classify;
                let rows = sqlx::query(
                    "SELECT * FROM audit_events \
                     WHERE action IN ('policy.loaded', 'policy.changed') ORDER BY seq",
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
            ) -> Result<Vec<$crate::storage::StoredAuditEvent>, $crate::storage::StoreError> {
                admin::audit_page(self, after_seq, limit).await
            }

            async fn search_certificates(
                &self,
                query: &$crate::storage::CertificateQuery,
            ) -> Result<Vec<$crate::storage::CertificateRecord>, $crate::storage::StoreError> {
                admin::search_certificates(self, query).await
            }

            async fn add_operator(
                &self,
                operator: &$crate::storage::OperatorRecord,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<(), $crate::storage::StoreError> {
                admin::add_operator(self, operator, audit).await
            }

            async fn operator(
                &self,
                lookup: &str,
            ) -> Result<Option<$crate::storage::OperatorRecord>, $crate::storage::StoreError> {
                admin::operator(self, lookup).await
            }

            async fn operators(
                &self,
            ) -> Result<Vec<$crate::storage::OperatorRecord>, $crate::storage::StoreError> {
                admin::operators(self).await
            }

            async fn revoke_operator(
                &self,
                name: &str,
                at: i64,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<bool, $crate::storage::StoreError> {
                admin::revoke_operator(self, name, at, audit).await
            }
        }
    };
}
pub(in crate::storage) use impl_store;
