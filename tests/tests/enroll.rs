//! Token enrollment end to end: real server, real client, real TLS, independent verifiers.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use iomt_tests::{MONITOR, PUMP, TestApp, read_pem_certs, require_tool, run_tool, webpki_verify};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

#[tokio::test]
async fn enroll_with_token_writes_a_verified_credential() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let out = app.dir.path().join("device");

    let enrolled = app
        .enroll("IP20000001", &token, &out)
        .await
        .expect("enroll");

    let mode = std::fs::metadata(out.join("key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key.pem must be private");
    let leaf = read_pem_certs(&out.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&out.join("chain.pem"));
    assert_eq!(
        chain.len(),
        2,
        "chain.pem holds the issuing CA and the root"
    );
    assert_eq!(chain[1], app.root_der().to_vec());

    let (_, cert) = X509Certificate::from_der(&leaf).expect("x509-parser parses the certificate");
    let subject = cert.subject().to_string();
    assert_eq!(
        subject,
        "C=US, O=Example Medical Devices, Inc., CN=IP200-IP20000001, serialNumber=IP20000001"
    );
    assert_eq!(
        cert.raw_serial().len(),
        16,
        "issuance time and 72 random bits"
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        lifetime <= 365 * 86_400,
        "product narrows validity to 365 days"
    );
    let mut saw_hmn = false;
    let mut saw_uri = false;
    let mut policies = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                assert!(!ext.critical);
                for name in &san.general_names {
                    match name {
                        GeneralName::OtherName(oid, _) => {
                            saw_hmn |= oid.to_id_string() == "1.3.6.1.5.5.7.8.4"
                        }
                        GeneralName::URI(uri) => {
                            assert_eq!(
                                *uri,
                                "https://id.example-medical.example/01/00850000000017/21/IP20000001"
                            );
                            saw_uri = true;
                        }
                        other => panic!("unexpected SAN entry {other:?}"),
                    }
                }
            }
            ParsedExtension::CertificatePolicies(cp) => {
                policies = cp.iter().map(|p| p.policy_id.to_id_string()).collect();
            }
            _ => {}
        }
    }
    assert!(
        saw_hmn && saw_uri,
        "SAN carries the HardwareModuleName and the product URI"
    );
    assert_eq!(
        policies,
        ["1.3.6.1.4.1.32473.7.1.1", "1.3.6.1.4.1.32473.98.1.1"]
    );
    webpki_verify(&leaf, &chain[0], &app.root_der());

    // The registry holds exactly this certificate, and the token is spent.
    let records = app.certificates("IP20000001").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].der, leaf);
    assert_eq!(
        records[0].serial,
        enrolled.certificate_serial.to_lowercase()
    );
    assert!(app.token_used(&token).await);
    let audit = app.authority.store().audit_events().await.unwrap();
    assert!(audit.iter().any(|e| e.event.action == "certificate.issued"
        && e.event.object == format!("certificate:{}", records[0].serial)));

    if require_tool("openssl", &["version"]) {
        run_tool(
            Command::new("openssl")
                .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
                .arg(app.root_pem())
                .arg("-untrusted")
                .arg(out.join("chain.pem"))
                .arg(out.join("cert.pem")),
        );
        run_tool(
            Command::new("openssl")
                .args([
                    "verify",
                    "-purpose",
                    "sslclient",
                    "-policy_check",
                    "-explicit_policy",
                    "-policy",
                    "1.3.6.1.4.1.32473.7.1.1",
                    "-CAfile",
                ])
                .arg(app.root_pem())
                .arg("-untrusted")
                .arg(out.join("chain.pem"))
                .arg(out.join("cert.pem")),
        );
    }
    app.stop().await;
}

/// The serial begins with the issuance time in milliseconds (so the registry's serial index
/// grows at its end) and carries the random bits the policy asks for: 72 under the shipped
/// 64-bit minimum, a longer all-random serial when a policy asks for 128.
#[tokio::test]
async fn serials_carry_the_issuance_time_and_the_policys_random_bits() {
    let serial_of = |dir: &std::path::Path| {
        let leaf = read_pem_certs(&dir.join("cert.pem")).remove(0);
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        cert.raw_serial().to_vec()
    };
    let millis = || time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;

    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let out = app.dir.path().join("device");
    let before = millis();
    app.enroll("IP20000001", &token, &out).await.unwrap();
    let after = millis();
    let serial = serial_of(&out);
    assert_eq!(serial.len(), 16);
    assert_eq!(serial[0], 0x40);
    let mut stamp = [0u8; 16];
    stamp[10..].copy_from_slice(&serial[1..7]);
    let issued = i128::from_be_bytes(stamp);
    assert!(
        (before..=after).contains(&issued),
        "{before} <= {issued} <= {after}"
    );

    let app = TestApp::spawn_with_policies(|_, text| {
        text.replace("min_random_bits = 64", "min_random_bits = 128")
    })
    .await;
    let token = app.pump_with_token("IP20000001").await;
    let out = app.dir.path().join("device");
    app.enroll("IP20000001", &token, &out).await.unwrap();
    let serial = serial_of(&out);
    assert_eq!(serial.len(), 17, "1 fixed octet and 16 random ones");
}

