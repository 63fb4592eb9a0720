//! SQLite: the admin API's queries (audit pages, certificate search, operator credentials).

// Dynamic SQL here is only ever built from constant clauses and `?` placeholders.
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};

use super::{CERTIFICATE_COLUMNS, SqliteStore, append_events, certificate_from_row};
use crate::storage::{
    AuditEvent, CertificateQuery, CertificateRecord, OperatorKind, OperatorRecord, Role,
    StoreError, StoredAuditEvent, classify,
};

/// The append-only triggers of migrations 0005 (the trail) and 0008 (its checkpoints), by name.
const AUDIT_TRIGGERS: [(&str, &str); 4] = [
    (
        "audit_events_no_update",
        "CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ),
    (
        "audit_events_no_delete",
        "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ),
    (
        "audit_checkpoints_no_update",
        "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints \
         BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    ),
    (
        "audit_checkpoints_no_delete",
        "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints \
         BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    ),
];

pub(super) async fn restore_audit_protection(
    store: &SqliteStore,
) -> Result<Vec<&'static str>, StoreError> {
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' \
         AND tbl_name IN ('audit_events', 'audit_checkpoints')",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(classify)?;
    let mut restored = Vec::new();
    for (name, create) in AUDIT_TRIGGERS {
        if !present.iter().any(|p| p == name) {
            sqlx::query(create)
                .execute(&store.pool)
                .await
                .map_err(classify)?;
            restored.push(name);
        }
    }
    Ok(restored)
}

pub(super) async fn audit_page(
    store: &SqliteStore,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<StoredAuditEvent>, StoreError> {
    let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await
        .map_err(classify)?;
    rows.iter()
        .map(audit_from_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(classify)
}

pub(super) async fn search_certificates(
    store: &SqliteStore,
    query: &CertificateQuery,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let columns = CERTIFICATE_COLUMNS
        .split(", ")
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "SELECT {columns} FROM certificates c JOIN devices d ON d.serial = c.device_serial WHERE 1 = 1"
    );
    let mut text: Vec<&str> = Vec::new();
    for (value, clause) in [
        (&query.device, " AND c.device_serial = ?"),
        (&query.product, " AND c.product = ?"),
        (&query.lot, " AND d.lot = ?"),
        (&query.after, " AND c.serial > ?"),
    ] {
        if let Some(value) = value {
            sql.push_str(clause);
            text.push(value);
        }
    }
    if query.status.is_some() {
        sql.push_str(" AND c.status = ?");
    }
    if query.not_after_within.is_some() {
        sql.push_str(" AND c.not_after > ? AND c.not_after <= ?");
    }
    sql.push_str(" ORDER BY c.serial LIMIT ?");
    let mut select = sqlx::query(AssertSqlSafe(sql));
    for value in text {
        select = select.bind(value);
    }
    if let Some(status) = query.status {
        select = select.bind(status.as_str());
    }
    if let Some((from, to)) = query.not_after_within {
        select = select.bind(from).bind(to);
    }
    let rows = select
        .bind(i64::from(query.limit))
        .fetch_all(&store.pool)
        .await
        .map_err(classify)?;
    rows.iter()
        .map(certificate_from_row)
        .collect::<Result<_, _>>()
        .map_err(classify)
}

pub(super) async fn add_operator(
    store: &SqliteStore,
    operator: &OperatorRecord,
    audit: &AuditEvent,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO operators (name, kind, role, lookup, secret_sha256, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&operator.name)
    .bind(operator.kind.as_str())
    .bind(operator.role.as_str())
    .bind(&operator.lookup)
    .bind(&operator.secret_sha256)
    .bind(operator.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::OperatorExists(operator.name.clone())
        }
        _ => classify(e),
    })?;
    append_events(&mut tx, std::slice::from_ref(audit)).await?;
    tx.commit().await.map_err(classify)
}

pub(super) async fn operator(
    store: &SqliteStore,
    lookup: &str,
) -> Result<Option<OperatorRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM operators WHERE lookup = ?")
        .bind(lookup)
        .fetch_optional(&store.pool)
        .await
        .map_err(classify)?;
    row.as_ref()
        .map(operator_from_row)
        .transpose()
        .map_err(classify)
}

pub(super) async fn operators(store: &SqliteStore) -> Result<Vec<OperatorRecord>, StoreError> {
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
    store: &SqliteStore,
    name: &str,
    at: i64,
    audit: &AuditEvent,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let done =
        sqlx::query("UPDATE operators SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
            .bind(at)
            .bind(name)
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

fn operator_from_row(row: &SqliteRow) -> Result<OperatorRecord, sqlx::Error> {
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

pub(super) fn audit_from_row(row: &SqliteRow) -> Result<StoredAuditEvent, sqlx::Error> {
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
