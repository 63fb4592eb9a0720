//! SQLite: restoring the audit trail's triggers, and the shared admin queries of `sql/admin.rs`.

use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, append_events, certificate_from_row};

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

crate::storage::sql::admin::admin_queries!(
    SqliteStore,
    sqlx::Sqlite,
    SqliteRow,
    append_events,
    certificate_from_row
);
