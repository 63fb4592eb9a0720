//! Revocation that hospitals check with stock tools: `openssl verify -crl_check`, `openssl ocsp`,
//! hold and release, pkilint on CRLs and OCSP responses, and malformed input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use iomt_tests::{TestApp, require_tool, run_tool};

struct Device {
    serial: String,
    dir: PathBuf,
}

async fn enroll(app: &TestApp, serial: &str) -> Device {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    let enrolled = app.enroll(serial, &token, &dir).await.expect("enroll");
    Device {
        serial: enrolled.certificate_serial,
        dir,
    }
}

async fn fetch(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let response = app
        .plain_client()
        .get(format!("http://{}{path}", app.http))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

/// Writes the Basic and root CRLs as PEM files in `dir`; returns their paths.
async fn save_crls(app: &TestApp, dir: &Path) -> (PathBuf, PathBuf) {
    let mut paths = Vec::new();
    for name in ["basic", "root"] {
        let (status, der) = fetch(app, &format!("/crl/{name}.crl")).await;
        assert_eq!(status, 200);
        let der_path = dir.join(format!("{name}.crl.der"));
        std::fs::write(&der_path, der).unwrap();
        let pem_path = dir.join(format!("{name}.crl.pem"));
        run_tool(
            Command::new("openssl")
                .args(["crl", "-inform", "DER", "-in"])
                .arg(&der_path)
                .arg("-out")
                .arg(&pem_path),
        );
        paths.push(pem_path);
    }
    (paths.remove(0), paths.remove(0))
}

fn issuing_pem(device: &Device) -> PathBuf {
    // chain.pem = issuing CA then root; openssl takes the first certificate of -issuer.
    device.dir.join("chain.pem")
}

fn openssl_output(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new("openssl");
    command.args(args);
    for path in paths {
        command.arg(path);
    }
    command.output().unwrap()
}

/// `openssl ocsp` against the responder; returns its stdout+stderr.
async fn ocsp_query(app: &TestApp, issuer: &Path, target: &[&str]) -> String {
    let url = format!("http://{}/ocsp/basic", app.http);
    let mut args: Vec<String> = vec![
        "ocsp".into(),
        "-issuer".into(),
        issuer.display().to_string(),
        "-CAfile".into(),
        app.root_pem().display().to_string(),
        "-url".into(),
        url,
    ];
    args.extend(target.iter().map(|s| (*s).to_owned()));
    let output =
        tokio::task::spawn_blocking(move || Command::new("openssl").args(&args).output().unwrap())
            .await
            .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test]
async fn revoked_fails_and_good_passes_with_crls_and_ocsp() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let revoked = enroll(&app, "IP20000001").await;
    let good = enroll(&app, "IP20000002").await;
    let out = app
        .cli(&[
            "revoke",
            "--serial",
            &revoked.serial,
            "--reason",
            "keyCompromise",
        ])
        .await
        .unwrap();
    assert!(out.contains("revoked (keyCompromise)"), "{out}");
    let again = app
        .cli(&[
            "revoke",
            "--serial",
            &revoked.serial,
            "--reason",
            "keyCompromise",
        ])
        .await
        .unwrap();
    assert!(again.contains("already revoked"), "idempotent: {again}");

    let work = app.dir.path().join("crl");
    std::fs::create_dir(&work).unwrap();
    let (basic_crl, root_crl) = save_crls(&app, &work).await;
    let root = app.root_pem();
    for (device, expect_ok) in [(&good, true), (&revoked, false)] {
        let cert = device.dir.join("cert.pem");
        let chain = issuing_pem(device);
        let single = openssl_output(
            &["verify", "-crl_check", "-CAfile"],
            &[
                &root,
                Path::new("-untrusted"),
                &chain,
                Path::new("-CRLfile"),
                &basic_crl,
                &cert,
            ],
        );
        let all = openssl_output(
            &["verify", "-crl_check_all", "-CAfile"],
            &[
                &root,
                Path::new("-untrusted"),
                &chain,
                Path::new("-CRLfile"),
                &basic_crl,
                Path::new("-CRLfile"),
                &root_crl,
                &cert,
            ],
        );
        for output in [single, all] {
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.success(), expect_ok, "{text}");
            if !expect_ok {
                assert!(text.contains("certificate revoked"), "{text}");
            }
        }
    }
    let crl_text = run_tool(
        Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(&basic_crl),
    );
    assert!(
        crl_text.contains("X509v3 CRL Number") && crl_text.contains("Key Compromise"),
        "{crl_text}"
    );
    assert!(
        crl_text.contains("X509v3 Authority Key Identifier"),
        "{crl_text}"
    );

    let issuer = issuing_pem(&revoked);
    let text = ocsp_query(
        &app,
        &issuer,
        &["-cert", revoked.dir.join("cert.pem").to_str().unwrap()],
    )
    .await;
    assert!(
        text.contains("Response verify OK")
            && text.contains(": revoked")
            && text.contains("Reason: keyCompromise"),
        "{text}"
    );
    let text = ocsp_query(
        &app,
        &issuer,
        &["-cert", good.dir.join("cert.pem").to_str().unwrap()],
    )
    .await;
    assert!(
        text.contains("Response verify OK") && text.contains(": good"),
        "{text}"
    );
    let text = ocsp_query(&app, &issuer, &["-serial", "0x4242424242424242424242"]).await;
    assert!(
        text.contains("Response verify OK") && text.contains(": unknown"),
        "{text}"
    );
}

