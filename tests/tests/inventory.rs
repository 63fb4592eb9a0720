//! The fleet inventory against the real server: `fleet summary` and `device list` agree with
//! what was registered, enrolled, held and revoked (CLI and admin API, SQLite and PostgreSQL);
//! `token list` never shows a token; `token revoke` makes EST refuse the token with
//! `auth.token_revoked` and changes nothing else; and revocations racing enrollments leave each
//! token used or revoked, never both.

use std::collections::BTreeSet;
use std::sync::Arc;

use ca_server::storage::testing;
use iomt_tests::{PUMP, TestApp, p256_csr};
use reqwest::StatusCode;
use serde_json::Value;

/// Registers `IP3000000n` pumps, n = 1..=4: 1–2 in LOT-A, 3–4 in LOT-B.
async fn register_lots(app: &TestApp) -> Vec<String> {
    let serials: Vec<String> = (1..=4).map(|n| format!("IP23{n:06}")).collect();
    let mut rows = String::from("serial,product,lot\n");
    for (i, serial) in serials.iter().enumerate() {
        let lot = if i < 2 { "LOT-A" } else { "LOT-B" };
        rows.push_str(&format!("{serial},{PUMP},{lot}\n"));
    }
    let csv = app.dir.path().join("lots.csv");
    std::fs::write(&csv, rows).unwrap();
    app.cli(&["device", "register", "--csv", csv.to_str().unwrap()])
        .await
        .expect("register");
    serials
}

