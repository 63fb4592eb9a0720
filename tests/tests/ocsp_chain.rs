//! OCSP for the whole chain (issue 18, item 5): the CA certificates carry the root's responder
//! URL and `/ocsp/root` answers for them (root-delegated responder online; the offline root's
//! pre-signed responses, served as signed, otherwise); the responder finds the issuer from the
//! CertID, a responder name that is not ours is 404; pkilint on every kind of root response.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use iomt_core::ocsp::{Status, build_request, check_response};
use iomt_tests::{TestApp, pkilint, require_tool, run_tool};

/// `OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED }`: 6 = unauthorized, 3 = tryLater.
const UNAUTHORIZED: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x06];

async fn post(app: &TestApp, responder: &str, request: Vec<u8>) -> (u16, Vec<u8>) {
    let response = app
        .plain_client()
        .post(format!("http://{}/ocsp/{responder}", app.http))
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .expect("OCSP POST");
    (
        response.status().as_u16(),
        response.bytes().await.expect("body").to_vec(),
    )
}

fn ca_der(app: &TestApp, name: &str) -> Vec<u8> {
    let path = app.data_dir().join(format!("ca/{name}.crt.pem"));
    pem::parse(std::fs::read(path).expect("CA certificate"))
        .expect("pem")
        .into_contents()
}

fn serial_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate");
    cert.raw_serial().to_vec()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `openssl ocsp -issuer root.pem -cert <ca>.crt.pem` against `/ocsp/root`, verified with the
/// root as the only trust anchor; writes the response to `work/<ca>.resp.der`.
fn openssl_root_ocsp(app: &TestApp, work: &Path, ca: &str, nonce: bool) -> Output {
    let cert = app.data_dir().join(format!("ca/{ca}.crt.pem"));
    let mut command = Command::new("openssl");
    command
        .current_dir(work)
        .args(["ocsp", "-issuer"])
        .arg(app.root_pem())
        .arg("-cert")
        .arg(&cert)
        .arg("-CAfile")
        .arg(app.root_pem())
        .args(["-url", &format!("http://{}/ocsp/root", app.http)])
        .args(["-respout", &format!("{ca}.resp.der")]);
    if !nonce {
        command.arg("-no_nonce");
    }
    command.output().expect("openssl ocsp")
}

fn lint_responses(work: &Path, files: &[&str]) {
    if let Some(linter) = pkilint::tool("lint_ocsp_response") {
        for file in files {
            pkilint::assert_clean(&linter, &[], &work.join(file));
        }
    }
}

fn work_dir(app: &TestApp, name: &str) -> PathBuf {
    let work = app.dir.path().join(name);
    std::fs::create_dir_all(&work).expect("work dir");
    work
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_at_the_root_responder_verifies_each_ca_certificate_with_the_root() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let work = work_dir(&app, "root-ocsp");
    for ca in ["basic", "substantial", "high", "station"] {
        let aia = run_tool(
            Command::new("openssl")
                .args(["x509", "-noout", "-ext", "authorityInfoAccess", "-in"])
                .arg(app.data_dir().join(format!("ca/{ca}.crt.pem"))),
        );
        assert!(
            aia.contains("OCSP - URI:http://127.0.0.1:8080/ocsp/root"),
            "{ca}: {aia}"
        );
        let output = openssl_root_ocsp(&app, &work, ca, true);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "{ca}: {stdout}{stderr}");
        assert!(stderr.contains("Response verify OK"), "{ca}: {stderr}");
        assert!(
            stdout.contains(&format!("{ca}.crt.pem: good")),
            "{ca}: {stdout}"
        );
    }
    // A serial the root never issued to this CA is unknown, still signed for the root.
    let root = app.root_der();
    let request = build_request(&root, &[0x0b; 12], None).unwrap();
    let (status, response) = post(&app, "root", request).await;
    assert_eq!(status, 200);
    assert_eq!(
        check_response(&response, &root, &[0x0b; 12], None, now()),
        Ok(Status::Unknown)
    );
    lint_responses(&work, &["basic.resp.der", "station.resp.der"]);
}