#[tokio::test]
async fn hold_then_release_flips_ocsp_and_the_crl() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let device = enroll(&app, "IP20000003").await;
    let issuer = issuing_pem(&device);
    let cert = device.dir.join("cert.pem");
    app.cli(&[
        "revoke",
        "--serial",
        &device.serial,
        "--reason",
        "certificateHold",
    ])
    .await
    .unwrap();
    let text = ocsp_query(&app, &issuer, &["-cert", cert.to_str().unwrap()]).await;
    assert!(
        text.contains(": revoked") && text.contains("Reason: certificateHold"),
        "{text}"
    );
    let held = app.revocation.current_crl("basic").await.unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&held.der).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 1);

    let out = app
        .cli(&["release", "--serial", &device.serial])
        .await
        .unwrap();
    assert!(out.contains("released"), "{out}");
    let text = ocsp_query(&app, &issuer, &["-cert", cert.to_str().unwrap()]).await;
    assert!(text.contains(": good"), "{text}");
    let released = app.revocation.current_crl("basic").await.unwrap();
    assert!(released.number > held.number, "cRLNumber grows");
    let (_, crl) = x509_parser::parse_x509_crl(&released.der).unwrap();
    assert_eq!(
        crl.iter_revoked_certificates().count(),
        0,
        "the released entry left the CRL"
    );

    let err = app
        .cli(&["release", "--serial", &device.serial])
        .await
        .unwrap_err();
    assert!(err.contains("not on hold"), "{err}");
}

