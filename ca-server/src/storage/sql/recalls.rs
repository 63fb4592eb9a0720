//! Recalls, written once for every backend: the statements are in `storage/recalls.rs`; each
//! transaction opens with the backend's `$begin` (SQLite's write lock, or PostgreSQL's audit
//! chain lock, the one the group commit holds) and appends with `$append`.

/// Implements `RecallStore` for `$store` over `$db`.
macro_rules! impl_recall_store {
    ($store:ty, $db:ty, $begin:ident, $append:path) => {
        const _: () = {
            use $crate::storage::recalls::{
                self, AuditFor, NewRecall, RecallCount, RecallMatch, RecallQuery, RecallRecord,
                RecallRow, RecallStore,
            };
            use $crate::storage::{AuditEvent, StoreError, classify, operations::count};

            #[async_trait::async_trait]
            impl RecallStore for $store {
                async fn create_recall(
                    &self,
                    recall: &NewRecall,
                    audit: &AuditEvent,
                ) -> Result<i64, StoreError> {
                    let mut tx = self.$begin().await?;
                    let (id,): (i64,) = recalls::insert::<$db>(recall)
                        .build_query_as()
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(classify)?;
                    let mut event = audit.clone();
                    event.object = format!("recall:{id}");
                    $append(&mut tx, &[event]).await?;
                    tx.commit().await.map_err(classify)?;
                    Ok(id)
                }

                async fn recall_matches(
                    &self,
                    query: &RecallQuery,
                    after: Option<&str>,
                    limit: u32,
                    now: i64,
                ) -> Result<Vec<RecallMatch>, StoreError> {
                    let rows: Vec<(String, String, String)> =
                        recalls::select_matches::<$db>(query, after, limit, now)
                            .build_query_as()
                            .fetch_all(&self.pool)
                            .await
                            .map_err(classify)?;
                    Ok(recalls::matches(rows))
                }

                async fn recall_counts(
                    &self,
                    query: &RecallQuery,
                    now: i64,
                ) -> Result<Vec<RecallCount>, StoreError> {
                    let rows: Vec<(String, i64, i64)> = recalls::select_counts::<$db>(query, now)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(rows
                        .into_iter()
                        .map(|(issuer, certificates, devices)| RecallCount {
                            issuer,
                            certificates: count(certificates),
                            devices: count(devices),
                        })
                        .collect())
                }

                async fn apply_recall(
                    &self,
                    recall: &RecallRecord,
                    serials: &[String],
                    at: i64,
                    audit_for: AuditFor<'_>,
                ) -> Result<Vec<RecallMatch>, StoreError> {
                    if serials.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.$begin().await?;
                    let status = recall.action.status();
                    let rows: Vec<(String, String, String)> =
                        recalls::update_still_valid::<$db>(serials, status, &recall.reason, at)
                            .build_query_as()
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(classify)?;
                    let changed = recalls::matches(rows);
                    if !changed.is_empty() {
                        recalls::insert_items::<$db>(recall.id, &changed)
                            .build()
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                        recalls::add_to_count::<$db>(recall.id, changed.len())
                            .build()
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                        let events: Vec<AuditEvent> = changed.iter().map(audit_for).collect();
                        $append(&mut tx, &events).await?;
                    }
                    tx.commit().await.map_err(classify)?;
                    Ok(changed)
                }

                async fn complete_recall(
                    &self,
                    id: i64,
                    at: i64,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.$begin().await?;
                    let done = recalls::complete::<$db>(id, at)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    if done.rows_affected() > 0 {
                        $append(&mut tx, std::slice::from_ref(audit)).await?;
                    }
                    tx.commit().await.map_err(classify)
                }

                async fn recalls(&self) -> Result<Vec<RecallRecord>, StoreError> {
                    let rows: Vec<RecallRow> = recalls::select_all::<$db>()
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(rows.into_iter().map(recalls::record).collect())
                }

                async fn release_recall(
                    &self,
                    id: i64,
                    at: i64,
                    audit: &AuditEvent,
                    audit_for: AuditFor<'_>,
                ) -> Result<Option<Vec<RecallMatch>>, StoreError> {
                    let mut tx = self.$begin().await?;
                    let released: Option<(i64,)> = recalls::mark_released::<$db>(id, at)
                        .build_query_as()
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(classify)?;
                    if released.is_none() {
                        return Ok(None);
                    }
                    let rows: Vec<(String, String, String)> = recalls::unhold::<$db>(id)
                        .build_query_as()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(classify)?;
                    let changed = recalls::matches(rows);
                    let mut events = vec![audit.clone()];
                    events.extend(changed.iter().map(audit_for));
                    $append(&mut tx, &events).await?;
                    tx.commit().await.map_err(classify)?;
                    Ok(Some(changed))
                }
            }
        };
    };
}
pub(in crate::storage) use impl_recall_store;
