//! PostgreSQL: restoring the audit trail's triggers, and the shared admin queries of
//! `sql/admin.rs`.

// The trigger statements below are constants of this file, never a caller's text.
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;

use super::{PostgresStore, append_events, certificate_from_row};

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

crate::storage::sql::admin::admin_queries!(
    PostgresStore,
    sqlx::Postgres,
    PgRow,
    append_events,
    certificate_from_row
);
