//! Re-enrollment end to end: the device's current certificate over mutual TLS, renewals that
//! supersede, outside clients, refusals, and the unattended `run` loop through an outage.

use std::process::Command;
use std::time::Duration;

use ca_server::storage::CertificateStatus;
use enroll_client::enroll::reenroll;
use enroll_client::error::ClientError;
use enroll_client::rotation::{RunOptions, RunOutcome, Schedule, run};
use iomt_tests::{
    TestApp, no_reenroll_interval, read_pem_certs, require_tool, run_tool, webpki_verify,
};

async fn enrolled(app: &TestApp, serial: &str) -> std::path::PathBuf {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    app.enroll(serial, &token, &dir).await.expect("enroll");
    dir
}

fn current_serial(dir: &std::path::Path) -> String {
    let leaf = read_pem_certs(&dir.join("cert.pem")).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    hex_lower(cert.raw_serial())
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn renew_twice_supersedes_and_keeps_a_verified_chain() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20000001").await;
    let first = current_serial(&dir);
    let first_key = std::fs::read_to_string(dir.join("key.pem")).unwrap();

    let second = reenroll(&app.est_server(), &dir)
        .await
        .expect("first renewal")
        .certificate_serial;
    let third = reenroll(&app.est_server(), &dir)
        .await
        .expect("second renewal")
        .certificate_serial;
    assert_eq!(current_serial(&dir), third);
    assert_ne!(
        std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        first_key,
        "a new key every time at Basic"
    );

    let store = app.authority.store();
    assert_eq!(
        store.successor(&first).await.unwrap().unwrap().serial,
        second
    );
    assert_eq!(
        store.successor(&second).await.unwrap().unwrap().serial,
        third
    );
    let newest = store.certificate(&third).await.unwrap().unwrap();
    assert_eq!(newest.supersedes.as_deref(), Some(second.as_str()));
    assert_eq!(newest.authorized_by, format!("certificate:{second}"));
    let leaf = read_pem_certs(&dir.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&dir.join("chain.pem"));
    webpki_verify(&leaf, &chain[0], &app.root_der());
    // Same identity, byte for byte.
    let first_der = store.certificate(&first).await.unwrap().unwrap().der;
    let subject = |der: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
        c.subject().as_raw().to_vec()
    };
    assert_eq!(subject(&first_der), subject(&leaf));
    let events = store.audit_events().await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.action == "certificate.reissued")
            .count(),
        2
    );

    // The superseded certificate can no longer re-enroll.
    let old_dir = app.dir.path().join("old");
    let old_cred = enroll_client::keystore::Credential {
        key_pem: first_key,
        cert_pem: iomt_core_pem(&first_der),
        chain_pem: std::fs::read_to_string(dir.join("chain.pem")).unwrap(),
    };
    enroll_client::keystore::store(&old_dir, &first, &old_cred).unwrap();
    match reenroll(&app.est_server(), &old_dir).await.unwrap_err() {
        ClientError::Server {
            status: 409, code, ..
        } => assert_eq!(code, "reenroll.superseded"),
        other => panic!("expected 409, got {other}"),
    }
}

fn iomt_core_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

