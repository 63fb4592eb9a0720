//! The operator console over real HTTPS, without a browser (the browser suite is
//! `console_browser.rs`): security headers and cookie attributes, sign-in and sign-out, CSRF on
//! every POST, the admin API's roles on every request, idle expiry, and a revoked credential
//! ending its session; on SQLite and PostgreSQL.

use ca_server::api::CONTENT_SECURITY_POLICY;
use ca_server::storage::{CertificateStatus, testing};
use iomt_tests::console::ConsoleClient;
use iomt_tests::{PUMP, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

/// A registered pump with one certificate; returns (device serial, certificate serial).
async fn enrolled_pump(app: &TestApp, serial: &str) -> (String, String) {
    let token = app.pump_with_token(serial).await;
    let out = app.dir.path().join(format!("device-{serial}"));
    let enrolled = app.enroll(serial, &token, &out).await.expect("enroll");
    (serial.to_owned(), enrolled.certificate_serial)
}

async fn audit(app: &TestApp, action: &str) -> Vec<(String, Value)> {
    app.authority
        .store()
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == action)
        .map(|e| {
            (
                e.event.actor,
                serde_json::from_str(&e.event.details).unwrap(),
            )
        })
        .collect()
}

fn assert_protected(page: &iomt_tests::console::Page) {
    let header = |name: &str| {
        page.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY);
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(!page.body.contains("style="), "{}", page.body);
    assert!(
        !page.body.contains("http://"),
        "an external resource: {}",
        page.body
    );
    // Every form that changes something carries the CSRF token (the guard refuses it otherwise).
    for form in page.body.split("<form").skip(1) {
        let form = &form[..form.find("</form>").expect("a closed form")];
        if form.contains("method=\"post\"") {
            assert!(
                form.contains("name=\"csrf\""),
                "a POST form without its token: {form}"
            );
        }
    }
}

async fn headers_cookies_and_pages(app: TestApp) {
    let mut console = ConsoleClient::new(&app);
    let form = console.get("/console/signin").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_protected(&form);
    assert_eq!(form.headers["cache-control"], "no-store");
    let signin_cookie = form.set_cookies().join("\n");
    for attribute in [
        "__Host-iomt-signin=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(signin_cookie.contains(attribute), "{signin_cookie}");
    }
    // Without a session every page sends the browser to sign-in.
    let mut stranger = ConsoleClient::new(&app);
    for path in [
        "/console/",
        "/console/devices",
        "/console/recalls",
        "/console/stations",
    ] {
        let page = stranger.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location().as_deref(), Some("/console/signin"));
        assert_protected(&page);
    }

    let signed_in = console.sign_in(&app.admin_key()).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(signed_in.location().as_deref(), Some("/console/"));
    let session_cookie = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-iomt-console="))
        .expect("session cookie");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(!session_cookie.contains("Domain"));
    let id = console.session().unwrap();
    assert!(id.len() >= 43, "a 256-bit id: {id}");

    for path in [
        "/console/",
        "/console/devices",
        "/console/recalls",
        "/console/stations",
    ] {
        let page = console.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert_protected(&page);
        assert!(page.body.contains("apikey:bootstrap"), "{path}");
    }
    let overview = console.get("/console/").await;
    for chart in ["by-product", "by-station", "expiry", "life", "crl"] {
        assert!(overview.body.contains(&format!("{chart}-title")), "{chart}");
    }
    let css = console.get("/console/static/console.css").await;
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");

    let signed = audit(&app, "console.signed_in").await;
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].0, "apikey:bootstrap");
    assert_eq!(signed[0].1["role"], "admin");

    // Signing out ends the session for every copy of the cookie.
    let csrf = console.csrf().await;
    let out = console.post("/console/signout", &[("csrf", &csrf)]).await;
    assert_eq!(
        out.location().as_deref(),
        Some("/console/signin?signed_out=1")
    );
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-iomt-console=;") && c.contains("Max-Age=0"))
    );
    let mut replay = ConsoleClient::new(&app);
    replay.cookies.push(("__Host-iomt-console".into(), id));
    let page = replay.get("/console/").await;
    assert_eq!(
        page.location().as_deref(),
        Some("/console/signin?expired=1")
    );
    assert_eq!(audit(&app, "console.signed_out").await.len(), 1);
}

#[tokio::test]
async fn console_pages_carry_strict_headers_and_the_session_cookie_is_secure_httponly_strict() {
    headers_cookies_and_pages(TestApp::spawn().await).await;
}

