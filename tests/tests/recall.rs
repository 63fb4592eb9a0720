//! Recalls against the real server: a recall of one lot among three holds exactly that lot's
//! certificates (the CRL and OCSP agree), a dry run changes nothing, issuance to a recalled
//! device is refused until `recall release` restores everything, an interrupted recall resumes
//! and completes once, and a recall racing enrollments leaves no matching certificate valid.
//! The lot test runs on SQLite and on PostgreSQL (skipped with a printed reason when absent,
//! failing under CI=true).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ca_server::operations::{Batches, RecallRequest, Recalls};
use ca_server::storage::{CertificateStatus, RecallAction, RecallQuery, testing};
use iomt_core::ocsp::Status;
use iomt_core::policy::PolicySet;
use iomt_tests::{PUMP, TestApp};

const LOTS: [&str; 3] = ["LOT-A", "LOT-B", "LOT-C"];

/// Registers `per_lot` pumps in each lot (one CSV) with tokens; returns serial → lot.
async fn register_lots(app: &TestApp, first: usize, per_lot: usize) -> BTreeMap<String, String> {
    let mut devices = BTreeMap::new();
    let mut rows = String::from("serial,product,lot\n");
    for (l, lot) in LOTS.iter().enumerate() {
        for i in 0..per_lot {
            let serial = format!("IP2{:07}", first + l * per_lot + i);
            rows.push_str(&format!("{serial},{PUMP},{lot}\n"));
            devices.insert(serial, (*lot).to_owned());
        }
    }
    let csv = app.dir.path().join(format!("lots-{first}.csv"));
    std::fs::write(&csv, rows).unwrap();
    app.cli(&["device", "register", "--csv", csv.to_str().unwrap()])
        .await
        .expect("register");
    devices
}

/// Enrolls each device with a fresh token; returns serial → certificate serial (hex).
async fn enroll_all(app: &TestApp, devices: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut certificates = BTreeMap::new();
    for serial in devices.keys() {
        let token = app.token(serial).await;
        let out = app.dir.path().join(format!("device-{serial}"));
        let enrolled = app.enroll(serial, &token, &out).await.expect("enroll");
        certificates.insert(serial.clone(), enrolled.certificate_serial.to_lowercase());
    }
    certificates
}

async fn status_of(app: &TestApp, device: &str) -> CertificateStatus {
    app.certificates(device).await[0].status
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    app.authority
        .store()
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.action)
        .collect()
}

