//! The audit trail: every state change is one chained event; `audit verify` catches an edited and
//! a deleted event (tampered with directly in SQLite or PostgreSQL); `audit export` writes JSON
//! lines from which the chain can be recomputed; the admin API serves both to auditors.

use ca_server::storage::{AuditEvent, chain_hash};
use iomt_tests::{PUMP, TestApp};
use serde_json::Value;
use sqlx::Connection;

/// Fills the trail with the usual life of a device: registration, token, issuance, hold,
/// release, revocation, an API key.
async fn device_life(app: &TestApp) {
    let token = app.pump_with_token("IP20000001").await;
    app.register("IP20000002", PUMP).await;
    let dir = tempfile::tempdir().unwrap();
    let enrolled = app.enroll("IP20000001", &token, dir.path()).await.unwrap();
    let serial = enrolled.certificate_serial;
    for args in [
        vec!["revoke", "--serial", &serial, "--reason", "certificateHold"],
        vec!["release", "--serial", &serial],
        vec!["revoke", "--serial", &serial, "--reason", "keyCompromise"],
        vec!["apikey", "create", "--name", "qa", "--role", "auditor"],
    ] {
        app.cli(&args).await.unwrap();
    }
}

/// Runs tampering statements directly against the CA's database.
async fn tamper(database_url: &str, statements: &[&str]) {
    if database_url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn seq_of(app: &TestApp, action: &str) -> i64 {
    app.authority
        .store()
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event.action == action)
        .unwrap()
        .seq
}

