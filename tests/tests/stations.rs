//! Manufacturing stations: a station enrolls its own key, then provisions devices in its scope
//! without tokens, within its rate limit; disabling it takes effect at once; clone detection
//! refuses a second initial enrollment until an operator re-provisions the device.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use enroll_client::error::ClientError;
use enroll_client::keystore;
use enroll_client::provision::{ProvisionRequest, provision};
use iomt_tests::{
    MONITOR, PUMP, TestApp, p256_csr, read_pem_certs, require_tool, run_tool, webpki_verify,
};

const PKCS10: &str = "application/pkcs10";

/// Creates a station and enrolls its key with the ordinary client; returns its directory.
async fn station(app: &TestApp, name: &str, products: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["station", "create", "--name", name, "--products", products];
    args.extend_from_slice(extra);
    let token = app.cli(&args).await.expect("station create");
    let dir = app.dir.path().join(format!("station-{name}"));
    app.enroll(name, token.trim(), &dir)
        .await
        .expect("the station enrolls its own key");
    dir
}

/// POSTs `simpleenroll` for `serial` with the station's certificate and no token.
async fn enroll_through(app: &TestApp, station_dir: &Path, serial: &str) -> (u16, String, String) {
    let client = app.client_with_identity(&keystore::load(station_dir).unwrap());
    let (_, csr) = p256_csr(serial);
    let response = client
        .post(format!("{}/.well-known/est/simpleenroll", app.server_url()))
        .header("content-type", PKCS10)
        .body(TestApp::est_body(&csr))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-error-code")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    (
        status,
        code,
        retry_after.map_or(body.clone(), |r| format!("{body}|retry-after={r}")),
    )
}

async fn register_monitors(app: &TestApp, serials: &[String]) {
    let mut csv = String::from("serial,product\n");
    for serial in serials {
        csv.push_str(&format!("{serial},{MONITOR}\n"));
    }
    let path = app.dir.path().join("monitors.csv");
    std::fs::write(&path, csv).unwrap();
    app.cli(&["device", "register", "--csv", path.to_str().unwrap()])
        .await
        .expect("register");
}

fn provision_request(
    app: &TestApp,
    station: &Path,
    serials: &[String],
    out: &Path,
) -> ProvisionRequest {
    let list = app.dir.path().join("serials.txt");
    std::fs::write(&list, serials.join("\n")).unwrap();
    ProvisionRequest {
        server: app.est_server(),
        station: station.to_path_buf(),
        serials: list,
        out: out.to_path_buf(),
        concurrency: 4,
        pkcs12_password: None,
        progress: false,
    }
}

#[tokio::test]
async fn station_certificate_follows_the_station_profile() {
    let app = TestApp::spawn().await;
    let dir = station(&app, "plant1-line1-st01", MONITOR, &[]).await;
    let cert = read_pem_certs(&dir.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&dir.join("chain.pem"));
    let station_ca = std::fs::read(app.data_dir().join("ca/station.crt.pem")).unwrap();
    let station_ca = pem::parse(station_ca).unwrap().into_contents();
    assert_eq!(chain[0], station_ca, "chain.pem starts with the station CA");
    webpki_verify(&cert, &station_ca, &app.root_der());

    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let subject = parsed.subject().to_string();
    assert!(subject.contains("CN=plant1-line1-st01"), "{subject}");
    assert!(
        !subject.contains("OU="),
        "no OU in station subjects: {subject}"
    );
    let policies: Vec<String> = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::CertificatePolicies(cp) => {
                Some(cp.iter().map(|p| p.policy_id.to_id_string()).collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    assert_eq!(policies, ["1.3.6.1.4.1.32473.7.4.1"]);
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let lifetime =
        parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
    assert!(lifetime <= 366 * 86_400, "at most a year: {lifetime} s");

    // The token was single-use.
    let token_reuse = app
        .cli(&["station", "token", "plant1-line1-st01"])
        .await
        .expect("a new token for a new key");
    assert!(!token_reuse.trim().is_empty());
}

#[tokio::test]
async fn station_provisions_a_batch_resumably_and_names_failures() {
    let app = TestApp::spawn().await;
    let name = "plant1-line1-st02";
    let station_dir = station(&app, name, MONITOR, &["--rate-limit", "1000/h"]).await;
    let serials: Vec<String> = (1..=12).map(|i| format!("PM7000{i:04}")).collect();
    register_monitors(&app, &serials).await;
    let out = app.dir.path().join("line-out");

    let report = provision(&provision_request(&app, &station_dir, &serials, &out))
        .await
        .unwrap();
    assert_eq!((report.done, report.skipped), (12, 0));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let substantial =
        pem::parse(std::fs::read(app.data_dir().join("ca/substantial.crt.pem")).unwrap())
            .unwrap()
            .into_contents();
    for serial in &serials {
        let dir = out.join(serial);
        let mode = std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{serial} key.pem");
        let cert = read_pem_certs(&dir.join("cert.pem")).remove(0);
        webpki_verify(&cert, &substantial, &app.root_der());
        let records = app.certificates(serial).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].authorized_by, format!("station:{name}"));
    }
    let events = app.authority.store().audit_events().await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.action == "certificate.issued"
                && e.event.actor == format!("station:{name}"))
            .count(),
        12
    );

    // Resumable: a second run skips what is done; an unregistered serial fails with a reason.
    let mut more = serials.clone();
    more.push("PM79999999".into());
    let report = provision(&provision_request(&app, &station_dir, &more, &out))
        .await
        .unwrap();
    assert_eq!((report.done, report.skipped), (0, 12));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].serial, "PM79999999");
    assert!(
        report.failed[0].reason.contains("not registered"),
        "{}",
        report.failed[0].reason
    );
    assert!(!out.join("PM79999999").exists());
}