async fn one_lot_among_three(app: TestApp) {
    let devices = register_lots(&app, 1, 3).await;
    let certificates = enroll_all(&app, &devices).await;
    let issuer = app.fetch("/ca/basic.cer").await;
    let in_lot_b = |serial: &String| devices[serial] == "LOT-B";

    // A dry run says what it would touch and changes nothing.
    let before = audit_actions(&app).await.len();
    let dry = app
        .cli(&[
            "recall",
            "--product",
            PUMP,
            "--lot",
            "LOT-B",
            "--action",
            "hold",
            "--dry-run",
        ])
        .await
        .expect("dry run");
    assert!(dry.contains("hold 3 valid certificate(s)"), "{dry}");
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    for device in devices.keys() {
        assert_eq!(status_of(&app, device).await, CertificateStatus::Valid);
    }
    assert_eq!(audit_actions(&app).await.len(), before);
    assert!(app.crl_serials("basic").await.is_empty());

    // The recall holds exactly lot B.
    let out = app
        .cli(&[
            "recall",
            "--product",
            PUMP,
            "--lot",
            "LOT-B",
            "--action",
            "hold",
        ])
        .await
        .expect("recall");
    assert!(out.contains("3 in all"), "{out}");
    assert!(out.contains("CRLs republished: basic"), "{out}");
    let lot_b: BTreeSet<String> = devices
        .keys()
        .filter(|s| in_lot_b(s))
        .map(|s| iomt_tests::operations::comparable_serial(&certificates[s]))
        .collect();
    assert_eq!(app.crl_serials("basic").await, lot_b);
    for (device, certificate) in &certificates {
        let (stored, answered) = (
            status_of(&app, device).await,
            app.ocsp_basic(&issuer, certificate).await,
        );
        if in_lot_b(device) {
            assert_eq!(stored, CertificateStatus::OnHold, "{device}");
            assert!(
                matches!(
                    answered,
                    Status::Revoked {
                        reason: Some(6),
                        ..
                    }
                ),
                "{device}: {answered:?}"
            );
        } else {
            assert_eq!(stored, CertificateStatus::Valid, "{device}");
            assert_eq!(answered, Status::Good, "{device}");
        }
    }
    let actions = audit_actions(&app).await;
    assert_eq!(actions.iter().filter(|a| *a == "recall.started").count(), 1);
    assert_eq!(
        actions.iter().filter(|a| *a == "recall.completed").count(),
        1
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "certificate.held").count(),
        3
    );

    // A device registered in the recalled lot cannot enroll while the recall stands.
    app.cli(&[
        "device",
        "register",
        "--serial",
        "IP29999999",
        "--product",
        PUMP,
        "--lot",
        "LOT-B",
    ])
    .await
    .expect("register");
    let token = app.token("IP29999999").await;
    let body = TestApp::est_body(&iomt_tests::p256_csr("IP29999999").1);
    let (status, code, _) = app
        .post_simpleenroll("IP29999999", &token, "application/pkcs10", body.clone())
        .await;
    assert_eq!((status, code.as_str()), (403, "device.recalled"));

    // The list names it; release restores every certificate and lets the device enroll.
    let list = app.cli(&["recall", "list", "--json"]).await.expect("list");
    let recall: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(recall["state"], "completed");
    assert_eq!(recall["lot"], "LOT-B");
    assert_eq!(recall["certificates"], 3);
    let id = recall["id"].as_i64().unwrap().to_string();
    let released = app.cli(&["recall", "release", &id]).await.expect("release");
    assert!(
        released.contains("3 certificate(s) valid again"),
        "{released}"
    );
    assert!(app.crl_serials("basic").await.is_empty());
    for (device, certificate) in &certificates {
        assert_eq!(status_of(&app, device).await, CertificateStatus::Valid);
        assert_eq!(app.ocsp_basic(&issuer, certificate).await, Status::Good);
    }
    let (status, _, _) = app
        .post_simpleenroll("IP29999999", &token, "application/pkcs10", body)
        .await;
    assert_eq!(status, 200);
    let again = app.cli(&["recall", "release", &id]).await;
    assert!(again.unwrap_err().contains("already released"));
    app.stop().await;
}

#[tokio::test]
async fn recall_of_one_lot_among_three_holds_exactly_that_lot_on_sqlite() {
    one_lot_among_three(TestApp::spawn().await).await;
}

#[tokio::test]
async fn recall_of_one_lot_among_three_holds_exactly_that_lot_on_postgres() {
    let Some(database) = testing::create().await else {
        return;
    };
    one_lot_among_three(TestApp::spawn_on_database(&database.url).await).await;
}

fn recalls(app: &TestApp) -> Recalls {
    let policies = PolicySet::load_dir(&app.data_dir().join("policies")).unwrap();
    Recalls::new(
        app.authority.shared_store(),
        app.revocation.clone(),
        Arc::new(policies),
    )
}