#[tokio::test]
async fn ocsp_get_and_pkilint_on_crl_and_ocsp_response() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let device = enroll(&app, "IP20000004").await;
    app.cli(&[
        "revoke",
        "--device",
        "IP20000004",
        "--reason",
        "cessationOfOperation",
    ])
    .await
    .unwrap();
    let work = app.dir.path().join("get");
    std::fs::create_dir(&work).unwrap();
    let issuer = issuing_pem(&device);
    run_tool(
        Command::new("openssl")
            .current_dir(&work)
            .args(["ocsp", "-no_nonce", "-reqout", "req.der", "-issuer"])
            .arg(&issuer)
            .arg("-cert")
            .arg(device.dir.join("cert.pem")),
    );
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(work.join("req.der")).unwrap());
    let encoded = encoded
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let (status, response) = fetch(&app, &format!("/ocsp/basic/{encoded}")).await;
    assert_eq!(status, 200);
    std::fs::write(work.join("resp.der"), &response).unwrap();
    let text = run_tool(
        Command::new("openssl")
            .current_dir(&work)
            .args(["ocsp", "-respin", "resp.der", "-resp_text", "-CAfile"])
            .arg(app.root_pem())
            .arg("-issuer")
            .arg(&issuer),
    );
    assert!(
        text.contains("Cert Status: revoked") && text.contains("cessationOfOperation"),
        "{text}"
    );

    let (_, crl) = fetch(&app, "/crl/basic.crl").await;
    std::fs::write(work.join("basic.crl"), crl).unwrap();
    let (_, root_crl) = fetch(&app, "/crl/root.crl").await;
    std::fs::write(work.join("root.crl"), root_crl).unwrap();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin");
    let tool = |name: &str| -> Option<PathBuf> {
        let local = venv.join(name);
        if local.exists() {
            Some(local)
        } else {
            require_tool(name, &["--help"]).then(|| PathBuf::from(name))
        }
    };
    if let (Some(lint_crl), Some(lint_ocsp)) = (tool("lint_crl"), tool("lint_ocsp_response")) {
        for (linter, file, extra) in [
            (&lint_crl, "basic.crl", vec!["-t", "CRL", "-p", "PKIX"]),
            (&lint_crl, "root.crl", vec!["-t", "ARL", "-p", "PKIX"]),
            (&lint_ocsp, "resp.der", vec![]),
        ] {
            let output = Command::new(linter)
                .current_dir(&work)
                .arg("lint")
                .args(&extra)
                .args(["-s", "WARNING"])
                .arg(file)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            assert!(
                !report.contains("ERROR")
                    && !report.contains("FATAL")
                    && !report.contains("usage:"),
                "{file}: {report}"
            );
        }
    }
}

#[tokio::test]
async fn malformed_ocsp_and_unknown_crls_get_clear_answers() {
    let app = TestApp::spawn().await;
    let post = |body: Vec<u8>| {
        let client = app.plain_client();
        let url = format!("http://{}/ocsp/basic", app.http);
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/ocsp-request")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.bytes().await.unwrap().to_vec(),
            )
        }
    };
    // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } with 1 = malformedRequest, 6 = unauthorized.
    assert_eq!(
        post(b"garbage".to_vec()).await,
        (200, vec![0x30, 0x03, 0x0a, 0x01, 0x01])
    );
    let (status, body) = post(vec![0x30; 64 * 1024]).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));

    if require_tool("openssl", &["version"]) {
        let device = enroll(&app, "IP20000005").await;
        let work = app.dir.path().join("bad");
        std::fs::create_dir(&work).unwrap();
        run_tool(
            Command::new("openssl")
                .current_dir(&work)
                .args(["ocsp", "-sha512", "-reqout", "sha512.der", "-issuer"])
                .arg(issuing_pem(&device))
                .arg("-cert")
                .arg(device.dir.join("cert.pem")),
        );
        assert_eq!(
            post(std::fs::read(work.join("sha512.der")).unwrap()).await,
            (200, vec![0x30, 0x03, 0x0a, 0x01, 0x01])
        );
        // A certificate of another CA: not ours to answer.
        let other = TestApp::spawn().await;
        let foreign = enroll(&other, "IP20000005").await;
        run_tool(
            Command::new("openssl")
                .current_dir(&work)
                .args(["ocsp", "-reqout", "foreign.der", "-issuer"])
                .arg(issuing_pem(&foreign))
                .arg("-cert")
                .arg(foreign.dir.join("cert.pem")),
        );
        assert_eq!(
            post(std::fs::read(work.join("foreign.der")).unwrap()).await,
            (200, vec![0x30, 0x03, 0x0a, 0x01, 0x06])
        );
    }

    let (status, body) = fetch(&app, "/crl/nobody.crl").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).starts_with("crl.unknown_issuer:"));
    let err = app
        .cli(&["revoke", "--serial", "abcdef", "--reason", "stolen"])
        .await
        .unwrap_err();
    assert!(err.contains("unknown reason `stolen`"), "{err}");
    let err = app
        .cli(&["revoke", "--serial", "abcdef"])
        .await
        .unwrap_err();
    assert!(err.contains("no certificate with serial abcdef"), "{err}");
}

