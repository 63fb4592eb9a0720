//! TPM roots, attestation challenges and device TPM bindings, written once for every backend;
//! each write transaction opens with the backend's `$begin` and appends with `$append`.

/// Implements `AttestationStore` for `$store` over `$db`.
macro_rules! impl_attestation_store {
    ($store:ty, $db:ty, $begin:ident, $append:path) => {
        const _: () = {
            use $crate::storage::{
                AttestationStore, AuditEvent, ChallengeRecord, StoreError, TpmBinding, TpmRoot,
                classify,
            };

            #[async_trait::async_trait]
            impl AttestationStore for $store {
                async fn add_tpm_roots(
                    &self,
                    roots: &[TpmRoot],
                    audit: &[AuditEvent],
                ) -> Result<Vec<Vec<u8>>, StoreError> {
                    let mut tx = self.$begin().await?;
                    let mut added = Vec::new();
                    let mut events = Vec::new();
                    for (root, event) in roots.iter().zip(audit) {
                        let mut insert = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO tpm_roots (sha256, subject, der, added_at) VALUES (",
                        );
                        insert
                            .push_bind(root.sha256.as_slice())
                            .push(", ")
                            .push_bind(root.subject.as_str())
                            .push(", ")
                            .push_bind(root.der.as_slice())
                            .push(", ")
                            .push_bind(root.added_at)
                            .push(") ON CONFLICT (sha256) DO NOTHING");
                        let done = insert
                            .build()
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                        if done.rows_affected() == 1 {
                            added.push(root.sha256.clone());
                            events.push(event.clone());
                        }
                    }
                    if !events.is_empty() {
                        $append(&mut tx, &events).await?;
                    }
                    tx.commit().await.map_err(classify)?;
                    Ok(added)
                }

                async fn tpm_roots(&self) -> Result<Vec<TpmRoot>, StoreError> {
                    let rows: Vec<(Vec<u8>, String, Vec<u8>, i64)> = sqlx::query_as(
                        "SELECT sha256, subject, der, added_at FROM tpm_roots \
                         ORDER BY added_at, sha256",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                    Ok(rows
                        .into_iter()
                        .map(|(sha256, subject, der, added_at)| TpmRoot {
                            sha256,
                            subject,
                            der,
                            added_at,
                        })
                        .collect())
                }

                async fn remove_tpm_root(
                    &self,
                    sha256: &[u8],
                    audit: &AuditEvent,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.$begin().await?;
                    let mut delete =
                        sqlx::QueryBuilder::<$db>::new("DELETE FROM tpm_roots WHERE sha256 = ");
                    delete.push_bind(sha256);
                    let done = delete.build().execute(&mut *tx).await.map_err(classify)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    $append(&mut tx, std::slice::from_ref(audit)).await?;
                    tx.commit().await.map_err(classify)?;
                    Ok(true)
                }

                async fn insert_challenge(
                    &self,
                    challenge: &ChallengeRecord,
                    purge_before: i64,
                ) -> Result<(), StoreError> {
                    let mut purge = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM attestation_challenges WHERE expires_at < ",
                    );
                    purge.push_bind(purge_before);
                    purge.build().execute(&self.pool).await.map_err(classify)?;
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO attestation_challenges (secret_sha256, device_serial, \
                         ek_sha256, ak_public, created_at, expires_at) VALUES (",
                    );
                    insert
                        .push_bind(challenge.secret_sha256.as_slice())
                        .push(", ")
                        .push_bind(challenge.device_serial.as_str())
                        .push(", ")
                        .push_bind(challenge.ek_sha256.as_slice())
                        .push(", ")
                        .push_bind(challenge.ak_public.as_slice())
                        .push(", ")
                        .push_bind(challenge.created_at)
                        .push(", ")
                        .push_bind(challenge.expires_at)
                        .push(")");
                    insert.build().execute(&self.pool).await.map_err(classify)?;
                    Ok(())
                }

                async fn challenge(
                    &self,
                    secret_sha256: &[u8],
                ) -> Result<Option<ChallengeRecord>, StoreError> {
                    let mut select = sqlx::QueryBuilder::<$db>::new(
                        "SELECT secret_sha256, device_serial, ek_sha256, ak_public, created_at, \
                         expires_at, used_at FROM attestation_challenges WHERE secret_sha256 = ",
                    );
                    select.push_bind(secret_sha256);
                    let row: Option<(Vec<u8>, String, Vec<u8>, Vec<u8>, i64, i64, Option<i64>)> =
                        select
                            .build_query_as()
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(classify)?;
                    Ok(row.map(
                        |(
                            secret_sha256,
                            device_serial,
                            ek_sha256,
                            ak_public,
                            created_at,
                            expires_at,
                            used_at,
                        )| ChallengeRecord {
                            secret_sha256,
                            device_serial,
                            ek_sha256,
                            ak_public,
                            created_at,
                            expires_at,
                            used_at,
                        },
                    ))
                }

                async fn device_tpm(
                    &self,
                    serial: &str,
                ) -> Result<Option<TpmBinding>, StoreError> {
                    let mut select = sqlx::QueryBuilder::<$db>::new(
                        "SELECT device_serial, ek_sha256, hw_serial, bound_at FROM device_tpms \
                         WHERE device_serial = ",
                    );
                    select.push_bind(serial);
                    let row: Option<(String, Vec<u8>, String, i64)> = select
                        .build_query_as()
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?;
                    Ok(row.map(|(device_serial, ek_sha256, hw_serial, bound_at)| TpmBinding {
                        device_serial,
                        ek_sha256,
                        hw_serial,
                        bound_at,
                    }))
                }

                async fn unbind_tpm(
                    &self,
                    serial: &str,
                ) -> Result<Option<TpmBinding>, StoreError> {
                    let bound = self.device_tpm(serial).await?;
                    let mut delete = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM device_tpms WHERE device_serial = ",
                    );
                    delete.push_bind(serial);
                    delete.build().execute(&self.pool).await.map_err(classify)?;
                    Ok(bound)
                }
            }
        };
    };
}
pub(in crate::storage) use impl_attestation_store;