#[tokio::test]
async fn enroll_with_used_token_is_rejected() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000002").await;
    app.enroll("IP20000002", &token, &app.dir.path().join("a"))
        .await
        .expect("first enroll");
    let err = app
        .enroll("IP20000002", &token, &app.dir.path().join("b"))
        .await
        .expect_err("second");
    match err {
        enroll_client::error::ClientError::Unauthorized { code, .. } => {
            assert_eq!(code, "auth.token_used")
        }
        other => panic!("expected 401, got {other}"),
    }
    assert_eq!(err_exit_code_for_unauthorized(), 5);
    assert!(
        !app.dir.path().join("b").join("key.pem").exists(),
        "nothing written on failure"
    );
    assert_eq!(app.certificates("IP20000002").await.len(), 1);
}

fn err_exit_code_for_unauthorized() -> u8 {
    enroll_client::error::ClientError::Unauthorized {
        code: String::new(),
        message: String::new(),
    }
    .exit_code()
}

#[tokio::test]
async fn station_only_product_refuses_tokens() {
    let app = TestApp::spawn().await;
    app.register("PM70000001", MONITOR).await;
    let err = app
        .cli(&["token", "create", "--serial", "PM70000001"])
        .await
        .expect_err("refused");
    assert!(err.contains("does not accept one-time tokens"), "{err}");
}

#[tokio::test]
async fn cacerts_and_csrattrs_answer_per_label() {
    let app = TestApp::spawn().await;
    let client = app.http_client();
    let base = format!("{}/.well-known/est", app.server_url());
    let body = client
        .get(format!("{base}/{PUMP}/cacerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(
        body.headers()["content-type"],
        "application/pkcs7-mime; smime-type=certs-only"
    );
    let der = base64_body(body).await;
    let certs = iomt_core::wire::parse_certs_only(&der).expect("certs-only");
    assert_eq!(certs.len(), 2, "root and the Basic issuing CA");

    let all = base64_body(client.get(format!("{base}/cacerts")).send().await.unwrap()).await;
    assert_eq!(
        iomt_core::wire::parse_certs_only(&all).unwrap().len(),
        5,
        "root, the three issuing CAs and the station CA"
    );

    let attrs = base64_body(
        client
            .get(format!("{base}/{PUMP}/csrattrs"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let requirements = iomt_core::wire::decode_csrattrs(&attrs).expect("csrattrs");
    assert!(
        requirements
            .oids
            .contains(&iomt_core::oids::AT_SERIAL_NUMBER)
    );
    let curves = &requirements.attributes[0].1;
    assert!(
        curves.contains(&iomt_core::oids::SECP256R1)
            && curves.contains(&iomt_core::oids::SECP384R1)
    );
    assert!(
        !requirements.oids.contains(&iomt_core::oids::RSA_ENCRYPTION),
        "the pump narrows keys to ECDSA"
    );

    let unknown = client
        .get(format!("{base}/no-such-product/cacerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["x-error-code"], "est.unknown_label");
}

#[tokio::test]
async fn ca_certificates_are_served_for_aia() {
    let app = TestApp::spawn().await;
    let response = app
        .plain_client()
        .get(format!("http://{}/ca/root.cer", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pkix-cert");
    assert_eq!(
        response.bytes().await.unwrap().to_vec(),
        app.root_der().to_vec()
    );
    let basic = app
        .plain_client()
        .get(format!("http://{}/ca/basic.cer", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
}

async fn base64_body(response: reqwest::Response) -> Vec<u8> {
    use base64::Engine;
    let text = response.text().await.unwrap();
    let compact: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("base64")
}

#[tokio::test]
async fn client_reports_an_untrusted_server_as_a_tls_trust_failure() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000004").await;
    let err = enroll_client::enroll::enroll(&enroll_client::enroll::EnrollRequest {
        server: app.server_url(),
        ca_cert: other.root_pem(),
        serial: "IP20000004".into(),
        authorization: enroll_client::enroll::EnrollAuthorization::Token(token.clone()),
        out: app.dir.path().join("x"),
        label: None,
        tpm: None,
    })
    .await
    .expect_err("untrusted");
    assert!(
        matches!(err, enroll_client::error::ClientError::TlsTrust { .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), 4);
    assert!(!app.token_used(&token).await);
}

/// How far the device's certificate's notBefore lies before its issuance.
async fn backdate(app: &TestApp, serial: &str) -> i64 {
    let certificate = app.certificates(serial).await.remove(0);
    certificate.issued_at - certificate.not_before
}

/// notBefore is set back an hour (for devices whose clock runs slow), never further than the
/// product's `max_backdate_seconds`.
#[tokio::test]
async fn not_before_is_backdated_within_the_policy_cap() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000061").await;
    app.enroll("IP20000061", &token, &app.dir.path().join("d1"))
        .await
        .unwrap();
    assert_eq!(backdate(&app, "IP20000061").await, 3_600);

    let narrowed = TestApp::spawn_with_policies(|name, text| {
        if name == "example-infusion-pump.toml" {
            text.replace(
                "max_days = 365",
                "max_days = 365\nmax_backdate_seconds = 60",
            )
        } else {
            text.to_owned()
        }
    })
    .await;
    let token = narrowed.pump_with_token("IP20000062").await;
    narrowed
        .enroll("IP20000062", &token, &narrowed.dir.path().join("d2"))
        .await
        .unwrap();
    assert_eq!(backdate(&narrowed, "IP20000062").await, 60);
}
