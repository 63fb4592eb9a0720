//! CA generations, written once for every backend. A rollover is one transaction: the old
//! active generation becomes retiring only if it still is the active one (a conditional
//! UPDATE), and the partial unique index `ca_generations_one_active` keeps one active
//! generation per CA whatever the interleaving, on both backends and across replicas.

/// Implements `GenerationStore` for `$store` over `$db`.
macro_rules! impl_generation_store {
    ($store:ty, $db:ty, $begin:ident, $append:path) => {
        const _: () = {
            use $crate::storage::generations::{
                self, COLUMNS, GenerationRecord, GenerationRow, GenerationStore, IssuerCount,
            };
            use $crate::storage::{AuditEvent, StoreError, classify, operations::count};

            fn insert(record: &GenerationRecord) -> sqlx::QueryBuilder<$db> {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "INSERT INTO ca_generations ({COLUMNS}) VALUES ("
                ));
                let mut values = q.separated(", ");
                values
                    .push_bind(&record.name)
                    .push_bind(&record.ca)
                    .push_bind(record.generation)
                    .push_bind(record.status.as_str())
                    .push_bind(record.not_before)
                    .push_bind(record.not_after)
                    .push_bind(&record.der)
                    .push_bind(record.custody.as_str())
                    .push_bind(&record.key)
                    .push_bind(record.created_at)
                    .push_bind(record.changed_at)
                    .push_bind(record.links.as_ref().map(|l| l.new_with_old.clone()))
                    .push_bind(record.links.as_ref().map(|l| l.old_with_new.clone()));
                q.push(")");
                q
            }

            #[async_trait::async_trait]
            impl GenerationStore for $store {
                async fn generations(&self) -> Result<Vec<GenerationRecord>, StoreError> {
                    let rows: Vec<GenerationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM ca_generations ORDER BY ca, generation"
                    )))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                    rows.into_iter().map(generations::from_row).collect()
                }

                async fn adopt_generations(
                    &self,
                    initial: &[GenerationRecord],
                ) -> Result<(), StoreError> {
                    for record in initial {
                        let mut q = insert(record);
                        q.push(" ON CONFLICT DO NOTHING");
                        q.build().execute(&self.pool).await.map_err(classify)?;
                    }
                    Ok(())
                }

                async fn add_pending_generation(
                    &self,
                    pending: &GenerationRecord,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.$begin().await?;
                    insert(pending)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, pending))?;
                    $append(&mut tx, std::slice::from_ref(audit)).await?;
                    tx.commit().await.map_err(classify)
                }

                async fn activate_generation(
                    &self,
                    next: &GenerationRecord,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.$begin().await?;
                    let mut retire = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE ca_generations SET status = 'retiring', changed_at = ",
                    );
                    retire
                        .push_bind(next.changed_at)
                        .push(" WHERE ca = ")
                        .push_bind(&next.ca)
                        .push(" AND generation = ")
                        .push_bind(next.generation - 1)
                        .push(" AND status = 'active'");
                    let done = retire.build().execute(&mut *tx).await.map_err(classify)?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::GenerationConflict {
                            ca: next.ca.clone(),
                            expected: next.generation - 1,
                        });
                    }
                    let mut drop_pending = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM ca_generations WHERE status = 'pending' AND name = ",
                    );
                    drop_pending.push_bind(&next.name);
                    drop_pending
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    insert(next)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, next))?;
                    $append(&mut tx, std::slice::from_ref(audit)).await?;
                    tx.commit().await.map_err(classify)
                }

                async fn retire_generation(
                    &self,
                    name: &str,
                    at: i64,
                    audit: &AuditEvent,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.$begin().await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE ca_generations SET status = 'retired', changed_at = ",
                    );
                    q.push_bind(at)
                        .push(" WHERE status = 'retiring' AND name = ")
                        .push_bind(name);
                    let done = q.build().execute(&mut *tx).await.map_err(classify)?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    $append(&mut tx, std::slice::from_ref(audit)).await?;
                    tx.commit().await.map_err(classify)?;
                    Ok(true)
                }

                async fn valid_by_issuer(&self, now: i64) -> Result<Vec<IssuerCount>, StoreError> {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT issuer, SUM(CASE WHEN status <> 'revoked' THEN 1 ELSE 0 END), \
                         COUNT(*), MAX(not_after) FROM (SELECT issuer, status, not_after \
                         FROM certificates WHERE not_after > ",
                    );
                    q.push_bind(now).push(
                        " UNION ALL SELECT issuer, status, not_after FROM station_certificates \
                         WHERE not_after > ",
                    );
                    q.push_bind(now)
                        .push(") AS live GROUP BY issuer ORDER BY issuer");
                    let rows: Vec<(String, i64, i64, i64)> = q
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(rows
                        .into_iter()
                        .map(|(issuer, valid, unexpired, last_not_after)| IssuerCount {
                            issuer,
                            valid: count(valid),
                            unexpired: count(unexpired),
                            last_not_after,
                        })
                        .collect())
                }

                async fn has_unexpired(&self, issuer: &str, now: i64) -> Result<bool, StoreError> {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT 1 FROM certificates WHERE issuer = ",
                    );
                    q.push_bind(issuer)
                        .push(" AND not_after > ")
                        .push_bind(now)
                        .push(" UNION ALL SELECT 1 FROM station_certificates WHERE issuer = ")
                        .push_bind(issuer)
                        .push(" AND not_after > ")
                        .push_bind(now)
                        .push(" LIMIT 1");
                    let row: Option<(i32,)> = q
                        .build_query_as()
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(row.is_some())
                }
            }

            /// A unique violation on insert: another generation took the name, number or the
            /// one active (or pending) slot of this CA first.
            fn conflict(error: sqlx::Error, record: &GenerationRecord) -> StoreError {
                match &error {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StoreError::GenerationConflict {
                            ca: record.ca.clone(),
                            expected: record.generation - 1,
                        }
                    }
                    _ => classify(error),
                }
            }
        };
    };
}
pub(in crate::storage) use impl_generation_store;
