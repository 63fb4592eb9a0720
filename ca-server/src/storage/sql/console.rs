//! Console sessions and reads, written once for every backend: the statements are in
//! `storage/console.rs`; a transaction that appends to the audit chain opens with the
//! backend's `$begin` and appends with `$append`.

/// Implements `ConsoleStore` for `$store` over `$db`.
macro_rules! impl_console_store {
    ($store:ty, $db:ty, $begin:ident, $append:path) => {
        const _: () = {
            use $crate::storage::console::{
                self, AuditRow, ConsoleSession, ConsoleStore, ExpiringOnDay, IssuedInHour,
                SessionRow,
            };
            use $crate::storage::{
                AuditEvent, StoreError, StoredAuditEvent, classify, operations::count,
            };

            #[async_trait::async_trait]
            impl ConsoleStore for $store {
                async fn create_session(
                    &self,
                    session: &ConsoleSession,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.$begin().await?;
                    console::insert_session::<$db>(session)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    $append(&mut tx, std::slice::from_ref(audit)).await?;
                    tx.commit().await.map_err(classify)
                }

                async fn touch_session(
                    &self,
                    id_sha256: &[u8],
                    idle_since: i64,
                    now: i64,
                ) -> Result<Option<ConsoleSession>, StoreError> {
                    let row: Option<SessionRow> =
                        console::touch_session::<$db>(id_sha256, idle_since, now)
                            .build_query_as()
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(classify)?;
                    Ok(row.and_then(console::session))
                }

                async fn delete_session(
                    &self,
                    id_sha256: &[u8],
                    audit: &AuditEvent,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.$begin().await?;
                    let deleted = console::delete_session::<$db>(id_sha256)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    if deleted.rows_affected() == 0 {
                        return Ok(false);
                    }
                    $append(&mut tx, std::slice::from_ref(audit)).await?;
                    tx.commit().await.map_err(classify)?;
                    Ok(true)
                }

                async fn delete_idle_sessions(&self, idle_since: i64) -> Result<u64, StoreError> {
                    let deleted = console::delete_idle::<$db>(idle_since)
                        .build()
                        .execute(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(deleted.rows_affected())
                }

                async fn issued_per_hour(
                    &self,
                    since: i64,
                ) -> Result<Vec<IssuedInHour>, StoreError> {
                    let rows: Vec<(i64, String, String, i64)> =
                        console::select_issued_per_hour::<$db>(since)
                            .build_query_as()
                            .fetch_all(&self.pool)
                            .await
                            .map_err(classify)?;
                    Ok(rows
                        .into_iter()
                        .map(|(hour, product, channel, n)| IssuedInHour {
                            hour,
                            product,
                            channel,
                            certificates: count(n),
                        })
                        .collect())
                }

                async fn expiring_per_day(
                    &self,
                    from: i64,
                    to: i64,
                ) -> Result<Vec<ExpiringOnDay>, StoreError> {
                    let rows: Vec<(i64, i64)> = console::select_expiring_per_day::<$db>(from, to)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(rows
                        .into_iter()
                        .map(|(day, n)| ExpiringOnDay {
                            day,
                            certificates: count(n),
                        })
                        .collect())
                }

                async fn station_last_issued(&self) -> Result<Vec<(String, i64)>, StoreError> {
                    let rows: Vec<(String, i64)> = console::select_station_last_issued::<$db>()
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(rows
                        .into_iter()
                        .filter_map(|(by, at)| {
                            by.strip_prefix("station:")
                                .map(|name| (name.to_owned(), at))
                        })
                        .collect())
                }

                async fn audit_events_about(
                    &self,
                    objects: &[String],
                    limit: u32,
                ) -> Result<Vec<StoredAuditEvent>, StoreError> {
                    if objects.is_empty() {
                        return Ok(Vec::new());
                    }
                    let rows: Vec<AuditRow> = console::select_audit_about::<$db>(objects, limit)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(rows.into_iter().map(console::audit_event).collect())
                }
            }
        };
    };
}
pub(in crate::storage) use impl_console_store;