#[tokio::test]
async fn curl_reenrolls_with_the_current_certificate() {
    if !require_tool("openssl", &["version"]) || !require_tool("curl", &["--version"]) {
        return;
    }
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20000002").await;
    let work = app.dir.path().join("curl");
    std::fs::create_dir(&work).unwrap();
    run_tool(Command::new("openssl").current_dir(&work).args([
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "new-key.pem",
    ]));
    run_tool(Command::new("openssl").current_dir(&work).args([
        "req",
        "-new",
        "-key",
        "new-key.pem",
        "-subj",
        "/serialNumber=IP20000002",
        "-outform",
        "DER",
        "-out",
        "csr.der",
    ]));
    run_tool(
        Command::new("openssl")
            .current_dir(&work)
            .args(["base64", "-in", "csr.der", "-out", "csr.b64"]),
    );
    let client_chain = std::fs::read_to_string(dir.join("cert.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("chain.pem")).unwrap();
    std::fs::write(work.join("client.pem"), client_chain).unwrap();
    let (root, port, key) = (app.root_pem(), app.https.port(), dir.join("key.pem"));
    let url = format!("{}/.well-known/est/simplereenroll", app.server_url());
    let work2 = work.clone();
    tokio::task::spawn_blocking(move || {
        run_tool(
            Command::new("curl")
                .current_dir(&work2)
                .args(["-sS", "--fail-with-body", "--max-time", "20", "--cacert"])
                .arg(&root)
                .args([
                    "--resolve",
                    &format!("localhost:{port}:127.0.0.1"),
                    "--cert",
                    "client.pem",
                    "--key",
                ])
                .arg(&key)
                .args([
                    "-H",
                    "Content-Type: application/pkcs10",
                    "--data-binary",
                    "@csr.b64",
                    "-o",
                    "new.p7.b64",
                    &url,
                ]),
        );
    })
    .await
    .unwrap();
    run_tool(Command::new("openssl").current_dir(&work).args([
        "base64",
        "-d",
        "-A", // RFC 8951: the answer is one line of base64
        "-in",
        "new.p7.b64",
        "-out",
        "new.p7.der",
    ]));
    let certs = run_tool(Command::new("openssl").current_dir(&work).args([
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        "new.p7.der",
        "-print_certs",
    ]));
    assert!(certs.contains("CN = IP200-IP20000002"), "{certs}");
    assert_eq!(app.certificates("IP20000002").await.len(), 2);
}

#[tokio::test]
async fn refused_reenrollments_change_nothing() {
    let app = TestApp::spawn().await; // the shipped policies: one hour between re-enrollments
    let dir = enrolled(&app, "IP20000003").await;
    // The interval counts between re-enrollments: renew once (at once), then it applies.
    let schedule = enroll_client::rotation::Schedule {
        window_percent: 70,
        jitter_percent: 0,
    };
    enroll_client::rotation::renew(&app.est_server(), &dir, schedule, true)
        .await
        .expect("a renewal right after the initial enrollment");
    let current = current_serial(&dir);
    let credential = enroll_client::keystore::load(&dir).unwrap();
    let client = reqwest_with_identity(&app, Some(&credential));
    let post = |client: reqwest::Client, body: Vec<u8>| {
        let url = format!("{}/.well-known/est/simplereenroll", app.server_url());
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/pkcs10")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let code = response
                .headers()
                .get("x-error-code")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, code, retry)
        }
    };
    let (_, fresh_csr) = iomt_tests::p256_csr("IP20000003");
    let body = TestApp::est_body(&fresh_csr);

    // Too soon: the current certificate was renewed a moment ago.
    let (status, code, retry) = post(client.clone(), body.clone()).await;
    assert_eq!((status, code.as_str()), (429, "reenroll.too_soon"));
    assert!(retry.unwrap().parse::<u64>().unwrap() > 3000);

    // No client certificate.
    let (status, code, _) = post(reqwest_with_identity(&app, None), body.clone()).await;
    assert_eq!((status, code.as_str()), (401, "auth.certificate_required"));

    // A certificate from another CA, and a self-signed one.
    let other = TestApp::spawn().await;
    let foreign = enrolled(&other, "IP20000003").await;
    let foreign_cred = enroll_client::keystore::load(&foreign).unwrap();
    let (status, code, _) = post(
        reqwest_with_identity(&app, Some(&foreign_cred)),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (403, "reenroll.unknown_certificate")
    );
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let self_signed = rcgen::CertificateParams::new(vec![])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let self_cred = enroll_client::keystore::Credential {
        key_pem: key.serialize_pem(),
        cert_pem: self_signed.pem(),
        chain_pem: String::new(),
    };
    let (status, code, _) = post(reqwest_with_identity(&app, Some(&self_cred)), body.clone()).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "reenroll.unknown_certificate")
    );

    // Revoked and on hold.
    let store = app.authority.store();
    store
        .set_status(
            &current,
            CertificateStatus::OnHold,
            Some("certificateHold"),
            0,
        )
        .await
        .unwrap();
    let (status, code, _) = post(client.clone(), body.clone()).await;
    assert_eq!((status, code.as_str()), (403, "reenroll.on_hold"));
    store
        .set_status(
            &current,
            CertificateStatus::Revoked,
            Some("keyCompromise"),
            0,
        )
        .await
        .unwrap();
    let (status, code, _) = post(client.clone(), body.clone()).await;
    assert_eq!((status, code.as_str()), (403, "reenroll.revoked"));
    assert_eq!(
        app.certificates("IP20000003").await.len(),
        2,
        "nothing issued after the renewal"
    );
}

#[tokio::test]
async fn csr_problems_are_refused_at_reenrollment() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20000004").await;
    let credential = enroll_client::keystore::load(&dir).unwrap();
    let client = reqwest_with_identity(&app, Some(&credential));
    let url = format!("{}/.well-known/est/simplereenroll", app.server_url());
    let post = |body: Vec<u8>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/pkcs10")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response
                    .headers()
                    .get("x-error-code")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
            )
        }
    };
    // The same key: Basic requires a new one.
    let current_key = rcgen::KeyPair::from_pem(&credential.key_pem).unwrap();
    let same_key = enroll_client::csr::build_csr(&current_key, "IP20000004").unwrap();
    assert_eq!(
        post(TestApp::est_body(&same_key)).await,
        (403, "reenroll.key_reuse".to_owned())
    );
    // A subject that is not the device's.
    let (_, other_subject) = iomt_tests::p256_csr("IP20000999");
    assert_eq!(
        post(TestApp::est_body(&other_subject)).await,
        (403, "csr.subject_mismatch".to_owned())
    );
    // A CSR whose signature is not by the key it names.
    let (_, mut forged) = iomt_tests::p256_csr("IP20000004");
    let last = forged.len() - 4;
    forged[last] ^= 0x33;
    assert_eq!(
        post(TestApp::est_body(&forged)).await,
        (400, "csr.bad_signature".to_owned())
    );
    assert_eq!(
        app.certificates("IP20000004").await.len(),
        1,
        "nothing issued"
    );
}

