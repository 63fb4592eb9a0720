//! All-or-nothing `init`: every precondition (directory, database reachable and empty, or a
//! PostgreSQL database created when missing) is checked before anything is written; a failure
//! leaves no file and no row behind, and running `init` again then succeeds.

use std::path::{Path, PathBuf};

use ca_server::storage::testing;
use iomt_tests::TestApp;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, SqliteConnection};

/// `init` of a CA in `data` with the shipped policies.
async fn init(data: &Path, extra: &[&str]) -> Result<String, String> {
    let mut args = vec![
        "init",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    TestApp::cli_in(data.to_str().unwrap(), &args).await
}

/// Everything in `dir`, sorted (hidden staging directories included), but the rollback
/// journal the test's own locking connection keeps.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| !name.ends_with("-journal"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The CA answers: its audit trail holds the events `init` wrote.
async fn assert_initialized(data: &Path) {
    let out = TestApp::cli_in(data.to_str().unwrap(), &["audit", "verify"])
        .await
        .unwrap();
    assert!(out.contains("audit chain intact"), "{out}");
    assert!(data.join("config.toml").exists() && data.join("root.pem").exists());
}

/// A name no other test (or test run) uses.
fn random_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

/// Connects to the maintenance database, or `None` (skip, with the reason printed).
async fn postgres() -> Option<(PgConnection, String)> {
    // `testing::create` skips (or fails in CI) exactly as the other PostgreSQL tests do.
    let probe = testing::create().await?;
    drop(probe);
    let admin = testing::admin_url();
    let base = admin.rsplit_once('/').unwrap().0.to_owned();
    Some((PgConnection::connect(&admin).await.unwrap(), base))
}

async fn database_exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
        == 1
}

async fn drop_database(conn: &mut PgConnection, name: &str) {
    conn.execute(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .await
    .unwrap();
}

#[tokio::test]
async fn init_with_missing_postgres_database_creates_it() {
    let Some((mut admin, base)) = postgres().await else {
        return;
    };
    let name = random_name("iomt_test_missing");
    let url = format!("{base}/{name}");
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("ca");
    let result = init(&data, &["--database-url", &url]).await;
    let created = database_exists(&mut admin, &name).await;
    if result.is_ok() {
        assert!(created);
        assert_initialized(&data).await;
        let config = std::fs::read_to_string(data.join("config.toml")).unwrap();
        assert!(config.contains(&name), "{config}");
    }
    drop_database(&mut admin, &name).await;
    result.unwrap();
}

#[tokio::test]
async fn init_whose_role_cannot_create_the_database_leaves_nothing_and_reruns() {
    let Some((mut admin, base)) = postgres().await else {
        return;
    };
    let role = random_name("iomt_nocreate");
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN NOCREATEDB NOSUPERUSER"
        )))
        .await
        .unwrap();
    let name = random_name("iomt_test_missing");
    let host = base.rsplit_once('@').map_or(base.as_str(), |(_, h)| h);
    let scheme = base.split_once("://").unwrap().0;
    let limited = format!("{scheme}://{role}@{host}/{name}");
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("ca");

    let err = init(&data, &["--database-url", &limited])
        .await
        .unwrap_err();
    assert!(
        err.contains(&format!("`{name}` does not exist and could not be created"))
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!data.exists(), "{:?}", entries(&data));
    assert_eq!(entries(scratch.path()), Vec::<String>::new());
    assert!(!database_exists(&mut admin, &name).await);

    let url = format!("{base}/{name}");
    let rerun = init(&data, &["--database-url", &url]).await;
    if rerun.is_ok() {
        assert_initialized(&data).await;
    }
    drop_database(&mut admin, &name).await;
    admin
        .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .await
        .unwrap();
    rerun.unwrap();
}

/// An empty SQLite database file held under `BEGIN EXCLUSIVE` by another connection.
async fn locked_sqlite(path: &Path) -> SqliteConnection {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    conn.execute("BEGIN EXCLUSIVE").await.unwrap();
    conn
}

#[tokio::test]
async fn init_against_a_locked_sqlite_database_leaves_nothing_and_reruns() {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("external.db");
    let lock = locked_sqlite(&db).await;
    let data = scratch.path().join("ca");
    let url = format!("sqlite://{}", db.display());

    let err = init(&data, &["--database-url", &url]).await.unwrap_err();
    assert!(
        err.contains("is not usable") && err.contains("locked"),
        "{err}"
    );
    assert!(!data.exists());
    assert_eq!(entries(scratch.path()), ["external.db"]);

    lock.close().await.unwrap();
    init(&data, &["--database-url", &url]).await.unwrap();
    assert_initialized(&data).await;
    assert!(
        entries(scratch.path())
            .iter()
            .all(|name| !name.starts_with('.'))
    );
}

#[tokio::test]
async fn init_over_a_locked_ca_db_in_the_directory_writes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("ca");
    std::fs::create_dir(&data).unwrap();
    let lock = locked_sqlite(&data.join("ca.db")).await;

    let err = init(&data, &[]).await.unwrap_err();
    assert!(err.contains("already holds a CA (found ca.db)"), "{err}");
    assert_eq!(entries(&data), ["ca.db"]);
    assert_eq!(entries(scratch.path()), ["ca"]);

    lock.close().await.unwrap();
    std::fs::remove_file(data.join("ca.db")).unwrap();
    init(&data, &[]).await.unwrap();
    assert_initialized(&data).await;
}

#[tokio::test]
async fn init_against_a_database_holding_data_is_refused_and_writes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("busy.db");
    let url = format!("sqlite://{}", db.display());
    let mut other = SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    other
        .execute("CREATE TABLE patients (id INTEGER PRIMARY KEY); INSERT INTO patients VALUES (1)")
        .await
        .unwrap();
    other.close().await.unwrap();
    let before = std::fs::read(&db).unwrap();
    let data = scratch.path().join("ca");

    let err = init(&data, &["--database-url", &url]).await.unwrap_err();
    assert!(
        err.contains("already holds data (table `patients`)")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!data.exists());
    assert_eq!(entries(scratch.path()), ["busy.db"]);
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[tokio::test]
async fn init_failing_after_the_files_are_built_removes_them_and_reruns() {
    let scratch = tempfile::tempdir().unwrap();
    // The database's directory does not exist: every check passes (a new SQLite file), and the
    // write fails only after the whole hierarchy has been staged.
    let db_dir: PathBuf = scratch.path().join("db");
    let url = format!("sqlite://{}", db_dir.join("ca.db").display());
    let data = scratch.path().join("ca");
    std::fs::create_dir(&data).unwrap();

    let err = init(&data, &["--database-url", &url]).await.unwrap_err();
    assert!(err.contains("database sqlite://"), "{err}");
    assert_eq!(entries(&data), Vec::<String>::new());
    assert_eq!(entries(scratch.path()), ["ca"]);

    std::fs::create_dir(&db_dir).unwrap();
    init(&data, &["--database-url", &url]).await.unwrap();
    assert_initialized(&data).await;
    assert!(
        entries(&data)
            .iter()
            .all(|name| !name.starts_with(".init-"))
    );
}

#[tokio::test]
async fn init_into_a_non_empty_directory_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("ca");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("notes.txt"), "keep me").unwrap();
    let err = init(&data, &[]).await.unwrap_err();
    assert!(
        err.contains("is not empty (found notes.txt)") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(entries(&data), ["notes.txt"]);
}