/// A provisioned folder copied onto its device renews there: the flat `key.pem`, `cert.pem`,
/// `chain.pem` and `trust.pem` a station writes are what the device's client starts from.
#[tokio::test]
async fn a_provisioned_folder_renews_on_its_device() {
    let app = TestApp::spawn().await;
    let station_dir = station(&app, "plant1-line1-st05", MONITOR, &[]).await;
    let serials = vec!["PM70000501".to_owned()];
    register_monitors(&app, &serials).await;
    let out = app.dir.path().join("line-out");
    let report = provision(&provision_request(&app, &station_dir, &serials, &out))
        .await
        .unwrap();
    assert_eq!(report.done, 1, "{:?}", report.failed);

    // What the line ships: the folder's files, copied as plain files.
    let device = app.dir.path().join("device");
    std::fs::create_dir(&device).unwrap();
    for file in ["key.pem", "cert.pem", "chain.pem", "trust.pem"] {
        std::fs::copy(out.join("PM70000501").join(file), device.join(file)).unwrap();
    }
    let provisioned = read_pem_certs(&device.join("cert.pem")).remove(0);
    let renewed = enroll_client::enroll::reenroll(&app.est_server(), &device)
        .await
        .expect("the provisioned credential renews");
    let now = read_pem_certs(&device.join("cert.pem")).remove(0);
    assert_ne!(now, provisioned);
    assert_eq!(app.certificates("PM70000501").await.len(), 2);
    assert_eq!(
        keystore::load(&device).unwrap().cert_pem,
        std::fs::read_to_string(device.join("current/cert.pem")).unwrap(),
        "moved to the generations layout"
    );
    assert!(!renewed.certificate_serial.is_empty());
}

#[tokio::test]
async fn provisioned_pkcs12_bundle_opens_with_openssl_and_holds_the_same_identity() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let station_dir = station(&app, "plant1-line1-st04", MONITOR, &[]).await;
    let serials = vec!["PM70000200".to_owned(), "PM70000201".to_owned()];
    register_monitors(&app, &serials).await;
    let out = app.dir.path().join("p12-out");
    let mut request = provision_request(&app, &station_dir, &serials, &out);
    request.pkcs12_password = Some("line-1 injection secret".into());
    let report = provision(&request).await.unwrap();
    assert_eq!(report.done, 2, "{:?}", report.failed);
    for serial in &serials {
        let dir = out.join(serial);
        let bundle = dir.join("device.p12");
        let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{serial} device.p12");
        let opened = run_tool(
            std::process::Command::new("openssl")
                .args(["pkcs12", "-in"])
                .arg(&bundle)
                .args(["-passin", "pass:line-1 injection secret", "-nodes"]),
        );
        assert_eq!(opened.matches("BEGIN CERTIFICATE").count(), 3, "{opened}");
        assert!(opened.contains("BEGIN PRIVATE KEY"));
        // The bundle's first certificate is the device's, and its key is the device's key.
        let from_bundle = pem::parse_many(&opened).unwrap();
        let cert_pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        assert!(from_bundle.iter().any(|p| p.tag() == "CERTIFICATE"
            && p.contents() == pem::parse(&cert_pem).unwrap().contents()));
        let key_pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
        let key = from_bundle
            .iter()
            .find(|p| p.tag() == "PRIVATE KEY")
            .unwrap();
        assert_eq!(key.contents(), pem::parse(&key_pem).unwrap().contents());
        let wrong = std::process::Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(&bundle)
            .args(["-passin", "pass:not the password", "-nodes"])
            .output()
            .unwrap();
        assert!(!wrong.status.success(), "a wrong password must not open it");
    }
}