#[tokio::test]
async fn console_pages_carry_strict_headers_and_the_session_cookie_is_secure_httponly_strict_on_postgres()
 {
    let Some(db) = testing::create().await else {
        return;
    };
    headers_cookies_and_pages(TestApp::spawn_on_database(&db.url).await).await;
}

async fn bad_sign_ins(app: TestApp) {
    let mut console = ConsoleClient::new(&app);
    let refused = console
        .sign_in("iomt_0123456789abcdef_not-a-real-key")
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("API key is not valid"),
        "{}",
        refused.body
    );
    assert!(console.session().is_none());
    let failures = audit(&app, "admin.login_failed").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "key:0123456789abcdef");
    assert_eq!(failures[0].1["reason"], "bad_key");
    // A sign-in posted from elsewhere has no matching token cookie: refused before the key is
    // even looked at.
    let mut forger = ConsoleClient::new(&app);
    let forged = forger
        .post(
            "/console/signin",
            &[("csrf", "guess"), ("api_key", &app.admin_key())],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forger.session().is_none());
    // No client certificate on this connection: refused and audited.
    let form = console.get("/console/signin").await;
    let with_cert = console
        .post(
            "/console/signin/certificate",
            &[("csrf", &form.csrf().unwrap())],
        )
        .await;
    assert_eq!(with_cert.status, StatusCode::UNAUTHORIZED);
    assert!(audit(&app, "console.signed_in").await.is_empty());
}

#[tokio::test]
async fn sign_in_with_a_wrong_key_or_a_forged_form_is_refused_and_audited() {
    bad_sign_ins(TestApp::spawn().await).await;
}

