//! The operator console in a real browser: Debian's headless Chromium, driven over WebDriver,
//! against the real server on 127.0.0.1 (HTTPS, the console's cookies and CSP as shipped). A
//! registrar is not offered revoke and is refused when it posts one; an admin finds a device,
//! holds it (OCSP answers `revoked (certificateHold)` and the CRL lists it) and releases it; a
//! forged form without the CSRF token changes nothing; a recall of one lot from the console
//! changes exactly what the database says it did; an idle session is sent back to sign-in.
//! Each page's screenshot is written to `docs/console/` (linked from the README).
//! Skipped with a printed reason without chromium and chromedriver; a failure under CI=true.

use std::collections::BTreeMap;
use std::time::Duration;

use ca_server::storage::CertificateStatus;
use iomt_core::ocsp::Status;
use iomt_tests::browser::Browser;
use iomt_tests::operations::comparable_serial;
use iomt_tests::{MONITOR, PUMP, TestApp};

/// OCSP's reason code for `certificateHold` (RFC 5280 §5.3.1).
const CERTIFICATE_HOLD: u8 = 6;

/// Enrolls a registered pump; returns its certificate's serial (hex, as the database has it).
async fn enrolled_pump(app: &TestApp, serial: &str) -> String {
    let token = app.pump_with_token(serial).await;
    let out = app.dir.path().join(format!("device-{serial}"));
    app.enroll(serial, &token, &out)
        .await
        .expect("enroll")
        .certificate_serial
}

/// The session's CSRF token, as the page's sign-out form carries it.
async fn page_csrf(browser: &Browser) -> String {
    browser
        .attr_of("form[action='/console/signout'] input[name=csrf]", "value")
        .await
}

#[tokio::test]
async fn a_registrar_is_not_offered_revoke_and_is_refused_when_it_posts_one() {
    let app = TestApp::spawn().await;
    let Some(browser) = Browser::start(&app).await else {
        return;
    };
    let certificate = enrolled_pump(&app, "IP22100001").await;
    let key = app.api_key("line-registrar", "registrar").await;
    browser.sign_in(&key).await;
    assert!(
        !browser.has("a[href='/console/recalls']").await,
        "a registrar's navigation has no recalls"
    );

    browser.click_link("Devices").await;
    browser.fill("#serial", "IP22100001").await;
    browser.press("Search").await;
    assert_eq!(browser.path().await, "/console/devices/IP22100001");
    let page = browser.text().await;
    assert!(page.contains(&certificate), "{page}");
    assert!(!page.contains("Revoke"), "revoke is not offered: {page}");
    assert!(!page.contains("Hold"), "hold is not offered: {page}");
    browser.screenshot("device-as-registrar").await;

    // Going to the confirmation by hand is refused.
    browser
        .open(&format!(
            "/console/certificates/{certificate}/confirm?action=revoke"
        ))
        .await;
    assert_eq!(browser.status().await, 403);

    // So is posting the revocation, even with the session's own CSRF token.
    browser.open("/console/devices/IP22100001").await;
    let csrf = page_csrf(&browser).await;
    browser
        .post_forged(
            &format!("/console/certificates/{certificate}/revoke"),
            &[("csrf", &csrf), ("reason", "keyCompromise")],
        )
        .await;
    assert_eq!(browser.status().await, 403, "{}", browser.text().await);
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::Valid
    );
    browser.close().await;
}

#[tokio::test]
async fn an_admin_finds_holds_and_releases_a_device_and_ocsp_and_the_crl_follow() {
    let app = TestApp::spawn().await;
    let Some(browser) = Browser::start(&app).await else {
        return;
    };
    let mut certificates = Vec::new();
    for serial in ["IP22200001", "IP22200002", "IP22200003"] {
        certificates.push(enrolled_pump(&app, serial).await);
    }
    app.register("PM72200001", MONITOR).await;
    let token = app
        .cli(&[
            "station",
            "create",
            "--name",
            "plant1-line2-st01",
            "--products",
            MONITOR,
        ])
        .await
        .expect("station create");
    app.enroll(
        "plant1-line2-st01",
        token.trim(),
        &app.dir.path().join("station"),
    )
    .await
    .expect("the station enrolls its key");
    let certificate = certificates[1].clone();
    let issuer = app.fetch("/ca/basic.cer").await;

    browser.open("/console/").await;
    assert_eq!(
        browser.path().await,
        "/console/signin",
        "unsigned goes to sign-in"
    );
    browser.screenshot("signin").await;
    browser.sign_in(&app.admin_key()).await;
    let overview = browser.text().await;
    assert!(
        overview.contains("Certificates issued") && overview.contains("CA generations"),
        "{overview}"
    );
    assert!(browser.has("svg").await, "the overview draws its charts");
    browser.screenshot("overview").await;
    browser.resize(820, 1180).await;
    browser.open("/console/").await;
    browser.screenshot("overview-tablet").await;
    browser.resize(1280, 900).await;

    browser.click_link("Devices").await;
    browser.choose("#product", PUMP).await;
    browser.press("Search").await;
    let found = browser.text().await;
    for serial in ["IP22200001", "IP22200002", "IP22200003"] {
        assert!(found.contains(serial), "{serial} in {found}");
    }
    assert!(!found.contains("PM72200001"), "only pumps: {found}");
    browser.screenshot("devices").await;
    browser.click_link("IP22200002").await;
    assert_eq!(browser.path().await, "/console/devices/IP22200002");
    browser.screenshot("device").await;

    // A forged hold without the CSRF token is refused and changes nothing.
    browser
        .post_forged(&format!("/console/certificates/{certificate}/hold"), &[])
        .await;
    assert_eq!(browser.status().await, 403);
    assert!(
        browser.text().await.contains("security token"),
        "{}",
        browser.text().await
    );
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::Valid
    );

    // Hold, behind its confirmation.
    browser.open("/console/devices/IP22200002").await;
    browser.click_link("Hold…").await;
    assert!(browser.text().await.contains("certificateHold"));
    browser.screenshot("confirm-hold").await;
    browser.press("Hold certificate").await;
    assert_eq!(
        browser.path().await,
        "/console/devices/IP22200002?done=held"
    );
    assert!(
        browser.has("p.notice[role=status]").await,
        "the change is announced"
    );
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::OnHold
    );
    assert!(matches!(
        app.ocsp_basic(&issuer, &certificate).await,
        Status::Revoked {
            reason: Some(CERTIFICATE_HOLD),
            ..
        }
    ));
    assert!(
        app.crl_serials("basic")
            .await
            .contains(&comparable_serial(&certificate)),
        "the CRL lists the held certificate"
    );
    browser.screenshot("device-on-hold").await;

    // Release it: valid again, off the CRL.
    browser.click_link("Release…").await;
    browser.press("Release certificate").await;
    assert_eq!(
        browser.path().await,
        "/console/devices/IP22200002?done=released"
    );
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::Valid
    );
    assert_eq!(app.ocsp_basic(&issuer, &certificate).await, Status::Good);
    assert!(
        !app.crl_serials("basic")
            .await
            .contains(&comparable_serial(&certificate))
    );
    for other in [&certificates[0], &certificates[2]] {
        assert_eq!(
            app.certificate_status(other).await,
            CertificateStatus::Valid
        );
    }

    browser.click_link("Stations").await;
    assert!(browser.text().await.contains("plant1-line2-st01"));
    browser.screenshot("stations").await;
    browser.close().await;
}