#[tokio::test]
async fn provision_command_exits_non_zero_when_a_device_fails() {
    let app = TestApp::spawn().await;
    let station_dir = station(&app, "plant1-line1-st03", MONITOR, &[]).await;
    let serials = vec!["PM70000100".to_owned(), "PM70000101".to_owned()];
    register_monitors(&app, &serials[..1]).await;
    let request = provision_request(&app, &station_dir, &serials, &app.dir.path().join("o"));
    let cli = enroll_client::cli::Cli {
        command: enroll_client::cli::Command::Provision(enroll_client::cli::ProvisionArgs {
            server: request.server.url.clone(),
            ca_cert: request.server.ca_cert.clone(),
            station: request.station.clone(),
            serials: request.serials.clone(),
            out: request.out.clone(),
            pkcs12_password_file: None,
            concurrency: 2,
            label: None,
            quiet: true,
        }),
    };
    let mut printed = Vec::new();
    let error = enroll_client::cli::run(cli, &mut printed)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::BatchIncomplete {
            failed: 1,
            total: 2
        }
    ));
    assert_eq!(error.exit_code(), 9);
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.contains("provisioned 1 device(s)"), "{printed}");
    assert!(printed.contains("failed PM70000101: "), "{printed}");
}

#[tokio::test]
async fn station_outside_its_scope_is_refused() {
    let app = TestApp::spawn().await;
    let pump_station = station(&app, "plant1-line2-st01", PUMP, &[]).await;
    register_monitors(&app, &["PM70000200".to_owned()]).await;
    let (status, code, body) = enroll_through(&app, &pump_station, "PM70000200").await;
    assert_eq!(
        (status, code.as_str()),
        (403, "station.out_of_scope"),
        "{body}"
    );
    assert!(body.contains("example-patient-monitor"), "{body}");
    assert!(app.certificates("PM70000200").await.is_empty());
}

#[tokio::test]
async fn disabled_station_is_refused_at_once_and_its_certificate_revoked() {
    let app = TestApp::spawn().await;
    let name = "plant1-line3-st01";
    let dir = station(&app, name, MONITOR, &[]).await;
    register_monitors(&app, &["PM70000300".to_owned(), "PM70000301".to_owned()]).await;
    assert_eq!(enroll_through(&app, &dir, "PM70000300").await.0, 200);

    let out = app.cli(&["station", "disable", name]).await.unwrap();
    assert!(out.contains("1 certificate(s) revoked"), "{out}");
    let (status, code, body) = enroll_through(&app, &dir, "PM70000301").await;
    assert_eq!((status, code.as_str()), (403, "station.disabled"), "{body}");
    assert!(app.certificates("PM70000301").await.is_empty());

    let station_serial = {
        let cert = read_pem_certs(&dir.join("cert.pem")).remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        parsed.raw_serial().to_vec()
    };
    let crl = app
        .plain_client()
        .get(format!("http://{}/crl/station.crl", app.http))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    assert!(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == station_serial.as_slice()),
        "the station CRL lists the disabled station's certificate"
    );
    let events = app.authority.store().audit_events().await.unwrap();
    assert!(events.iter().any(
        |e| e.event.action == "station.disabled" && e.event.object == format!("station:{name}")
    ));
}

#[tokio::test]
async fn foreign_and_device_certificates_are_not_station_certificates() {
    let app = TestApp::spawn().await;
    register_monitors(&app, &["PM70000400".to_owned()]).await;

    // A station certificate from another CA.
    let other = TestApp::spawn().await;
    let foreign = station(&other, "plant9-line1-st01", MONITOR, &[]).await;
    let (status, code, body) = enroll_through(&app, &foreign, "PM70000400").await;
    assert_eq!(
        (status, code.as_str()),
        (403, "station.certificate_not_recognized"),
        "{body}"
    );

    // A device certificate of this CA presented as a station's.
    let token = app.pump_with_token("IP20000400").await;
    let device_dir = app.dir.path().join("device");
    app.enroll("IP20000400", &token, &device_dir).await.unwrap();
    let (status, code, body) = enroll_through(&app, &device_dir, "PM70000400").await;
    assert_eq!(
        (status, code.as_str()),
        (403, "station.certificate_not_recognized"),
        "{body}"
    );
    assert!(app.certificates("PM70000400").await.is_empty());
}

