//! `/healthz` and `/readyz` on the plain-HTTP listener: JSON bodies, 200 when ready, 503 with
//! the failing check named when the database is unavailable, and back to 200 without a restart.
//! The PostgreSQL test blocks its own dedicated database (`ALLOW_CONNECTIONS false` and its
//! backends terminated; the shared server keeps running); it skips with a printed reason when
//! PostgreSQL is absent, and fails under CI=true.

use std::time::Duration;

use ca_server::storage::testing;
use iomt_tests::TestApp;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const WITHIN: Duration = Duration::from_secs(20);

fn check<'a>(body: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {body}"))
}

fn is_rfc3339(text: &serde_json::Value) -> bool {
    text.as_str().is_some_and(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

#[tokio::test]
async fn readyz_names_every_check_and_healthz_answers_alive() {
    let app = TestApp::spawn().await;
    let (status, alive) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(alive["status"], "alive");
    assert!(is_rfc3339(&alive["checked_at"]), "{alive}");

    let ready = app.wait_readyz(200, WITHIN).await;
    assert_eq!(ready["ready"], true);
    assert!(is_rfc3339(&ready["checked_at"]), "{ready}");
    for name in ["database", "ca_keys", "crls", "audit_chain"] {
        assert_eq!(check(&ready, name)["ok"], true, "{name}: {ready}");
    }
    let keys = check(&ready, "ca_keys")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    for ca in ["root", "basic", "substantial", "high", "station"] {
        assert!(keys.contains(ca), "{keys}");
    }
    app.stop().await;
}

/// Blocks or unblocks new connections to one database and ends the ones it has.
async fn set_database_open(name: &str, open: bool) {
    let mut admin = PgConnection::connect(&testing::admin_url())
        .await
        .expect("admin connection");
    sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {open}"
    )))
    .execute(&mut admin)
    .await
    .expect("alter database");
    if !open {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .expect("terminate backends");
    }
}

#[tokio::test]
async fn readyz_turns_503_while_postgres_refuses_connections_and_recovers_without_restart() {
    let Some(database) = testing::create().await else {
        return;
    };
    let name = database.url.rsplit('/').next().expect("name").to_owned();
    let app = TestApp::spawn_on_database(&database.url).await;
    app.wait_readyz(200, WITHIN).await;

    set_database_open(&name, false).await;
    let down = app.wait_readyz(503, WITHIN).await;
    assert_eq!(down["ready"], false);
    assert_eq!(check(&down, "database")["ok"], false, "{down}");
    assert_eq!(check(&down, "ca_keys")["ok"], true, "{down}");
    // Liveness is not readiness: the process still answers.
    assert_eq!(app.get_json("/healthz").await.0, 200);

    set_database_open(&name, true).await;
    let up = app.wait_readyz(200, WITHIN).await;
    assert_eq!(check(&up, "database")["ok"], true, "{up}");
    app.stop().await;
}
