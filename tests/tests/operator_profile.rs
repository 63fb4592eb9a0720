//! Operator identities are operators: `operator add` accepts only certificates of the operator
//! profile (operator policy OID, no device identity, not issued by a device issuing CA or the
//! station CA), and EST refuses an operator certificate presented as the TLS client
//! certificate.

use std::path::{Path, PathBuf};

use enroll_client::keystore::Credential;
use iomt_core::oids::OPERATOR_POLICY;
use iomt_tests::{PUMP, TestApp, p256_csr};

const PKCS10: &str = "application/pkcs10";

/// How a test operator certificate deviates from the operator profile.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Operator,
    NoPolicy,
    DeviceSerialNumber,
}

/// A client certificate signed by the root (a PKI officer's ceremony), in `shape`.
fn root_signed(app: &TestApp, name: &str, shape: Shape) -> Credential {
    let ca = ca_server::pki::CaMaterial::load(&app.data_dir()).unwrap();
    let issuer = &ca.root.as_ref().expect("online root").issuer;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("operator {name}"));
    if shape == Shape::DeviceSerialNumber {
        params
            .distinguished_name
            .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "IP20000001");
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(ca_server::pki::random_serial().unwrap());
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    if shape != Shape::NoPolicy {
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 32],
            iomt_core::extensions::certificate_policies(&[OPERATOR_POLICY.to_owned()]).unwrap(),
        )];
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    Credential {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        chain_pem: String::new(),
    }
}

/// `operator add --name NAME --role admin --cert FILE`.
async fn operator_add(app: &TestApp, name: &str, cert: &Path) -> Result<String, String> {
    app.cli(&[
        "operator",
        "add",
        "--name",
        name,
        "--role",
        "admin",
        "--cert",
        cert.to_str().unwrap(),
    ])
    .await
}

/// cert.pem followed by chain.pem: what an operator would hand over.
fn full_chain(dir: &Path, name: &str) -> PathBuf {
    let chain = std::fs::read_to_string(dir.join("cert.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("chain.pem")).unwrap();
    let file = dir.with_extension("chain.pem");
    std::fs::write(&file, chain).unwrap();
    assert!(file.exists(), "{name}");
    file
}

fn write_credential(app: &TestApp, name: &str, credential: &Credential) -> PathBuf {
    let file = app.dir.path().join(format!("{name}.pem"));
    std::fs::write(&file, &credential.cert_pem).unwrap();
    file
}

#[tokio::test]
async fn operator_add_with_device_or_station_certificate_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let device_dir = app.dir.path().join("device");
    app.enroll("IP20000001", &token, &device_dir).await.unwrap();
    let err = operator_add(&app, "device", &full_chain(&device_dir, "device"))
        .await
        .unwrap_err();
    assert!(
        err.contains("not an operator certificate")
            && err.contains("issued by the `basic` device issuing CA"),
        "{err}"
    );

    let station_token = app
        .cli(&["station", "create", "--name", "line1", "--products", PUMP])
        .await
        .unwrap();
    let station_dir = app.dir.path().join("station");
    app.enroll("line1", station_token.trim(), &station_dir)
        .await
        .unwrap();
    let err = operator_add(&app, "station", &full_chain(&station_dir, "station"))
        .await
        .unwrap_err();
    assert!(
        err.contains("not an operator certificate") && err.contains("issued by the station CA"),
        "{err}"
    );

    let plain = root_signed(&app, "plain", Shape::NoPolicy);
    let err = operator_add(&app, "plain", &write_credential(&app, "plain", &plain))
        .await
        .unwrap_err();
    assert!(
        err.contains(&format!("operator certificate policy {OPERATOR_POLICY}")),
        "{err}"
    );
    let serial = root_signed(&app, "serial", Shape::DeviceSerialNumber);
    let err = operator_add(&app, "serial", &write_credential(&app, "serial", &serial))
        .await
        .unwrap_err();
    assert!(err.contains("device serialNumber in the subject"), "{err}");

    let operators = app.cli(&["operator", "list"]).await.unwrap();
    assert!(
        !operators.lines().any(|l| l.starts_with("device")
            || l.starts_with("station")
            || l.starts_with("plain")
            || l.starts_with("serial")),
        "{operators}"
    );
    let good = root_signed(&app, "alice", Shape::Operator);
    let out = operator_add(&app, "alice", &write_credential(&app, "alice", &good))
        .await
        .unwrap();
    assert!(out.contains("operator alice (admin) enrolled"), "{out}");

    // The operator profile is RFC 5280-clean by an independent linter.
    if let Some(linter) = iomt_tests::pkilint::tool("lint_pkix_cert") {
        let file = write_credential(&app, "alice", &good);
        tokio::task::spawn_blocking(move || iomt_tests::pkilint::assert_clean(&linter, &[], &file))
            .await
            .unwrap();
    }
}

async fn post_est(
    client: &reqwest::Client,
    app: &TestApp,
    operation: &str,
    serial: &str,
) -> (u16, String) {
    let (_, csr) = p256_csr(serial);
    let response = client
        .post(format!("{}/.well-known/est/{operation}", app.server_url()))
        .header("content-type", PKCS10)
        .body(TestApp::est_body(&csr))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn operator_certificate_on_est_is_refused() {
    let app = TestApp::spawn().await;
    app.register("IP20000001", PUMP).await;
    let operator = root_signed(&app, "alice", Shape::Operator);
    operator_add(&app, "alice", &write_credential(&app, "alice", &operator))
        .await
        .unwrap();
    let client = app.client_with_identity(&operator);
    for operation in ["simplereenroll", "simpleenroll"] {
        let (status, body) = post_est(&client, &app, operation, "IP20000001").await;
        assert!(
            (400..500).contains(&status)
                && body.contains("operator certificate")
                && body.contains("never EST"),
            "{operation}: {status} {body}"
        );
    }
    assert!(app.certificates("IP20000001").await.is_empty());

    // The same certificate still works where it belongs: the admin API.
    let answer = client
        .get(format!("{}/admin/v1/audit/verify", app.server_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