#[tokio::test]
async fn station_rate_limit_answers_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let dir = station(&app, "plant1-line4-st01", MONITOR, &["--rate-limit", "2/h"]).await;
    let serials: Vec<String> = (500..503).map(|i| format!("PM70000{i}")).collect();
    register_monitors(&app, &serials).await;
    assert_eq!(enroll_through(&app, &dir, &serials[0]).await.0, 200);
    assert_eq!(enroll_through(&app, &dir, &serials[1]).await.0, 200);
    let (status, code, body) = enroll_through(&app, &dir, &serials[2]).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "station.rate_limited"),
        "{body}"
    );
    let retry_after: u64 = body.rsplit("retry-after=").next().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert!(app.certificates(&serials[2]).await.is_empty());
}

#[tokio::test]
async fn second_initial_enrollment_is_refused_until_reprovisioned() {
    let app = TestApp::spawn().await;
    let first = app.pump_with_token("IP20000600").await;
    app.enroll("IP20000600", &first, &app.dir.path().join("a"))
        .await
        .unwrap();
    let held = app.certificates("IP20000600").await.remove(0).serial;

    // Another token (a cloned traveller sheet, say) and a station are both refused.
    let second = app.token("IP20000600").await;
    let (_, csr) = p256_csr("IP20000600");
    let (status, code, body) = app
        .post_simpleenroll("IP20000600", &second, PKCS10, TestApp::est_body(&csr))
        .await;
    assert_eq!(
        (status, code.as_str()),
        (409, "device.already_enrolled"),
        "{body}"
    );
    assert!(
        body.contains(&held) && body.contains("reprovision"),
        "{body}"
    );
    assert!(
        !app.token_used(&second).await,
        "a refused request consumes nothing"
    );
    let pump_station = station(&app, "plant1-line5-st01", PUMP, &[]).await;
    let (status, code, _) = enroll_through(&app, &pump_station, "IP20000600").await;
    assert_eq!((status, code.as_str()), (409, "device.already_enrolled"));
    assert_eq!(app.certificates("IP20000600").await.len(), 1);
    let events = app.authority.store().audit_events().await.unwrap();
    let refusals: Vec<_> = events
        .iter()
        .filter(|e| e.event.action == "enrollment.refused_clone")
        .map(|e| e.event.actor.clone())
        .collect();
    assert_eq!(refusals, ["device:IP20000600", "station:plant1-line5-st01"]);

    // The operator re-provisions: the old certificate is revoked, the next enrollment works.
    let out = app
        .cli(&["device", "reprovision", "IP20000600"])
        .await
        .unwrap();
    assert!(out.contains(&held), "{out}");
    app.enroll("IP20000600", &second, &app.dir.path().join("b"))
        .await
        .expect("enrollment after re-provisioning");
    let records = app.certificates("IP20000600").await;
    assert_eq!(records.len(), 2);
    let old = records.iter().find(|r| r.serial == held).unwrap();
    assert_eq!(old.status, ca_server::storage::CertificateStatus::Revoked);
}

#[tokio::test]
async fn station_administration_refuses_bad_input() {
    let app = TestApp::spawn().await;
    let refused = |args: &'static [&'static str]| {
        let app = &app;
        async move { app.cli(args).await.unwrap_err() }
    };
    let error = refused(&[
        "station",
        "create",
        "--name",
        "s1",
        "--products",
        "no-such-product",
    ])
    .await;
    assert!(error.contains("no-such-product"), "{error}");
    let error = refused(&[
        "station",
        "create",
        "--name",
        "bad name",
        "--products",
        PUMP,
    ])
    .await;
    assert!(error.contains("not allowed"), "{error}");
    let error = refused(&[
        "station",
        "create",
        "--name",
        "s1",
        "--products",
        PUMP,
        "--rate-limit",
        "fast",
    ])
    .await;
    assert!(error.contains("rate limit"), "{error}");
    app.cli(&["station", "create", "--name", "s1", "--products", PUMP])
        .await
        .unwrap();
    let error = refused(&["station", "create", "--name", "s1", "--products", PUMP]).await;
    assert!(error.contains("already exists"), "{error}");
    let error = refused(&["station", "disable", "s2"]).await;
    assert!(error.contains("s2"), "{error}");
    let listed = app.cli(&["station", "list"]).await.unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let error = refused(&["device", "reprovision", "IP29999999"]).await;
    assert!(error.contains("not registered"), "{error}");
    // A High product enrolls through stations (its attestation and channel binding are checked
    // per request), so a station may be created for it.
    app.cli(&[
        "station",
        "create",
        "--name",
        "s2",
        "--products",
        "example-ventilator",
    ])
    .await
    .unwrap();
}

