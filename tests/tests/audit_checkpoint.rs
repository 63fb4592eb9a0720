//! Signed audit checkpoints: `serve` signs the trail's head at start and at shutdown (and on a
//! schedule), publishes the newest at `GET /audit/checkpoint` and `ca-server audit checkpoint`;
//! openssl checks a checkpoint on its own; `audit verify` names deleted newest events, a
//! rewritten chain and a forged checkpoint against stored checkpoints and kept copies; `serve`
//! refuses a trail whose newest events were deleted.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ca_server::storage::{AuditEvent, chain_hash};
use iomt_tests::{TestApp, require_tool, run_tool};
use serde_json::Value;
use sqlx::Connection;

/// A few state changes after start: registration, token, issuance, hold.
async fn activity(app: &TestApp, serial: &str) {
    let token = app.pump_with_token(serial).await;
    let dir = tempfile::tempdir().unwrap();
    let enrolled = app.enroll(serial, &token, dir.path()).await.unwrap();
    app.cli(&[
        "revoke",
        "--serial",
        &enrolled.certificate_serial,
        "--reason",
        "certificateHold",
    ])
    .await
    .unwrap();
}

/// Runs statements directly against the CA's database, as an insider would.
async fn tamper(database_url: &str, statements: &[String]) {
    if database_url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Statements that lift the append-only protection of the trail and its checkpoints.
fn unprotect(database_url: &str) -> Vec<String> {
    let statements: &[&str] = if database_url.starts_with("postgres") {
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
            "ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only",
        ]
    } else {
        &[
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_no_delete",
            "DROP TRIGGER IF EXISTS audit_checkpoints_no_update",
            "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete",
        ]
    };
    statements.iter().map(|s| (*s).to_owned()).collect()
}

async fn head_seq(app: &TestApp) -> i64 {
    app.authority
        .store()
        .audit_head()
        .await
        .unwrap()
        .expect("events")
        .seq
}

async fn build_error(app: &TestApp) -> String {
    let settings = ca_server::config::Settings::load(&app.data_dir()).unwrap();
    ca_server::startup::Application::build(&settings)
        .await
        .err()
        .expect("serve refuses the trail")
        .to_string()
}

