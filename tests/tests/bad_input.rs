//! Every refused enrollment answers a clear 4xx with a stable code, writes nothing and leaves
//! the token unused.

use std::process::Command;

use iomt_tests::{TestApp, p256_csr, require_tool, run_tool};

const PKCS10: &str = "application/pkcs10";

struct Case {
    name: &'static str,
    serial: &'static str,
    /// None: use the device's own token.
    token: Option<String>,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// Asserts the refusal and that the device got no certificate and its token stays usable.
async fn assert_refused(app: &TestApp, case: Case, token: &str) {
    let presented = case.token.clone().unwrap_or_else(|| token.to_owned());
    let (status, code, body) = app
        .post_simpleenroll(case.serial, &presented, case.content_type, case.body)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (case.status, case.code),
        "{}: {body}",
        case.name
    );
    assert!(
        body.starts_with(case.code) && body.lines().count() == 1,
        "{}: one-line body: {body}",
        case.name
    );
    assert!(
        app.certificates("IP20000001").await.is_empty(),
        "{}: nothing issued",
        case.name
    );
    assert!(
        !app.token_used(token).await,
        "{}: token stays unused",
        case.name
    );
}

fn openssl_csr(dir: &std::path::Path, keygen: &[&str], subject: &str) -> Vec<u8> {
    run_tool(Command::new("openssl").current_dir(dir).args(keygen));
    run_tool(Command::new("openssl").current_dir(dir).args([
        "req", "-new", "-key", "k.pem", "-subj", subject, "-outform", "DER", "-out", "r.der",
    ]));
    std::fs::read(dir.join("r.der")).unwrap()
}