#[tokio::test]
async fn stations_are_managed_over_the_admin_api_by_admins_only() {
    let app = TestApp::spawn().await;
    let admin = std::fs::read_to_string(app.data_dir().join("admin-token")).unwrap();
    let registrar = app
        .cli(&["apikey", "create", "--name", "mes", "--role", "registrar"])
        .await
        .unwrap();
    let client = app.http_client();
    let url = |path: &str| format!("{}/admin/v1/{path}", app.server_url());
    let create = serde_json::json!({"name": "plant2-line1-st01", "products": [MONITOR], "rate_limit_per_hour": 50});

    let refused = client
        .post(url("stations"))
        .bearer_auth(registrar.trim())
        .header("content-type", "application/json")
        .body(create.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-error-code"], "auth.role_insufficient");

    let created = client
        .post(url("stations"))
        .bearer_auth(admin.trim())
        .header("content-type", "application/json")
        .body(create.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let body: serde_json::Value = serde_json::from_slice(&created.bytes().await.unwrap()).unwrap();
    let token = body["token"].as_str().unwrap();
    let dir = app.dir.path().join("api-station");
    app.enroll("plant2-line1-st01", token, &dir).await.unwrap();
    register_monitors(&app, &["PM70000700".to_owned()]).await;
    assert_eq!(enroll_through(&app, &dir, "PM70000700").await.0, 200);

    let again = client
        .post(url("stations"))
        .bearer_auth(admin.trim())
        .header("content-type", "application/json")
        .body(create.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()["x-error-code"], "station.exists");

    let listed: serde_json::Value = client
        .get(url("stations"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(listed[0]["name"], "plant2-line1-st01");
    assert_eq!(listed[0]["rate_limit_per_hour"], 50);

    let disabled: serde_json::Value = client
        .post(url("stations/plant2-line1-st01/disable"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(disabled["revoked"].as_array().unwrap().len(), 1);
    let (status, code, _) = enroll_through(&app, &dir, "PM70000700").await;
    assert_eq!((status, code.as_str()), (403, "station.disabled"));

    let reprovisioned = client
        .post(url("devices/PM70000700/reprovision"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(reprovisioned.status(), 200);
    let events = app.authority.store().audit_events().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.action == "device.reprovisioned"
                && e.event.actor.starts_with("apikey:"))
    );
}

#[tokio::test]
async fn station_enrollment_with_bad_token_or_unnamed_csr_is_refused() {
    let app = TestApp::spawn().await;
    let name = "plant1-line6-st01";
    let token = app
        .cli(&["station", "create", "--name", name, "--products", MONITOR])
        .await
        .unwrap();
    let (_, csr) = p256_csr(name);
    let (status, code, _) = app
        .post_simpleenroll(name, "not-the-token", PKCS10, TestApp::est_body(&csr))
        .await;
    assert_eq!((status, code.as_str()), (401, "auth.token_unknown"));
    let dir = app.dir.path().join("st");
    app.enroll(name, token.trim(), &dir).await.unwrap();
    let (status, code, _) = app
        .post_simpleenroll(name, token.trim(), PKCS10, TestApp::est_body(&csr))
        .await;
    assert_eq!((status, code.as_str()), (401, "auth.token_used"));

    // A station-authorized CSR must name the device.
    register_monitors(&app, &["PM70000800".to_owned()]).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let unnamed = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let client = app.client_with_identity(&keystore::load(&dir).unwrap());
    let response = client
        .post(format!("{}/.well-known/est/simpleenroll", app.server_url()))
        .header("content-type", PKCS10)
        .body(TestApp::est_body(unnamed.der()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-error-code"], "csr.no_serial_number");
    assert!(app.certificates("PM70000800").await.is_empty());
}