#[tokio::test]
async fn concurrent_revocations_keep_crl_numbers_increasing_and_lose_nothing() {
    let app = TestApp::spawn().await;
    let mut serials = Vec::new();
    for i in 0..16 {
        serials.push(enroll(&app, &format!("IP2{:07}", 100 + i)).await.serial);
    }
    let reason = ca_server::revocation::Reason::parse("keyCompromise").unwrap();
    let tasks: Vec<_> = serials
        .iter()
        .map(|serial| {
            let (revocation, serial) = (app.revocation.clone(), serial.clone());
            tokio::spawn(async move {
                revocation
                    .revoke(&serial.parse().unwrap(), reason, "test")
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let latest = app.revocation.current_crl("basic").await.unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&latest.der).unwrap();
    let listed: std::collections::HashSet<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect();
    for serial in &serials {
        assert!(listed.contains(serial), "{serial} is on the latest CRL");
    }
    assert!(
        latest.number >= 16,
        "one CRL per revocation at least: {}",
        latest.number
    );
    let number = crl.crl_number().map(|n| n.to_string()).unwrap_or_default();
    assert_eq!(number, latest.number.to_string());
}

#[tokio::test]
async fn admin_api_revokes_holds_and_releases_with_the_bearer_token() {
    let app = TestApp::spawn().await;
    let device = enroll(&app, "IP20000006").await;
    let token = std::fs::read_to_string(app.data_dir().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(app.data_dir().join("admin-token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let client = app.http_client();
    let base = format!("{}/admin/v1", app.server_url());
    let call = |path: String, bearer: Option<String>, body: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut request = client.post(path);
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let revoke = format!("{base}/certificates/{}/revoke", device.serial);
    assert_eq!(call(revoke.clone(), None, None).await.0, 401);
    assert_eq!(
        call(revoke.clone(), Some("wrong".into()), None).await.0,
        401
    );
    let (status, body) = call(
        revoke.clone(),
        Some(token.clone()),
        Some(r#"{"reason":"stolen"}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("revocation.unknown_reason"), "{body}");
    let (status, body) = call(
        format!("{base}/certificates/00ff/revoke"),
        Some(token.clone()),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = call(
        revoke.clone(),
        Some(token.clone()),
        Some(r#"{"reason":"certificateHold"}"#),
    )
    .await;
    assert_eq!(
        (status, body.contains(r#""result":"held""#)),
        (200, true),
        "{body}"
    );
    let record = app
        .authority
        .store()
        .certificate(&device.serial)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, ca_server::storage::CertificateStatus::OnHold);
    let (status, body) = call(
        format!("{base}/certificates/{}/release", device.serial),
        Some(token.clone()),
        None,
    )
    .await;
    assert_eq!(
        (status, body.contains(r#""result":"released""#)),
        (200, true),
        "{body}"
    );
    let (status, _) = call(
        format!("{base}/certificates/{}/release", device.serial),
        Some(token.clone()),
        None,
    )
    .await;
    assert_eq!(status, 409, "releasing a valid certificate is a conflict");
    let (status, body) = call(
        format!("{base}/devices/IP20000006/revoke"),
        Some(token),
        Some(r#"{"reason":"cessationOfOperation"}"#),
    )
    .await;
    assert_eq!(
        (status, body.contains(r#""result":"revoked""#)),
        (200, true),
        "{body}"
    );
    let events = app.authority.store().audit_events().await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    for action in [
        "certificate.held",
        "certificate.released",
        "certificate.revoked",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
}