async fn registrar_cannot_revoke(app: TestApp) {
    let (device, certificate) = enrolled_pump(&app, "IP22000001").await;
    let key = app.api_key("line-registrar", "registrar").await;
    let mut console = ConsoleClient::new(&app);
    assert_eq!(console.sign_in(&key).await.status, StatusCode::SEE_OTHER);
    let page = console.get(&format!("/console/devices/{device}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&certificate));
    assert!(
        !page.body.contains("action=revoke"),
        "revoke offered to a registrar"
    );
    assert!(!page.body.contains("action=hold"));
    assert!(
        !page.body.contains("/pem"),
        "registrars do not read certificates"
    );
    assert!(!page.body.contains("href=\"/console/recalls\""));
    assert!(!page.body.contains("href=\"/console/stations\""));
    for path in ["/console/recalls", "/console/stations"] {
        assert_eq!(
            console.get(path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let confirm = console
        .get(&format!(
            "/console/certificates/{certificate}/confirm?action=revoke"
        ))
        .await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    // Posted anyway, with the session cookie and a valid CSRF token: refused, nothing changes.
    let csrf = page.csrf().unwrap();
    let posted = console
        .post(
            &format!("/console/certificates/{certificate}/revoke"),
            &[("csrf", &csrf), ("reason", "keyCompromise")],
        )
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN, "{}", posted.body);
    assert!(posted.body.contains("registrar"));
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::Valid
    );
    assert!(audit(&app, "certificate.revoked").await.is_empty());
    let refusals = audit(&app, "admin.login_failed").await;
    assert!(
        refusals
            .iter()
            .any(|(actor, details)| actor == "apikey:line-registrar"
                && details["reason"] == "role_insufficient"
                && details["needed"] == "certificates:revoke"),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn registrar_is_not_offered_revoke_and_is_refused_when_it_posts_it() {
    registrar_cannot_revoke(TestApp::spawn().await).await;
}

#[tokio::test]
async fn registrar_is_not_offered_revoke_and_is_refused_when_it_posts_it_on_postgres() {
    let Some(db) = testing::create().await else {
        return;
    };
    registrar_cannot_revoke(TestApp::spawn_on_database(&db.url).await).await;
}

async fn csrf_is_checked(app: TestApp) {
    let (device, certificate) = enrolled_pump(&app, "IP22000002").await;
    let mut console = ConsoleClient::new(&app);
    console.sign_in(&app.admin_key()).await;
    let hold = format!("/console/certificates/{certificate}/hold");
    for fields in [vec![], vec![("csrf", "forged")], vec![("csrf", "")]] {
        let refused = console.post(&hold, &fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(refused.body.contains("security token"));
    }
    // Another session's token is no good either.
    let mut other = ConsoleClient::new(&app);
    other.sign_in(&app.admin_key()).await;
    let foreign = other.csrf().await;
    assert_eq!(
        console.post(&hold, &[("csrf", &foreign)]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::Valid
    );
    assert!(audit(&app, "certificate.held").await.is_empty());
    // The session's own token: held, audited with the operator as actor.
    let csrf = console.csrf().await;
    let held = console.post(&hold, &[("csrf", &csrf)]).await;
    assert_eq!(held.status, StatusCode::SEE_OTHER, "{}", held.body);
    assert_eq!(
        held.location().unwrap(),
        format!("/console/devices/{device}?done=held")
    );
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::OnHold
    );
    let events = audit(&app, "certificate.held").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "apikey:bootstrap");
    let released = console
        .post(
            &format!("/console/certificates/{certificate}/release"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(released.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.certificate_status(&certificate).await,
        CertificateStatus::Valid
    );
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    csrf_is_checked(TestApp::spawn().await).await;
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing_on_postgres() {
    let Some(db) = testing::create().await else {
        return;
    };
    csrf_is_checked(TestApp::spawn_on_database(&db.url).await).await;
}

async fn idle_and_revoked_sessions_end(database: Option<&str>) {
    let app = TestApp::spawn_configured(database, |settings| {
        // Long enough for sign-in and the first page on a loaded CI machine.
        settings.config.console.idle_timeout_secs = 3;
    })
    .await;
    let mut console = ConsoleClient::new(&app);
    console.sign_in(&app.admin_key()).await;
    assert_eq!(console.get("/console/").await.status, StatusCode::OK);
    // Let the session go idle past its 3-second timeout (time must pass; nothing to wait on).
    tokio::time::sleep(std::time::Duration::from_millis(4_100)).await;
    let expired = console.get("/console/").await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert_eq!(
        expired.location().as_deref(),
        Some("/console/signin?expired=1")
    );
    assert!(console.session().is_none(), "the cookie is deleted");
    let notice = console.get("/console/signin?expired=1").await;
    assert!(notice.body.contains("without activity"), "{}", notice.body);

    // A revoked API key ends its session at the next request.
    let key = app.api_key("qa", "auditor").await;
    let mut auditor = ConsoleClient::new(&app);
    auditor.sign_in(&key).await;
    assert_eq!(auditor.get("/console/devices").await.status, StatusCode::OK);
    app.cli(&["apikey", "revoke", "--name", "qa"])
        .await
        .unwrap();
    let ended = auditor.get("/console/devices").await;
    assert_eq!(ended.location().as_deref(), Some("/console/signin?ended=1"));
    let outs = audit(&app, "console.signed_out").await;
    assert!(
        outs.iter()
            .any(|(actor, d)| actor == "apikey:qa" && d["why"] == "signed_out")
    );
}

#[tokio::test]
async fn an_idle_session_is_sent_back_to_sign_in_and_a_revoked_key_ends_its_session() {
    idle_and_revoked_sessions_end(None).await;
}

#[tokio::test]
async fn an_idle_session_is_sent_back_to_sign_in_and_a_revoked_key_ends_its_session_on_postgres() {
    let Some(db) = testing::create().await else {
        return;
    };
    idle_and_revoked_sessions_end(Some(&db.url)).await;
}

#[tokio::test]
async fn device_search_finds_by_serial_product_lot_and_status() {
    let app = TestApp::spawn().await;
    let (device, certificate) = enrolled_pump(&app, "IP22000003").await;
    app.register("IP22000004", PUMP).await;
    let mut console = ConsoleClient::new(&app);
    console.sign_in(&app.admin_key()).await;
    let by_serial = console
        .get(&format!("/console/devices?serial={device}"))
        .await;
    assert_eq!(
        by_serial.location(),
        Some(format!("/console/devices/{device}"))
    );
    let by_product = console
        .get(&format!("/console/devices?product={PUMP}"))
        .await;
    assert!(by_product.body.contains("IP22000003") && by_product.body.contains("IP22000004"));
    assert!(by_product.body.contains("never enrolled"));
    let valid = console.get("/console/devices?status=valid").await;
    assert!(valid.body.contains(&certificate) && !valid.body.contains("IP22000004"));
    let unknown = console
        .get("/console/devices?product=no-such-product")
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let missing = console.get("/console/devices/NOPE").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let pem = console
        .get(&format!("/console/certificates/{certificate}/pem"))
        .await;
    assert!(pem.body.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        pem.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("{certificate}.pem"))
    );
}