#[tokio::test]
async fn serve_signs_at_start_and_shutdown_and_publishes_a_checkpoint_openssl_verifies() {
    let mut app = TestApp::spawn().await;
    let store = app.authority.store();
    let at_start = store
        .latest_checkpoint()
        .await
        .unwrap()
        .expect("signed at start");
    assert_eq!(
        at_start.seq,
        head_seq(&app).await,
        "covers the trail at start"
    );

    activity(&app, "IP20000001").await;
    let moved = head_seq(&app).await;
    assert!(moved > at_start.seq);
    app.stop_server().await;
    let at_shutdown = app
        .authority
        .store()
        .latest_checkpoint()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        at_shutdown.seq, moved,
        "the shutdown checkpoint covers every event"
    );

    app.restart().await;
    let published = app
        .plain_client()
        .get(format!("http://{}/audit/checkpoint", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    assert_eq!(published.headers()["content-type"], "application/json");
    let published = published.text().await.unwrap();
    let printed = app.cli(&["audit", "checkpoint"]).await.unwrap();
    assert_eq!(
        published, printed,
        "the endpoint and the CLI give the same file"
    );
    let file: Value = serde_json::from_str(&published).unwrap();
    assert_eq!(file["format"], "iomt-audit-checkpoint/1");
    assert_eq!(file["seq"], head_seq(&app).await);

    // Anyone can check it with openssl alone: the statement, the signature, the signer's
    // certificate and the CA's root.
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let work = app.dir.path().join("checkpoint");
    std::fs::create_dir_all(&work).unwrap();
    let statement = format!(
        "iomt-audit-checkpoint/1\nseq {}\nhead {}\nat {}\n",
        file["seq"],
        file["head_hash"].as_str().unwrap(),
        file["at"].as_str().unwrap()
    );
    std::fs::write(work.join("statement.txt"), statement).unwrap();
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(file["signature"].as_str().unwrap())
        .unwrap();
    std::fs::write(work.join("signature.der"), signature).unwrap();
    std::fs::write(
        work.join("signer.pem"),
        file["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let chain = run_tool(
        Command::new("openssl")
            .current_dir(&work)
            .args(["verify", "-CAfile"])
            .arg(app.root_pem())
            .arg("signer.pem"),
    );
    assert!(chain.contains("signer.pem: OK"), "{chain}");
    run_tool(Command::new("openssl").current_dir(&work).args([
        "x509",
        "-in",
        "signer.pem",
        "-pubkey",
        "-noout",
        "-out",
        "signer.pub",
    ]));
    let verified = run_tool(Command::new("openssl").current_dir(&work).args([
        "dgst",
        "-sha256",
        "-verify",
        "signer.pub",
        "-signature",
        "signature.der",
        "statement.txt",
    ]));
    assert!(verified.contains("Verified OK"), "{verified}");
    let text = run_tool(Command::new("openssl").current_dir(&work).args([
        "x509",
        "-in",
        "signer.pem",
        "-noout",
        "-text",
    ]));
    assert!(
        text.contains("1.3.6.1.4.1.32473.7.6.1"),
        "checkpoint EKU: {text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
}

/// The newest events deleted (and the stored checkpoints with them) are named against a kept
/// copy; with the stored checkpoints left, `serve` refuses and names them itself.
async fn truncation_is_named(mut app: TestApp, database_url: &str) {
    activity(&app, "IP20000002").await;
    app.stop_server().await;
    let kept = app.dir.path().join("kept-checkpoint.json");
    let copy = TestApp::cli_in(app.data_dir().to_str().unwrap(), &["audit", "checkpoint"])
        .await
        .unwrap();
    std::fs::write(&kept, &copy).unwrap();
    let head: i64 = serde_json::from_str::<Value>(&copy).unwrap()["seq"]
        .as_i64()
        .unwrap();
    let intact = TestApp::cli_in(app.data_dir().to_str().unwrap(), &["audit", "verify"])
        .await
        .unwrap();
    assert!(intact.starts_with("audit chain intact"), "{intact}");

    // The insider deletes the last three events (the hold, the issuance, ...).
    let mut statements = unprotect(database_url);
    statements.push(format!("DELETE FROM audit_events WHERE seq > {}", head - 3));
    tamper(database_url, &statements).await;
    let missing = format!(
        "the trail ends at event {}, events {}..{head} are missing",
        head - 3,
        head - 2
    );
    let error = build_error(&app).await;
    assert!(error.contains("refusing to serve"), "{error}");
    assert!(
        error.contains(&missing),
        "serve names the truncation: {error}"
    );
    let error = TestApp::cli_in(app.data_dir().to_str().unwrap(), &["audit", "verify"])
        .await
        .unwrap_err();
    assert!(error.contains(&missing), "{error}");

    // ... and the stored checkpoints too: the chain alone looks whole, the kept copy does not.
    let mut statements = unprotect(database_url);
    statements.push("DELETE FROM audit_checkpoints".to_owned());
    tamper(database_url, &statements).await;
    let fooled = TestApp::cli_in(app.data_dir().to_str().unwrap(), &["audit", "verify"])
        .await
        .unwrap();
    assert!(fooled.starts_with("audit chain intact"), "{fooled}");
    let error = TestApp::cli_in(
        app.data_dir().to_str().unwrap(),
        &["audit", "verify", "--checkpoint", kept.to_str().unwrap()],
    )
    .await
    .unwrap_err();
    assert!(error.contains(&missing), "{error}");
    assert!(
        error.contains(&kept.display().to_string()),
        "names the copy: {error}"
    );
}

#[tokio::test]
async fn deleted_newest_events_are_named_against_checkpoints_on_sqlite() {
    let app = TestApp::spawn().await;
    let url = format!("sqlite://{}", app.data_dir().join("ca.db").display());
    truncation_is_named(app, &url).await;
}

#[tokio::test]
async fn deleted_newest_events_are_named_against_checkpoints_on_postgres() {
    let Some(database) = ca_server::storage::testing::create().await else {
        return;
    };
    let app = TestApp::spawn_on_database(&database.url).await;
    truncation_is_named(app, &database.url).await;
}

#[tokio::test]
async fn a_rewritten_chain_and_forged_checkpoints_are_named() {
    let mut app = TestApp::spawn().await;
    activity(&app, "IP20000003").await;
    app.stop_server().await;
    let dir = app.data_dir();
    let data = dir.to_str().unwrap();
    let kept = app.dir.path().join("kept.json");
    std::fs::write(
        &kept,
        TestApp::cli_in(data, &["audit", "checkpoint"])
            .await
            .unwrap(),
    )
    .unwrap();

    // The insider edits an event and recomputes every hash after it: the chain is whole again.
    let events = app.authority.store().audit_events().await.unwrap();
    let target = events
        .iter()
        .find(|e| e.event.action == "device.registered")
        .unwrap()
        .seq;
    let url = format!("sqlite://{}", dir.join("ca.db").display());
    let mut statements = unprotect(&url);
    statements.push("DELETE FROM audit_checkpoints".to_owned());
    let mut prev = Vec::new();
    for stored in &events {
        let mut event: AuditEvent = stored.event.clone();
        if stored.seq == target {
            event.actor = "forged".into();
        }
        let hash = chain_hash(&prev, &event);
        if stored.seq >= target {
            statements.push(format!(
                "UPDATE audit_events SET actor = '{}', prev_hash = x'{}', hash = x'{}' WHERE seq = {}",
                event.actor,
                hex::encode(&prev),
                hex::encode(&hash),
                stored.seq
            ));
        }
        prev = hash;
    }
    tamper(&url, &statements).await;
    let fooled = TestApp::cli_in(data, &["audit", "verify"]).await.unwrap();
    assert!(fooled.starts_with("audit chain intact"), "{fooled}");
    let error = TestApp::cli_in(
        data,
        &["audit", "verify", "--checkpoint", kept.to_str().unwrap()],
    )
    .await
    .unwrap_err();
    let head = events.last().unwrap().seq;
    assert!(
        error.contains(&format!(
            "event {head} no longer has the signed hash: the trail was rewritten"
        )),
        "{error}"
    );

    // A copy whose signature was altered, and one signed by another CA, are not authentic.
    let text = std::fs::read_to_string(&kept).unwrap();
    let mut file: Value = serde_json::from_str(&text).unwrap();
    file["seq"] = Value::from(head + 100);
    let forged = app.dir.path().join("forged.json");
    std::fs::write(&forged, file.to_string()).unwrap();
    let other = TestApp::spawn().await;
    let foreign = app.dir.path().join("foreign.json");
    std::fs::write(&foreign, other.cli(&["audit", "checkpoint"]).await.unwrap()).unwrap();
    for (path, reason) in [
        (&forged, "its signature does not verify"),
        (&foreign, "was not issued by this CA's root"),
    ] {
        let error = TestApp::cli_in(
            data,
            &["audit", "verify", "--checkpoint", path.to_str().unwrap()],
        )
        .await
        .unwrap_err();
        assert!(error.contains("is not authentic"), "{error}");
        assert!(error.contains(reason), "{error}");
    }
    let garbage = app.dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"format\": 1}").unwrap();
    let error = TestApp::cli_in(
        data,
        &["audit", "verify", "--checkpoint", garbage.to_str().unwrap()],
    )
    .await
    .unwrap_err();
    assert!(error.contains("not a checkpoint file"), "{error}");
}

#[tokio::test]
async fn checkpoints_follow_the_schedule_while_serving() {
    let mut app = TestApp::spawn().await;
    app.stop_server().await;
    let config = app.data_dir().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("checkpoint_interval_secs = 3600"), "{text}");
    std::fs::write(
        &config,
        text.replace(
            "checkpoint_interval_secs = 3600",
            "checkpoint_interval_secs = 1",
        ),
    )
    .unwrap();
    app.restart().await;
    activity(&app, "IP20000004").await;
    let head = head_seq(&app).await;
    // Waits for the scheduled checkpoint (the server is not stopped, so no shutdown one).
    let mut covered = None;
    for _ in 0..100 {
        let latest = app.authority.store().latest_checkpoint().await.unwrap();
        if latest.as_ref().is_some_and(|c| c.seq >= head) {
            covered = latest;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(covered.expect("a scheduled checkpoint").seq, head);
}

#[test]
fn checkpoint_key_is_in_the_data_directory_sealed() {
    // Checked without a server: `init` writes the audit key beside the CA keys.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = runtime
        .block_on(TestApp::init_dir(|_, text| text.to_owned(), None, &[]))
        .unwrap();
    let ca = dir.path().join("ca/ca");
    let key = std::fs::read_to_string(ca.join("audit.key.pem")).unwrap();
    assert!(!key.contains("BEGIN PRIVATE KEY"), "sealed, never clear");
    assert!(Path::new(&ca.join("audit.crt.pem")).exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(ca.join("audit.key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}