#[tokio::test]
async fn a_recall_of_one_lot_from_the_console_changes_what_the_database_says() {
    let app = TestApp::spawn().await;
    let Some(browser) = Browser::start(&app).await else {
        return;
    };
    let mut rows = String::from("serial,product,lot\n");
    let mut lots = BTreeMap::new();
    for (i, lot) in ["LOT-A", "LOT-B", "LOT-B", "LOT-C"].iter().enumerate() {
        let serial = format!("IP2230000{i}");
        rows.push_str(&format!("{serial},{PUMP},{lot}\n"));
        lots.insert(serial, *lot);
    }
    let csv = app.dir.path().join("lots.csv");
    std::fs::write(&csv, rows).unwrap();
    app.cli(&["device", "register", "--csv", csv.to_str().unwrap()])
        .await
        .expect("register");
    let mut certificates = BTreeMap::new();
    for serial in lots.keys() {
        let token = app.token(serial).await;
        let out = app.dir.path().join(format!("device-{serial}"));
        let enrolled = app.enroll(serial, &token, &out).await.expect("enroll");
        certificates.insert(serial.clone(), enrolled.certificate_serial);
    }

    browser.sign_in(&app.admin_key()).await;
    browser.click_link("Recalls").await;
    browser.choose("#product", PUMP).await;
    browser.fill("#lot", "LOT-B").await;
    browser.press("Dry run").await;
    assert_eq!(browser.text_of("#matching .count").await, "2");
    browser.screenshot("recall-dry-run").await;
    for (serial, certificate) in &certificates {
        assert_eq!(
            app.certificate_status(certificate).await,
            CertificateStatus::Valid,
            "the dry run changed nothing ({serial})"
        );
    }

    browser.press("Confirm: hold 2 certificates").await;
    assert_eq!(browser.path().await, "/console/recalls?started=1");
    // The recall runs in the background; the list reloads itself until it is done.
    let mut state = String::new();
    for _ in 0..100 {
        browser.open("/console/recalls").await;
        state = browser.text_of("#recall-list tbody tr td .badge").await;
        if state == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "completed");
    let changed: usize = browser
        .text_of("#recall-list tbody tr td.changed")
        .await
        .parse()
        .expect("a count");
    let mut held = 0;
    for (serial, certificate) in &certificates {
        let status = app.certificate_status(certificate).await;
        let expected = if lots[serial] == "LOT-B" {
            held += 1;
            CertificateStatus::OnHold
        } else {
            CertificateStatus::Valid
        };
        assert_eq!(status, expected, "{serial} of {}", lots[serial]);
    }
    assert_eq!(changed, held, "the console's count is the database's");
    browser.screenshot("recalls").await;

    browser.press("Release hold").await;
    assert!(
        browser
            .text()
            .await
            .contains("Released: 2 certificates are valid again"),
        "{}",
        browser.text().await
    );
    for certificate in certificates.values() {
        assert_eq!(
            app.certificate_status(certificate).await,
            CertificateStatus::Valid
        );
    }
    browser.close().await;
}

#[tokio::test]
async fn an_idle_session_is_sent_back_to_sign_in() {
    let app = TestApp::spawn_configured(None, |settings| {
        // Long enough for the browser's first steps on a loaded CI machine.
        settings.config.console.idle_timeout_secs = 4;
    })
    .await;
    let Some(browser) = Browser::start(&app).await else {
        return;
    };
    browser.sign_in(&app.admin_key()).await;
    browser.click_link("Devices").await;
    assert_eq!(browser.path().await, "/console/devices");
    // Let the session go idle past its 4-second timeout (time must pass; nothing to wait on).
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    browser.click_link("Overview").await;
    assert_eq!(browser.path().await, "/console/signin?expired=1");
    assert!(browser.text().await.contains("without activity"));
    browser.screenshot("signin-expired").await;
    // The old session is gone for good: signing in again is needed.
    browser.open("/console/devices").await;
    assert!(browser.path().await.starts_with("/console/signin"));
    browser.close().await;
}