#[tokio::test]
async fn malformed_and_unauthorized_requests_change_nothing() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    app.register("IP20000002", iomt_tests::PUMP).await;
    let other_token = app.token("IP20000002").await;
    let (_, good_csr) = p256_csr("IP20000001");
    let good = TestApp::est_body(&good_csr);
    let mut bad_signature = good_csr.clone();
    let last = bad_signature.len() - 5;
    bad_signature[last] ^= 0x55;

    // An expired token, stored directly (the CLI refuses to make one).
    let expired = ca_server::auth::token::generate().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    app.authority
        .store()
        .create_tokens(
            &[ca_server::storage::TokenRecord {
                token_hash: expired.hash.clone(),
                device_serial: "IP20000001".into(),
                created_at: now - 7200,
                expires_at: now - 3600,
                used_at: None,
                revoked_at: None,
            }],
            &[],
        )
        .await
        .unwrap();

    let cases = vec![
        Case {
            name: "not base64",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: b"%%% not base64 %%%".to_vec(),
            status: 400,
            code: "csr.not_base64",
        },
        Case {
            name: "base64 of non-DER",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: b"aGVsbG8gd29ybGQ=".to_vec(),
            status: 400,
            code: "csr.not_der",
        },
        Case {
            name: "bad signature",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&bad_signature),
            status: 400,
            code: "csr.bad_signature",
        },
        Case {
            name: "wrong content type",
            serial: "IP20000001",
            token: None,
            content_type: "application/json",
            body: good.clone(),
            status: 415,
            code: "est.content_type",
        },
        Case {
            name: "body over the limit",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: vec![b'A'; 70 * 1024],
            status: 413,
            code: "est.too_large",
        },
        Case {
            name: "unknown token",
            serial: "IP20000001",
            token: Some("not-a-real-token".into()),
            content_type: PKCS10,
            body: good.clone(),
            status: 401,
            code: "auth.token_unknown",
        },
        Case {
            name: "expired token",
            serial: "IP20000001",
            token: Some(expired.secret.clone()),
            content_type: PKCS10,
            body: good.clone(),
            status: 401,
            code: "auth.token_expired",
        },
        Case {
            name: "other serial's token",
            serial: "IP20000001",
            token: Some(other_token.clone()),
            content_type: PKCS10,
            body: good.clone(),
            status: 401,
            code: "auth.token_wrong_device",
        },
        // No oracle: the token is judged before the device, so an unknown serial with another
        // device's token answers exactly as a registered one would.
        Case {
            name: "unregistered device",
            serial: "IP20009999",
            token: None,
            content_type: PKCS10,
            body: good.clone(),
            status: 401,
            code: "auth.token_wrong_device",
        },
    ];
    for case in cases {
        assert_refused(&app, case, &token).await;
    }
    assert!(!app.token_used(&other_token).await);

    // No credentials at all: 401 with a challenge.
    let response = app
        .http_client()
        .post(format!("{}/.well-known/est/simpleenroll", app.server_url()))
        .header("content-type", PKCS10)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));

    // After all that, the untouched token still enrolls.
    let (status, _, body) = app
        .post_simpleenroll("IP20000001", &token, PKCS10, good)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn csr_that_disagrees_with_policy_or_record_changes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;

    // Subject: a CN that is not the record's.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "IP200-IP20000777");
    let wrong_cn = params.serialize_request(&key).unwrap().der().to_vec();
    // SAN: a URI that is not the record's.
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "https://evil.example/01/1/21/IP20000001"
            .try_into()
            .unwrap(),
    )];
    let wrong_uri = params.serialize_request(&key).unwrap().der().to_vec();
    // SAN: a DNS name, forbidden in device certificates.
    let mut params =
        rcgen::CertificateParams::new(vec!["pump.hospital.example".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let dns = params.serialize_request(&key).unwrap().der().to_vec();

    let mut cases = vec![
        Case {
            name: "subject mismatch",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&wrong_cn),
            status: 403,
            code: "csr.subject_mismatch",
        },
        Case {
            name: "SAN mismatch",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&wrong_uri),
            status: 403,
            code: "csr.san_mismatch",
        },
        Case {
            name: "DNS SAN",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&dns),
            status: 403,
            code: "csr.san_forbidden",
        },
    ];
    if require_tool("openssl", &["version"]) {
        let dir = app.dir.path().join("keys");
        std::fs::create_dir(&dir).unwrap();
        let rsa1024 = openssl_csr(
            &dir,
            &["genrsa", "-out", "k.pem", "1024"],
            "/serialNumber=IP20000001",
        );
        let p521 = openssl_csr(
            &dir,
            &[
                "ecparam",
                "-name",
                "secp521r1",
                "-genkey",
                "-noout",
                "-out",
                "k.pem",
            ],
            "/serialNumber=IP20000001",
        );
        let rsa2048 = openssl_csr(
            &dir,
            &["genrsa", "-out", "k.pem", "2048"],
            "/serialNumber=IP20000001",
        );
        cases.push(Case {
            name: "RSA-1024",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&rsa1024),
            status: 403,
            code: "policy.key_not_allowed",
        });
        cases.push(Case {
            name: "P-521",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&p521),
            status: 403,
            code: "policy.key_not_allowed",
        });
        // Basic allows RSA-2048, but this product narrows keys to ECDSA.
        cases.push(Case {
            name: "RSA-2048 under an ECDSA-only product",
            serial: "IP20000001",
            token: None,
            content_type: PKCS10,
            body: TestApp::est_body(&rsa2048),
            status: 403,
            code: "policy.key_not_allowed",
        });
    }
    for case in cases {
        assert_refused(&app, case, &token).await;
    }
}

#[tokio::test]
async fn key_certified_for_another_device_is_refused_as_a_clone() {
    let app = TestApp::spawn().await;
    let first = app.pump_with_token("IP20000003").await;
    let token = app.pump_with_token("IP20000001").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr3 = enroll_client::csr::build_csr(&key, "IP20000003").unwrap();
    let (status, _, body) = app
        .post_simpleenroll("IP20000003", &first, PKCS10, TestApp::est_body(&csr3))
        .await;
    assert_eq!(status, 200, "{body}");

    let csr1 = enroll_client::csr::build_csr(&key, "IP20000001").unwrap();
    let case = Case {
        name: "duplicate key",
        serial: "IP20000001",
        token: None,
        content_type: PKCS10,
        body: TestApp::est_body(&csr1),
        status: 403,
        code: "csr.duplicate_key",
    };
    assert_refused(&app, case, &token).await;
}

#[tokio::test]
async fn label_for_another_product_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let (_, csr) = p256_csr("IP20000001");
    let response = app
        .http_client()
        .post(format!(
            "{}/.well-known/est/example-patient-monitor/simpleenroll",
            app.server_url()
        ))
        .basic_auth("IP20000001", Some(&token))
        .header("content-type", PKCS10)
        .body(TestApp::est_body(&csr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-error-code"], "est.label_mismatch");
    assert!(!app.token_used(&token).await);
}