/// `(status, x-error-code, body)` of an admin API call.
async fn admin(app: &TestApp, key: &str, method: &str, path: &str) -> (StatusCode, String, String) {
    let url = format!("{}{path}", app.server_url());
    let client = app.http_client();
    let request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let response = request.bearer_auth(key).send().await.unwrap();
    let status = response.status();
    let code = response
        .headers()
        .get("x-error-code")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, code, response.text().await.unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn tally(summary: &Value, list: &str, name: &str) -> Value {
    summary[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {list}: {summary}"))
}

async fn summary_and_listing_agree_with_the_registry(app: TestApp) {
    let serials = register_lots(&app).await;
    let mut certificates = Vec::new();
    for serial in &serials[..3] {
        let token = app.token(serial).await;
        let out = app.dir.path().join(format!("device-{serial}"));
        let enrolled = app.enroll(serial, &token, &out).await.expect("enroll");
        certificates.push(enrolled.certificate_serial);
    }
    app.cli(&[
        "revoke",
        "--device",
        &serials[1],
        "--reason",
        "keyCompromise",
    ])
    .await
    .unwrap();
    app.cli(&[
        "revoke",
        "--serial",
        &certificates[2],
        "--reason",
        "certificateHold",
    ])
    .await
    .unwrap();

    let summary = json(&app.cli(&["fleet", "summary", "--json"]).await.unwrap());
    let devices = summary["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{summary}");
    assert_eq!(devices[0]["product"], PUMP);
    assert_eq!(devices[0]["level"], "basic");
    assert_eq!(devices[0]["status"], "active");
    assert_eq!(
        (
            devices[0]["devices"].as_u64(),
            devices[0]["enrolled"].as_u64()
        ),
        (Some(4), Some(1))
    );
    let expected = serde_json::json!({
        "valid": 1, "on_hold": 1, "revoked": 1, "expired": 0,
        "expiring_30_days": 0, "expiring_90_days": 0,
    });
    let mut pump = tally(&summary, "certificates_by_product", PUMP);
    pump.as_object_mut().unwrap().remove("name");
    assert_eq!(pump, expected);
    let mut basic = tally(&summary, "certificates_by_level", "basic");
    basic.as_object_mut().unwrap().remove("name");
    assert_eq!(basic, expected);
    assert_eq!(summary["certificates"], expected);
    assert_eq!(summary["stations_today"], serde_json::json!([]));
    assert!(
        summary["generated_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC"
    );

    let text = app.cli(&["fleet", "summary"]).await.unwrap();
    assert!(text.contains(PUMP) && text.contains("basic"), "{text}");

    // LOT-A a page at a time.
    let page = |after: Option<&str>| {
        let mut args = vec![
            "device",
            "list",
            "--product",
            PUMP,
            "--lot",
            "LOT-A",
            "--limit",
            "1",
            "--json",
        ];
        if let Some(after) = after {
            args.extend(["--after", after]);
        }
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let args = page(after.as_deref());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let listing = json(&app.cli(&args).await.unwrap());
        for device in listing["devices"].as_array().unwrap() {
            seen.push(device.clone());
        }
        match listing["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let serials_seen: Vec<&str> = seen.iter().map(|d| d["serial"].as_str().unwrap()).collect();
    assert_eq!(serials_seen, [serials[0].as_str(), serials[1].as_str()]);
    assert_eq!(seen[0]["certificate"]["status"], "valid");
    assert_eq!(seen[1]["certificate"]["status"], "revoked");
    assert_eq!(seen[0]["level"], "basic");
    assert_eq!(
        seen[0]["certificate"]["serial"].as_str().unwrap(),
        certificates[0].to_lowercase()
    );

    let text = app
        .cli(&["device", "list", "--product", PUMP, "--limit", "3"])
        .await
        .unwrap();
    assert_eq!(
        text.lines().count(),
        4,
        "three devices and the cursor: {text}"
    );
    assert!(
        text.contains("never enrolled") || text.contains("on_hold"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("# more: --after {}\n", serials[2])),
        "{text}"
    );

    for (args, reason) in [
        (
            ["device", "list", "--status", "valid"],
            "unknown device status",
        ),
        (
            ["device", "list", "--product", "no-such"],
            "no loaded policy defines",
        ),
    ] {
        let error = app.cli(&args).await.unwrap_err();
        assert!(error.contains(reason), "{error}");
    }

    // The admin API gives the same figures, to any role.
    let auditor = app.api_key("inventory-auditor", "auditor").await;
    let (status, _, body) = admin(&app, &auditor, "GET", "/admin/v1/fleet/summary").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut from_api = json(&body);
    let mut from_cli = summary.clone();
    from_api.as_object_mut().unwrap().remove("generated_at");
    from_cli.as_object_mut().unwrap().remove("generated_at");
    assert_eq!(from_api, from_cli);
    let (status, _, body) = admin(
        &app,
        &auditor,
        "GET",
        &format!("/admin/v1/devices?product={PUMP}&lot=LOT-B"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: BTreeSet<String> = json(&body)["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([serials[2].clone(), serials[3].clone()])
    );
    let (status, code, _) = admin(&app, &auditor, "GET", "/admin/v1/devices?status=bogus").await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "inventory.bad_query")
    );
    let (status, code, _) = admin(&app, &auditor, "GET", "/admin/v1/devices?color=red").await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "inventory.bad_query")
    );
    app.stop().await;
}

#[tokio::test]
async fn summary_and_listing_agree_with_the_registry_on_sqlite() {
    summary_and_listing_agree_with_the_registry(TestApp::spawn().await).await;
}

#[tokio::test]
async fn summary_and_listing_agree_with_the_registry_on_postgres() {
    let Some(database) = testing::create().await else {
        return;
    };
    summary_and_listing_agree_with_the_registry(TestApp::spawn_on_database(&database.url).await)
        .await;
}

async fn audited(app: &TestApp, action: &str) -> Vec<(String, Value)> {
    app.authority
        .store()
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == action)
        .map(|e| (e.event.actor, json(&e.event.details)))
        .collect()
}

#[tokio::test]
async fn revoked_token_is_refused_on_est_and_the_device_enrolls_with_a_new_one() {
    let app = TestApp::spawn().await;
    let serial = "IP23000100";
    let token = app.pump_with_token(serial).await;

    let listed = app
        .cli(&["token", "list", "--serial", serial])
        .await
        .unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("pending"), "{listed}");
    assert!(!listed.contains(&token), "a listing never shows the token");
    let line = json(
        &app.cli(&["token", "list", "--serial", serial, "--json"])
            .await
            .unwrap(),
    );
    assert_eq!(line["state"], "pending");
    assert_eq!(line["id"].as_str().unwrap().len(), 16);

    // Roles: an auditor may look but not revoke; a registrar may revoke.
    let auditor = app.api_key("tokens-auditor", "auditor").await;
    let registrar = app.api_key("tokens-registrar", "registrar").await;
    let revoke_path = format!("/admin/v1/devices/{serial}/tokens/revoke");
    let (status, code, _) = admin(&app, &auditor, "POST", &revoke_path).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "auth.role_insufficient")
    );
    let (status, _, body) = admin(
        &app,
        &auditor,
        "GET",
        &format!("/admin/v1/devices/{serial}/tokens"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["tokens"][0]["state"], "pending");
    let (status, code, _) = admin(
        &app,
        &registrar,
        "POST",
        "/admin/v1/devices/IP29999999/tokens/revoke",
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "device.unknown")
    );
    let (status, _, body) = admin(&app, &registrar, "POST", &revoke_path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body), serde_json::json!({ "revoked": 1 }));

    // EST now refuses the token, and nothing is issued or consumed.
    let (_key, csr) = p256_csr(serial);
    let (status, code, body) = app
        .post_simpleenroll(
            serial,
            &token,
            "application/pkcs10",
            TestApp::est_body(&csr),
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (401, "auth.token_revoked"),
        "{body}"
    );
    assert!(body.contains("revoked by the CA's operator"), "{body}");
    assert!(!app.token_used(&token).await);
    assert!(app.certificates(serial).await.is_empty());

    let listed = app
        .cli(&["token", "list", "--serial", serial])
        .await
        .unwrap();
    assert!(listed.contains("revoked"), "{listed}");
    assert_eq!(
        audited(&app, "token.revoked").await,
        [(
            "apikey:tokens-registrar".to_owned(),
            serde_json::json!({ "tokens": 1 })
        )]
    );
    // Nothing left to revoke: said so, nothing audited.
    let again = app
        .cli(&["token", "revoke", "--serial", serial])
        .await
        .unwrap();
    assert_eq!(
        again.trim(),
        format!("revoked 0 token(s) of device {serial}")
    );
    assert_eq!(audited(&app, "token.revoked").await.len(), 1);
    assert!(
        app.cli(&["token", "list", "--serial", "IP29999999"])
            .await
            .is_err()
    );

    // A new token works.
    let fresh = app.token(serial).await;
    let out = app.dir.path().join("device");
    app.enroll(serial, &fresh, &out)
        .await
        .expect("enroll with a new token");
    app.stop().await;
}