/// An HTTPS client trusting the app's root, presenting `credential` (cert + issuing CA) if given.
fn reqwest_with_identity(
    app: &TestApp,
    credential: Option<&enroll_client::keystore::Credential>,
) -> reqwest::Client {
    match credential {
        Some(credential) => app.client_with_identity(credential),
        None => app.http_client(),
    }
}

#[tokio::test]
async fn run_loop_renews_repeatedly_and_survives_an_outage() {
    let mut app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20000005").await;
    let log = app.dir.path().join("exec.log");
    let options = RunOptions {
        server: app.est_server(),
        dir: dir.clone(),
        // Window 0: every certificate is due at once, so the loop renews back to back.
        schedule: Schedule {
            window_percent: 0,
            jitter_percent: 0,
        },
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        exec: Some(format!("echo renewed >> {}", log.display())),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(async move {
        run(&options, async move {
            let _ = stop_rx.await;
        })
        .await
    });

    wait_for(|| async { app.certificates("IP20000005").await.len() >= 3 }).await;
    app.stop_server().await;
    // A renewal the server answered while stopping may still be landing in the directory, or
    // its answer was lost with the connection (the client stages it and sends it again after
    // the restart, and the CA resends the certificate): the outage starts for the client once
    // its directory stops changing.
    let mut during_outage = current_serial(&dir);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = current_serial(&dir);
        if now == during_outage {
            break;
        }
        during_outage = now;
    }
    tokio::time::sleep(Duration::from_millis(800)).await; // several failed attempts with backoff
    assert_eq!(
        current_serial(&dir),
        during_outage,
        "the current certificate stays in place"
    );
    app.restart().await;
    let before = app.certificates("IP20000005").await.len();
    wait_for(|| async { app.certificates("IP20000005").await.len() >= before + 2 }).await;

    stop_tx.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, RunOutcome::Stopped);
    let executed = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(executed >= 4, "--exec ran after each renewal ({executed})");
    let leaf = read_pem_certs(&dir.join("cert.pem")).remove(0);
    webpki_verify(
        &leaf,
        &read_pem_certs(&dir.join("chain.pem"))[0],
        &app.root_der(),
    );
}

#[tokio::test]
async fn run_loop_stops_for_reprovisioning_when_revoked() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20000006").await;
    app.authority
        .store()
        .set_status(
            &current_serial(&dir),
            CertificateStatus::Revoked,
            Some("keyCompromise"),
            0,
        )
        .await
        .unwrap();
    let options = RunOptions {
        server: app.est_server(),
        dir,
        schedule: Schedule {
            window_percent: 0,
            jitter_percent: 0,
        },
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(100),
        exec: None,
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        run(&options, std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        matches!(outcome, RunOutcome::NeedsReprovisioning(ref why) if why.starts_with("reenroll.revoked")),
        "{outcome:?}"
    );
    assert_eq!(
        ClientError::NeedsReprovisioning(String::new()).exit_code(),
        10
    );
}

/// Polls an observable condition (not a readiness sleep): fails after 20 s.
async fn wait_for<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn certificate_expired_beyond_grace_is_refused() {
    // A certificate that really expired a minute ago (inside the test CA's own lifetime), signed
    // by the Basic issuing CA and recorded as issued. Basic allows no grace.
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20000007").await;
    let expired = app.expired_certificate(&dir);
    let mut record = app.certificates("IP20000007").await.remove(0);
    record.serial = expired.serial_hex.clone();
    record.der = expired.der.clone();
    record.not_before = expired.not_before;
    record.not_after = expired.not_after;
    record.spki_sha256 = vec![1; 32];
    record.issued_at = record.not_before;
    let audit = ca_server::storage::AuditEvent {
        at: 0,
        actor: "test".into(),
        action: "test".into(),
        object: "x".into(),
        details: "{}".into(),
    };
    app.authority
        .store()
        .commit_issuance(
            &ca_server::storage::Issuance {
                certificate: record,
                consume_token: None,
                station_quota: None,
                initial: false,
                attestation: None,
                audit,
            },
            0,
        )
        .await
        .unwrap();

    let old = app.dir.path().join("expired");
    let credential = enroll_client::keystore::Credential {
        key_pem: expired.key_pem,
        cert_pem: expired.pem,
        chain_pem: std::fs::read_to_string(dir.join("chain.pem")).unwrap(),
    };
    enroll_client::keystore::store(&old, &expired.serial_hex, &credential).unwrap();
    match reenroll(&app.est_server(), &old).await.unwrap_err() {
        ClientError::Forbidden { code, message } => {
            assert_eq!(code, "reenroll.expired", "{message}");
            assert!(message.contains("new initial enrollment"), "{message}");
        }
        other => panic!("expected 403, got {other}"),
    }
}