async fn verify_catches_an_edited_and_a_deleted_event(app: &TestApp, database_url: &str) {
    device_life(app).await;
    let intact = app.cli(&["audit", "verify"]).await.unwrap();
    assert!(intact.starts_with("audit chain intact"), "{intact}");

    let edited = seq_of(app, "device.registered").await;
    let deleted = seq_of(app, "certificate.released").await;
    let (drop_triggers, edit, delete) = if database_url.starts_with("postgres") {
        (
            vec!["ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"],
            format!(
                "UPDATE audit_events SET details = '{{\"product\":\"forged\"}}' WHERE seq = {edited}"
            ),
            format!("DELETE FROM audit_events WHERE seq = {deleted}"),
        )
    } else {
        (
            vec![
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ],
            format!(
                "UPDATE audit_events SET details = '{{\"product\":\"forged\"}}' WHERE seq = {edited}"
            ),
            format!("DELETE FROM audit_events WHERE seq = {deleted}"),
        )
    };
    let mut statements: Vec<&str> = drop_triggers;
    statements.push(&edit);
    statements.push(&delete);
    tamper(database_url, &statements).await;

    let err = app.cli(&["audit", "verify"]).await.unwrap_err();
    assert!(
        err.contains(&format!("event {edited} (device.registered) was modified")),
        "{err}"
    );
    assert!(
        err.contains(&format!("event {deleted} was deleted")),
        "names the gap: {err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[tokio::test]
async fn audit_verify_on_sqlite_names_an_edited_and_a_deleted_event() {
    let app = TestApp::spawn().await;
    let url = format!("sqlite://{}", app.data_dir().join("ca.db").display());
    // The trail is append-only for the application: the triggers refuse edits.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let refused = sqlx::query("DELETE FROM audit_events")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    drop(conn);
    verify_catches_an_edited_and_a_deleted_event(&app, &url).await;
}

#[tokio::test]
async fn audit_verify_on_postgres_names_an_edited_and_a_deleted_event() {
    let Some(database) = ca_server::storage::testing::create().await else {
        return;
    };
    let app = TestApp::spawn_on_database(&database.url).await;
    verify_catches_an_edited_and_a_deleted_event(&app, &database.url).await;
}

#[tokio::test]
async fn every_state_change_is_one_chained_event() {
    let app = TestApp::spawn().await;
    device_life(&app).await;
    app.cli(&["apikey", "revoke", "--name", "qa"])
        .await
        .unwrap();
    let events = app.authority.store().audit_events().await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    for action in [
        "ca.created",
        "policy.loaded",
        "device.registered",
        "token.created",
        "certificate.issued",
        "certificate.held",
        "certificate.released",
        "certificate.revoked",
        "apikey.created",
        "operator.revoked",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let issued = events
        .iter()
        .find(|e| e.event.action == "certificate.issued")
        .unwrap();
    let details: Value = serde_json::from_str(&issued.event.details).unwrap();
    assert_eq!(
        details["authorized_by"], "token",
        "the token's use is recorded"
    );
    let policy = events
        .iter()
        .find(|e| e.event.action == "policy.loaded")
        .unwrap();
    assert!(
        policy.event.details.contains("sha256"),
        "policy hash recorded"
    );
    let mut prev = Vec::new();
    for (index, stored) in events.iter().enumerate() {
        assert_eq!(stored.seq, index as i64 + 1);
        assert_eq!(stored.prev_hash, prev);
        prev = stored.hash.clone();
    }
}

#[tokio::test]
async fn audit_export_writes_json_lines_that_recompute_the_chain() {
    let app = TestApp::spawn().await;
    device_life(&app).await;
    let file = app.dir.path().join("audit.jsonl");
    let out = app
        .cli(&["audit", "export", "--out", file.to_str().unwrap()])
        .await
        .unwrap();
    let stored = app.authority.store().audit_events().await.unwrap();
    assert_eq!(
        out.trim(),
        format!("exported {} event(s) to {}", stored.len(), file.display())
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let mut prev = String::new();
    for (line, original) in text.lines().zip(&stored) {
        let event: Value = serde_json::from_str(line).unwrap();
        let at = time::OffsetDateTime::parse(
            event["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(event["details"].is_object(), "details as JSON: {line}");
        // The details are exported byte for byte, so the chain recomputes from the file alone.
        let details = line
            .split_once(r#""details":"#)
            .unwrap()
            .1
            .rsplit_once(r#","prev_hash":"#)
            .unwrap()
            .0;
        let recomputed = chain_hash(
            &hex::decode(&prev).unwrap(),
            &AuditEvent {
                at: at.unix_timestamp(),
                actor: event["actor"].as_str().unwrap().into(),
                action: event["action"].as_str().unwrap().into(),
                object: event["object"].as_str().unwrap().into(),
                details: details.into(),
            },
        );
        assert_eq!(event["prev_hash"], prev.as_str());
        assert_eq!(event["hash"], hex::encode(&recomputed));
        assert_eq!(event["seq"], original.seq);
        prev = hex::encode(recomputed);
    }
    assert_eq!(text.lines().count(), stored.len());

    let since = stored[stored.len() - 3].seq;
    let tail = app
        .cli(&["audit", "export", "--since", &since.to_string()])
        .await
        .unwrap();
    assert_eq!(tail.lines().count(), 2);

    // The same lines over HTTPS, for the auditor role.
    let key = app
        .cli(&["apikey", "create", "--name", "auditor", "--role", "auditor"])
        .await
        .unwrap();
    let client = app.http_client();
    let response = client
        .get(format!("{}/admin/v1/audit?since={since}", app.server_url()))
        .bearer_auth(key.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.text().await.unwrap();
    assert!(body.starts_with(tail.lines().next().unwrap()), "{body}");
    let verify: Value = serde_json::from_str(
        &client
            .get(format!("{}/admin/v1/audit/verify", app.server_url()))
            .bearer_auth(key.trim())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(verify["intact"], true, "{verify}");
    assert!(verify["breaks"].as_array().unwrap().is_empty());
}

/// `serve` re-creates append-only triggers someone dropped (and audits it), and refuses to
/// serve on a broken chain, naming the first break and the command to inspect it.
async fn serve_guards_the_trail(mut app: TestApp, database_url: &str) {
    device_life(&app).await;
    let drop_triggers: &[&str] = if database_url.starts_with("postgres") {
        &["ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"]
    } else {
        &[
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ]
    };
    app.stop_server().await;
    tamper(database_url, drop_triggers).await;
    app.restart().await;
    assert!(seq_of(&app, "audit.protection_restored").await > 0);
    let mut refused = Vec::new();
    for sql in [
        "DELETE FROM audit_events",
        "UPDATE audit_events SET actor = 'x'",
    ] {
        if database_url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
            refused.push(
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .is_err(),
            );
        } else {
            let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
            refused.push(
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .is_err(),
            );
        }
    }
    assert_eq!(refused, [true, true], "the triggers are back");

    app.stop_server().await;
    let edited = seq_of(&app, "device.registered").await;
    let mut statements = drop_triggers.to_vec();
    let edit = format!("UPDATE audit_events SET actor = 'forged' WHERE seq = {edited}");
    statements.push(&edit);
    tamper(database_url, &statements).await;
    let settings = ca_server::config::Settings::load(&app.data_dir()).unwrap();
    let error = ca_server::startup::Application::build(&settings)
        .await
        .err()
        .expect("a broken trail is refused")
        .to_string();
    assert!(error.contains("refusing to serve"), "{error}");
    assert!(
        error.contains(&format!("event {edited} (device.registered) was modified")),
        "{error}"
    );
    assert!(error.contains("ca-server audit verify"), "{error}");
}

#[tokio::test]
async fn serve_restores_triggers_and_refuses_a_broken_chain_on_sqlite() {
    let app = TestApp::spawn().await;
    let url = format!("sqlite://{}", app.data_dir().join("ca.db").display());
    serve_guards_the_trail(app, &url).await;
}

#[tokio::test]
async fn serve_restores_triggers_and_refuses_a_broken_chain_on_postgres() {
    let Some(database) = ca_server::storage::testing::create().await else {
        return;
    };
    let app = TestApp::spawn_on_database(&database.url).await;
    serve_guards_the_trail(app, &database.url).await;
}