#[tokio::test]
async fn ocsp_at_a_responder_that_is_not_ours_is_404_and_names_the_known_ones() {
    let app = TestApp::spawn().await;
    let basic = ca_der(&app, "basic");
    let request = build_request(&basic, &[7; 8], None).unwrap();
    for responder in ["nonexistent", "station", "tls"] {
        let (status, body) = post(&app, responder, request.clone()).await;
        assert_eq!(status, 404, "POST /ocsp/{responder}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("root, basic, substantial, high"), "{text}");
    }
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(&request)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let response = app
        .plain_client()
        .get(format!("http://{}/ocsp/nonexistent/{encoded}", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "GET /ocsp/nonexistent");
    assert_eq!(
        response
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("ocsp.unknown_responder")
    );
}

/// The CertID decides: a request sent to another of our responders is answered for its issuer,
/// signed by that issuer's responder (exactly what the right URL answers); an issuer that is not
/// ours is unauthorized at every responder.
#[tokio::test]
async fn ocsp_is_answered_for_the_issuer_the_certid_names_whatever_the_url() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000021").await;
    let dir = app.dir.path().join("IP20000021");
    let enrolled = app.enroll("IP20000021", &token, &dir).await.unwrap();
    let serial = hex::decode(&enrolled.certificate_serial).unwrap();
    let (basic, root) = (ca_der(&app, "basic"), app.root_der());

    for responder in ["basic", "root", "high"] {
        let request = build_request(&basic, &serial, None).unwrap();
        let (_, response) = post(&app, responder, request).await;
        assert_eq!(
            check_response(&response, &basic, &serial, None, now()),
            Ok(Status::Good),
            "a Basic device at /ocsp/{responder}"
        );
        let basic_serial = serial_of(&basic);
        let request = build_request(&root, &basic_serial, None).unwrap();
        let (_, response) = post(&app, responder, request).await;
        assert_eq!(
            check_response(&response, &root, &basic_serial, None, now()),
            Ok(Status::Good),
            "the Basic CA certificate at /ocsp/{responder}"
        );
        // Answered for the root, the response does not pass as the Basic CA's.
        assert!(check_response(&response, &basic, &basic_serial, None, now()).is_err());
    }
    let stranger = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap())
        .unwrap();
    for responder in ["basic", "root"] {
        let request = build_request(stranger.der(), &serial, None).unwrap();
        assert_eq!(
            post(&app, responder, request).await,
            (200, UNAUTHORIZED.to_vec()),
            "another CA's certificate at /ocsp/{responder}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_root_pre_signed_responses_are_served_as_signed_and_lint_clean() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn_under_offline_root().await;
    let signed = app.dir.path().join("offline-root/signed");
    let work = work_dir(&app, "presigned");
    for ca in ["basic", "substantial", "high", "station"] {
        // openssl's default nonce cannot be echoed by a fixed response: it warns, still verifies.
        let output = openssl_root_ocsp(&app, &work, ca, true);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "{ca}: {stdout}{stderr}");
        assert!(stderr.contains("Response verify OK"), "{ca}: {stderr}");
        assert!(
            stdout.contains(&format!("{ca}.crt.pem: good")),
            "{ca}: {stdout}"
        );
        assert_eq!(
            std::fs::read(work.join(format!("{ca}.resp.der"))).unwrap(),
            std::fs::read(signed.join(format!("{ca}.ocsp.der"))).unwrap(),
            "{ca}: served byte for byte as the root signed it"
        );
    }
    // Without a pre-signed response for the CertID the answer is unauthorized (RFC 5019).
    let root = app.root_der();
    let request = build_request(&root, &[0x0c; 12], None).unwrap();
    assert_eq!(
        post(&app, "root", request).await,
        (200, UNAUTHORIZED.to_vec())
    );
    // Device certificates are still answered online by the issuing CA's responder.
    let basic = ca_der(&app, "basic");
    let request = build_request(&basic, &[0x0d; 12], None).unwrap();
    let (_, response) = post(&app, "basic", request).await;
    assert_eq!(
        check_response(&response, &basic, &[0x0d; 12], None, now()),
        Ok(Status::Unknown)
    );
    lint_responses(&work, &["basic.resp.der", "high.resp.der"]);
}

/// Renewal at the ceremony: the offline root revokes the High CA in its `openssl ca` database and
/// re-runs the OCSP script; `ca install-root-ocsp` refuses a response for the wrong certificate
/// (changing nothing), installs the renewed ones, and after a restart the root answers revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_root_ocsp_is_checked_installed_and_served_after_restart() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let mut app = TestApp::spawn_under_offline_root().await;
    let (data, offline) = (app.data_dir(), app.dir.path().join("offline-root"));
    let csr = data.join("csr");
    let (root_crt, root_key) = (offline.join("root.crt.pem"), offline.join("root.key"));
    let renewed = offline.join("renewed");
    std::fs::create_dir(&renewed).unwrap();
    for ca in ["basic", "high"] {
        std::fs::copy(
            offline.join(format!("signed/{ca}.crt.pem")),
            renewed.join(format!("{ca}.crt.pem")),
        )
        .unwrap();
    }
    run_tool(
        Command::new("openssl")
            .current_dir(&csr)
            .args(["ca", "-config", "openssl.cnf", "-revoke"])
            .arg(renewed.join("high.crt.pem"))
            .arg("-keyfile")
            .arg(&root_key)
            .arg("-cert")
            .arg(&root_crt)
            .args(["-crl_reason", "cACompromise"]),
    );
    run_tool(
        Command::new("sh")
            .current_dir(&csr)
            .arg("root-ocsp-with-openssl.sh")
            .arg(&root_crt)
            .arg(&root_key)
            .arg(&renewed)
            .arg("90"),
    );

    let wrong = offline.join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    std::fs::copy(renewed.join("basic.ocsp.der"), wrong.join("high.ocsp.der")).unwrap();
    let before = iomt_tests::custody::snapshot(&data.join("ca"));
    let error = app
        .cli(&["ca", "install-root-ocsp", "--from", wrong.to_str().unwrap()])
        .await
        .unwrap_err();
    assert!(
        error.contains("high.ocsp.der") && error.contains("nothing was installed"),
        "{error}"
    );
    assert_eq!(iomt_tests::custody::snapshot(&data.join("ca")), before);

    let out = app
        .cli(&[
            "ca",
            "install-root-ocsp",
            "--from",
            renewed.to_str().unwrap(),
        ])
        .await
        .unwrap();
    assert!(out.contains("root OCSP response for basic: Good"), "{out}");
    assert!(
        out.contains("root OCSP response for high: Revoked"),
        "{out}"
    );
    app.stop_server().await;
    app.restart().await;
    let (root, high) = (app.root_der(), ca_der(&app, "high"));
    let high_serial = serial_of(&high);
    let (_, response) = post(
        &app,
        "root",
        build_request(&root, &high_serial, None).unwrap(),
    )
    .await;
    assert!(
        matches!(
            check_response(&response, &root, &high_serial, None, now()),
            Ok(Status::Revoked {
                reason: Some(2),
                ..
            })
        ),
        "the High CA is revoked (cACompromise) by the renewed response"
    );
}
