//! The admin API's queries (audit pages, certificate search, operator credentials), written
//! once for every backend. Each backend's `admin.rs` instantiates them with
//! [`admin_queries!`] beside what truly differs there (restoring the audit trail's triggers).

/// Defines the admin query functions for `$store` over `$db` (rows `$row`), appending audit
/// events with `$append` and reading certificate rows with `$certificate_from_row`.
macro_rules! admin_queries {
    ($store:ty, $db:ty, $row:ty, $append:path, $certificate_from_row:path) => {
        use sqlx::Row as _;

        use $crate::storage::{
            AuditEvent, CertificateQuery, CertificateRecord, OperatorKind, OperatorRecord, Role,
            StoreError, StoredAuditEvent, classify,
        };

        pub(super) async fn audit_page(
            store: &$store,
            after_seq: i64,
            limit: u32,
        ) -> Result<Vec<StoredAuditEvent>, StoreError> {
            let mut select = sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit_events WHERE seq > ");
            select
                .push_bind(after_seq)
                .push(" ORDER BY seq LIMIT ")
                .push_bind(i64::from(limit));
            let rows = select
                .build()
                .fetch_all(&store.pool)
                .await
                .map_err(classify)?;
            rows.iter()
                .map(audit_from_row)
                .collect::<Result<_, sqlx::Error>>()
                .map_err(classify)
        }

        pub(super) async fn search_certificates(
            store: &$store,
            query: &CertificateQuery,
        ) -> Result<Vec<CertificateRecord>, StoreError> {
            let columns = $crate::storage::CERTIFICATE_COLUMNS
                .split(", ")
                .map(|c| format!("c.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            let mut select = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {columns} FROM certificates c JOIN devices d ON d.serial = c.device_serial WHERE 1 = 1"
            ));
            for (value, clause) in [
                (&query.device, " AND c.device_serial = "),
                (&query.product, " AND c.product = "),
                (&query.lot, " AND d.lot = "),
                (&query.after, " AND c.serial > "),
            ] {
                if let Some(value) = value {
                    select.push(clause).push_bind(value.as_str());
                }
            }
            if let Some(status) = query.status {
                select.push(" AND c.status = ").push_bind(status.as_str());
            }
            if let Some((from, to)) = query.not_after_within {
                select
                    .push(" AND c.not_after > ")
                    .push_bind(from)
                    .push(" AND c.not_after <= ")
                    .push_bind(to);
            }
            select
                .push(" ORDER BY c.serial LIMIT ")
                .push_bind(i64::from(query.limit));
            let rows = select
                .build()
                .fetch_all(&store.pool)
                .await
                .map_err(classify)?;
            rows.iter()
                .map($certificate_from_row)
                .collect::<Result<_, _>>()
                .map_err(classify)
        }

        pub(super) async fn add_operator(
            store: &$store,
            operator: &OperatorRecord,
            audit: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = store.begin().await?;
            let mut insert = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO operators (name, kind, role, lookup, secret_sha256, created_at) VALUES (",
            );
            insert
                .separated(", ")
                .push_bind(&operator.name)
                .push_bind(operator.kind.as_str())
                .push_bind(operator.role.as_str())
                .push_bind(&operator.lookup)
                .push_bind(&operator.secret_sha256)
                .push_bind(operator.created_at);
            insert.push(")");
            insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::OperatorExists(operator.name.clone())
                }
                _ => classify(e),
            })?;
            $append(&mut tx, std::slice::from_ref(audit)).await?;
            tx.commit().await.map_err(classify)
        }

        pub(super) async fn operator(
            store: &$store,
            lookup: &str,
        ) -> Result<Option<OperatorRecord>, StoreError> {
            let mut select = sqlx::QueryBuilder::<$db>::new("SELECT * FROM operators WHERE lookup = ");
            select.push_bind(lookup);
            let row = select
                .build()
                .fetch_optional(&store.pool)
                .await
                .map_err(classify)?;
            row.as_ref()
                .map(operator_from_row)
                .transpose()
                .map_err(classify)
        }

        pub(super) async fn operators(store: &$store) -> Result<Vec<OperatorRecord>, StoreError> {
            let rows = sqlx::query("SELECT * FROM operators ORDER BY name")
                .fetch_all(&store.pool)
                .await
                .map_err(classify)?;
            rows.iter()
                .map(operator_from_row)
                .collect::<Result<_, _>>()
                .map_err(classify)
        }

        pub(super) async fn revoke_operator(
            store: &$store,
            name: &str,
            at: i64,
            audit: &AuditEvent,
        ) -> Result<bool, StoreError> {
            let mut tx = store.begin().await?;
            let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE operators SET revoked_at = ");
            update
                .push_bind(at)
                .push(" WHERE name = ")
                .push_bind(name)
                .push(" AND revoked_at IS NULL");
            let done = update
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            $append(&mut tx, std::slice::from_ref(audit)).await?;
            tx.commit().await.map_err(classify)?;
            Ok(true)
        }

        fn operator_from_row(row: &$row) -> Result<OperatorRecord, sqlx::Error> {
            let role: &str = row.try_get("role")?;
            Ok(OperatorRecord {
                name: row.try_get("name")?,
                kind: OperatorKind::parse(row.try_get::<&str, _>("kind")?),
                // The CHECK constraint admits only known roles; anything else is the weakest.
                role: Role::parse(role).unwrap_or(Role::Auditor),
                lookup: row.try_get("lookup")?,
                secret_sha256: row.try_get("secret_sha256")?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        pub(super) fn audit_from_row(row: &$row) -> Result<StoredAuditEvent, sqlx::Error> {
            Ok(StoredAuditEvent {
                seq: row.try_get("seq")?,
                event: AuditEvent {
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    object: row.try_get("object")?,
                    details: row.try_get("details")?,
                },
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }
    };
}
pub(in crate::storage) use admin_queries;