/// Each device's enrollment and its token's revocation race; afterwards every token is used
/// (and the device holds exactly one certificate, answered 200) or revoked (no certificate,
/// answered `auth.token_revoked`), never both.
async fn revocations_racing_enrollments_leave_each_token_used_or_revoked(app: TestApp) {
    let app = Arc::new(app);
    let devices = app.pumps_with_tokens(4_000, 24).await;
    let registrar = app.api_key("race-registrar", "registrar").await;
    let mut enrollments = Vec::new();
    let mut revocations = Vec::new();
    for (serial, token) in devices.clone() {
        let enrolling = app.clone();
        let device = serial.clone();
        enrollments.push(tokio::spawn(async move {
            let (_key, csr) = p256_csr(&device);
            let (status, code, _) = enrolling
                .post_simpleenroll(
                    &device,
                    &token,
                    "application/pkcs10",
                    TestApp::est_body(&csr),
                )
                .await;
            (device, status, code)
        }));
        let revoking = app.clone();
        let key = registrar.clone();
        revocations.push(tokio::spawn(async move {
            let path = format!("/admin/v1/devices/{serial}/tokens/revoke");
            let (status, _, body) = admin(&revoking, &key, "POST", &path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }));
    }
    for revocation in revocations {
        revocation.await.unwrap();
    }
    let mut answers = std::collections::BTreeMap::new();
    for enrollment in enrollments {
        let (serial, status, code) = enrollment.await.unwrap();
        answers.insert(serial, (status, code));
    }
    let store = app.authority.store();
    let (mut used, mut revoked) = (0, 0);
    for (serial, token) in &devices {
        let record = store
            .token(&ca_server::auth::token::hash(token))
            .await
            .unwrap()
            .unwrap();
        let certificates = app.certificates(serial).await;
        let (status, code) = &answers[serial];
        match (record.used_at, record.revoked_at) {
            (Some(_), None) => {
                used += 1;
                assert_eq!(certificates.len(), 1, "{serial}");
                assert_eq!(*status, 200, "{serial}: {code}");
            }
            (None, Some(_)) => {
                revoked += 1;
                assert!(certificates.is_empty(), "{serial}");
                assert_eq!(
                    (*status, code.as_str()),
                    (401, "auth.token_revoked"),
                    "{serial}"
                );
            }
            other => panic!("{serial}: token used/revoked = {other:?}"),
        }
    }
    println!("{used} enrolled, {revoked} revoked first");
    let revocations: u64 = audited(&app, "token.revoked")
        .await
        .iter()
        .map(|(_, details)| details["tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(revocations, revoked);
}

#[tokio::test]
async fn revocations_racing_enrollments_leave_each_token_used_or_revoked_on_sqlite() {
    revocations_racing_enrollments_leave_each_token_used_or_revoked(TestApp::spawn().await).await;
}

#[tokio::test]
async fn revocations_racing_enrollments_leave_each_token_used_or_revoked_on_postgres() {
    let Some(database) = testing::create().await else {
        return;
    };
    revocations_racing_enrollments_leave_each_token_used_or_revoked(
        TestApp::spawn_on_database(&database.url).await,
    )
    .await;
}
