//! Upgrading a SQLite database that already holds certificates: the rebuild that defers the
//! certificates table's references keeps every row and index, and the references still hold.

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, SqliteConnection};

use super::super::SqliteStore;
use super::*;

/// The last migration before the rebuild.
const BEFORE_REBUILD: i64 = 5;

async fn open_before_rebuild(path: &std::path::Path) -> SqliteConnection {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    let mut migrator = sqlx::migrate!("migrations/sqlite");
    migrator.migrations = Cow::Owned(
        migrator
            .migrations
            .iter()
            .filter(|m| m.version <= BEFORE_REBUILD)
            .cloned()
            .collect(),
    );
    migrator.run(&mut conn).await.unwrap();
    conn
}

/// Device IP20000001 with certificates `c0` (revoked) and `c1`, which supersedes it.
async fn store_two_certificates(conn: &mut SqliteConnection) {
    sqlx::raw_sql(
        "INSERT INTO devices (serial, product, gtin, lot, registered_at) \
             VALUES ('IP20000001', 'example-infusion-pump', '09506000134352', 'L1', 1000);
         INSERT INTO certificates (serial, issuer, device_serial, product, policy_oid, not_before, \
             not_after, spki_sha256, der, status, revoked_at, revocation_reason, authorized_by, \
             supersedes, issued_at) VALUES \
             ('c0', 'basic', 'IP20000001', 'example-infusion-pump', '1.2.3', 1000, 5000, x'07', \
              x'3000', 'revoked', 1200, 'superseded', 'token', NULL, 1000), \
             ('c1', 'basic', 'IP20000001', 'example-infusion-pump', '1.2.3', 1100, 5100, x'08', \
              x'3000', 'valid', NULL, NULL, 'certificate:c0', 'c0', 1100);",
    )
    .execute(conn)
    .await
    .unwrap();
}

async fn schema_of(conn: &mut SqliteConnection, name: &str) -> String {
    sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = ?")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn certificate_indexes(conn: &mut SqliteConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'certificates' \
         ORDER BY name",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn rebuild_keeps_certificates_and_indexes_and_defers_their_references() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let mut conn = open_before_rebuild(&path).await;
    store_two_certificates(&mut conn).await;
    let indexes_before = certificate_indexes(&mut conn).await;
    conn.close().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
    let c0 = store.certificate("c0").await.unwrap().unwrap();
    assert_eq!(c0.status, CertificateStatus::Revoked);
    let c1 = store.certificate("c1").await.unwrap().unwrap();
    assert_eq!(c1.supersedes.as_deref(), Some("c0"));
    assert_eq!(c1.spki_sha256, vec![8]);

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let revocation: (i64, String) = sqlx::query_as(
        "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = 'c0'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(revocation, (1200, "superseded".into()));
    let table = schema_of(&mut conn, "certificates").await;
    assert_eq!(
        table.matches("DEFERRABLE INITIALLY DEFERRED").count(),
        2,
        "{table}"
    );
    assert!(
        table.contains(r#"REFERENCES "certificates" (serial)"#),
        "the reference to itself follows the rename: {table}"
    );
    // Every index survives the rebuild (later migrations may add more).
    let indexes_after = certificate_indexes(&mut conn).await;
    for index in &indexes_before {
        assert!(
            indexes_after.contains(index),
            "{index} lost: {indexes_after:?}"
        );
    }
    let broken: Vec<(String,)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(broken.is_empty());

    // The deferred references still refuse: a certificate of an unknown device, or superseding
    // an unknown certificate, is refused when its transaction commits.
    for (serial, device, supersedes) in [
        ("c2", "IP29999999", None),
        ("c3", "IP20000001", Some("nosuch")),
    ] {
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut conn)
            .await
            .unwrap();
        let refused = sqlx::query(
            "INSERT INTO certificates (serial, issuer, device_serial, product, policy_oid, \
             not_before, not_after, spki_sha256, der, authorized_by, supersedes, issued_at) \
             VALUES (?, 'basic', ?, 'p', '1.2.3', 1, 2, x'09', x'3000', 'token', ?, 1)",
        )
        .bind(serial)
        .bind(device)
        .bind(supersedes)
        .execute(&mut conn)
        .await
        .unwrap_err();
        assert!(
            refused.to_string().contains("FOREIGN KEY"),
            "{serial}: {refused}"
        );
        assert!(store.certificate(serial).await.unwrap().is_none());
    }
}
