//! PostgreSQL: the admin API's queries (audit pages, certificate search, operator
//! credentials).

// Dynamic SQL here is only ever built from constant clauses and numbered placeholders.
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::{CERTIFICATE_COLUMNS, PostgresStore, append_events, certificate_from_row};
use crate::storage::{
    AuditEvent, CertificateQuery, CertificateRecord, OperatorKind, OperatorRecord, Role,
    StoreError, StoredAuditEvent, classify,
};

/// The append-only triggers of migrations 0003 (the trail) and 0005 (its checkpoints): trigger,
/// table, and the statements that make it (and its function) again.
const AUDIT_TRIGGERS: [(&str, &str, &str); 2] = [
    (
        "audit_events_append_only",
        "audit_events",
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();",
    ),
    (
        "audit_checkpoints_append_only",
        "audit_checkpoints",
        "CREATE OR REPLACE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();",
    ),
];

pub(super) async fn restore_audit_protection(
    store: &PostgresStore,
) -> Result<Vec<&'static str>, StoreError> {
    let mut restored = Vec::new();
    for (trigger, table, create) in AUDIT_TRIGGERS {
        let present: Option<String> = sqlx::query_scalar(
            "SELECT tgname::text FROM pg_trigger \
             WHERE tgrelid = $1::regclass AND tgname = $2 AND tgenabled <> 'D'",
        )
        .bind(table)
        .bind(trigger)
        .fetch_optional(&store.pool)
        .await
        .map_err(classify)?;
        if present.is_some() {
            continue;
        }
        // A disabled trigger is dropped and made again; one transaction, so a concurrent
        // replica's restore cannot interleave (the second sees the first's trigger at commit).
        let mut tx = store.pool.begin().await.map_err(classify)?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE; \
             DROP TRIGGER IF EXISTS {trigger} ON {table}; {create}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        restored.push(trigger);
    }
    Ok(restored)
}

pub(super) async fn audit_page(
    store: &PostgresStore,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<StoredAuditEvent>, StoreError> {
    let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
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
    store: &PostgresStore,
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
    let mut next = 0;
    let mut placeholder = || {
        next += 1;
        format!("${next}")
    };
    for (value, clause) in [
        (&query.device, " AND c.device_serial = "),
        (&query.product, " AND c.product = "),
        (&query.lot, " AND d.lot = "),
        (&query.after, " AND c.serial > "),
    ] {
        if let Some(value) = value {
            sql.push_str(clause);
            sql.push_str(&placeholder());
            text.push(value);
        }
    }
    if query.status.is_some() {
        sql.push_str(" AND c.status = ");
        sql.push_str(&placeholder());
    }
    if query.not_after_within.is_some() {
        let (from, to) = (placeholder(), placeholder());
        sql.push_str(&format!(
            " AND c.not_after > {from} AND c.not_after <= {to}"
        ));
    }
    let limit = placeholder();
    sql.push_str(&format!(" ORDER BY c.serial LIMIT {limit}"));
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
    store: &PostgresStore,
    operator: &OperatorRecord,
    audit: &AuditEvent,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO operators (name, kind, role, lookup, secret_sha256, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
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
    store: &PostgresStore,
    lookup: &str,
) -> Result<Option<OperatorRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM operators WHERE lookup = $1")
        .bind(lookup)
        .fetch_optional(&store.pool)
        .await
        .map_err(classify)?;
    row.as_ref()
        .map(operator_from_row)
        .transpose()
        .map_err(classify)
}

pub(super) async fn operators(store: &PostgresStore) -> Result<Vec<OperatorRecord>, StoreError> {
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
    store: &PostgresStore,
    name: &str,
    at: i64,
    audit: &AuditEvent,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let done =
        sqlx::query("UPDATE operators SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
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

fn operator_from_row(row: &PgRow) -> Result<OperatorRecord, sqlx::Error> {
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

pub(super) fn audit_from_row(row: &PgRow) -> Result<StoredAuditEvent, sqlx::Error> {
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