#[tokio::test]
async fn interrupted_recall_resumes_and_completes_once() {
    let app = TestApp::spawn().await;
    let devices = register_lots(&app, 100, 3).await;
    enroll_all(&app, &devices).await;
    let request = RecallRequest {
        query: RecallQuery {
            product: PUMP.to_owned(),
            lot: None,
            registered_before: None,
        },
        action: RecallAction::Revoke,
        reason: Some("keyCompromise".to_owned()),
    };
    // Two certificates per batch; the first run dies after two batches.
    let stopped = recalls(&app)
        .run(
            &request,
            "operator:test",
            Batches {
                size: 2,
                stop_after: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(stopped.changed, 4);
    assert!(stopped.recall.completed_at.is_none());
    assert!(stopped.crls.is_empty());
    let list = app.cli(&["recall", "list"]).await.unwrap();
    assert!(list.contains("interrupted"), "{list}");

    // The same command again resumes it (no second recall) and finishes the other five.
    let out = app
        .cli(&[
            "recall",
            "--product",
            PUMP,
            "--action",
            "revoke",
            "--reason",
            "keyCompromise",
            "--batch-size",
            "2",
        ])
        .await
        .unwrap();
    assert!(out.contains("(resumed)"), "{out}");
    assert!(
        out.contains("5 certificate(s) changed by this run, 9 in all"),
        "{out}"
    );
    let all = recalls(&app).list().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].completed_at.is_some());
    for device in devices.keys() {
        assert_eq!(status_of(&app, device).await, CertificateStatus::Revoked);
    }
    assert_eq!(app.crl_serials("basic").await.len(), 9);
    let actions = audit_actions(&app).await;
    assert_eq!(actions.iter().filter(|a| *a == "recall.started").count(), 1);
    assert_eq!(
        actions.iter().filter(|a| *a == "recall.completed").count(),
        1
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "certificate.revoked")
            .count(),
        9
    );
    // A revoke recall cannot be released.
    let refused = app
        .cli(&["recall", "release", &all[0].id.to_string()])
        .await;
    assert!(refused.unwrap_err().contains("cannot be undone"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_racing_enrollments_leaves_no_matching_certificate_valid() {
    let app = Arc::new(TestApp::spawn().await);
    let devices = app.pumps_with_tokens(500, 60).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (serial, token) in devices.clone() {
        let app = app.clone();
        tasks.spawn(async move {
            let body = TestApp::est_body(&iomt_tests::p256_csr(&serial).1);
            app.post_simpleenroll(&serial, &token, "application/pkcs10", body)
                .await
        });
    }
    let request = RecallRequest {
        query: RecallQuery {
            product: PUMP.to_owned(),
            lot: None,
            registered_before: None,
        },
        action: RecallAction::Hold,
        reason: None,
    };
    let outcome = recalls(&app)
        .run(
            &request,
            "operator:test",
            Batches {
                size: 3,
                stop_after: None,
            },
        )
        .await
        .unwrap();
    let mut issued = 0;
    let mut refused = 0;
    while let Some(answer) = tasks.join_next().await {
        match answer.unwrap() {
            (200, _, _) => issued += 1,
            (403, code, _) if code == "device.recalled" => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(issued + refused, devices.len());
    let mut held = 0;
    for (serial, _) in &devices {
        for certificate in app.certificates(serial).await {
            assert_ne!(
                certificate.status,
                CertificateStatus::Valid,
                "{serial} kept a valid certificate past the recall"
            );
            held += 1;
        }
    }
    assert_eq!(held, issued);
    assert_eq!(outcome.recall.certificates as usize, issued);
    eprintln!("race: {issued} issued before the recall (all held), {refused} refused");
    Arc::try_unwrap(app).ok().expect("sole owner").stop().await;
}

#[tokio::test]
async fn admin_api_recalls_are_for_the_admin_role_only() {
    let app = TestApp::spawn().await;
    let devices = register_lots(&app, 200, 1).await;
    enroll_all(&app, &devices).await;
    let admin = std::fs::read_to_string(app.data_dir().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let registrar = app
        .cli(&["apikey", "create", "--name", "reg", "--role", "registrar"])
        .await
        .unwrap()
        .trim()
        .to_owned();
    let url = format!("{}/admin/v1/recalls", app.server_url());
    let body = serde_json::json!({ "product": PUMP, "lot": "LOT-C", "action": "hold" });
    let refused = app
        .http_client()
        .post(&url)
        .bearer_auth(&registrar)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    let dry =
        serde_json::json!({ "product": PUMP, "lot": "LOT-C", "action": "hold", "dry_run": true });
    let plan: serde_json::Value = app
        .http_client()
        .post(&url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(dry.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(plan["matching"]["certificates"], 1, "{plan}");
    assert!(app.cli(&["recall", "list"]).await.unwrap().is_empty());

    let done: serde_json::Value = app
        .http_client()
        .post(&url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(done["recall"]["certificates"], 1, "{done}");
    assert_eq!(done["recall"]["state"], "completed");
    let id = done["recall"]["id"].as_i64().unwrap();
    let listed: serde_json::Value = app
        .http_client()
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(listed["recalls"][0]["id"], id);
    let released = app
        .http_client()
        .post(format!("{url}/{id}/release"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status().as_u16(), 200);
    let again = app
        .http_client()
        .post(format!("{url}/{id}/release"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    app.stop().await;
}
