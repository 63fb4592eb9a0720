//! `certs-example/`: a generated example PKI (no private keys) that the README there explains
//! field by field. Regenerate with `REGENERATE_CERTS_EXAMPLE=1 cargo test -p iomt-tests --test
//! certs_example`; every run re-verifies the committed files.

use std::path::PathBuf;

use iomt_core::identity::{DeviceRecord, Identity};
use iomt_core::lint::{LintInput, lint_device_certificate};
use iomt_core::policy::{PolicySet, shipped_sources};
use iomt_tests::{PUMP, TestApp, read_pem_certs};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../certs-example")
}

#[tokio::test]
async fn certs_example_chain_verifies_and_lints_clean() {
    let dir = example_dir();
    if std::env::var("REGENERATE_CERTS_EXAMPLE").is_ok_and(|v| v == "1") {
        let app = TestApp::spawn().await;
        let token = app.pump_with_token("IP20000001").await;
        let out = app.dir.path().join("device");
        app.enroll("IP20000001", &token, &out)
            .await
            .expect("enroll");
        for (from, to) in [
            (out.join("cert.pem"), "device-IP20000001.pem"),
            (out.join("chain.pem"), "chain.pem"),
            (app.root_pem(), "root.pem"),
            (app.data_dir().join("ca/basic.crt.pem"), "issuing-basic.pem"),
            (app.data_dir().join("ca/high.crt.pem"), "issuing-high.pem"),
            (app.data_dir().join("ca/station.crt.pem"), "station-ca.pem"),
        ] {
            std::fs::copy(&from, dir.join(to)).expect("copy");
        }
    }

    let leaf = read_pem_certs(&dir.join("device-IP20000001.pem")).remove(0);
    let issuer = read_pem_certs(&dir.join("issuing-basic.pem")).remove(0);
    let root = CertificateDer::from(read_pem_certs(&dir.join("root.pem")).remove(0));
    assert_eq!(
        read_pem_certs(&dir.join("chain.pem")),
        vec![issuer.clone(), root.to_vec()]
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !text.contains("PRIVATE KEY"),
            "no private key is ever committed"
        );
    }

    // Verify at a fixed point inside the validity, so the committed example never "expires".
    let (_, parsed) = X509Certificate::from_der(&leaf).unwrap();
    let at = parsed.validity().not_before.timestamp() + 3600;
    let leaf_der = CertificateDer::from(leaf.clone());
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[webpki::anchor_from_trusted_cert(&root).unwrap()],
            &[CertificateDer::from(issuer.clone())],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at as u64)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("example chain verifies");

    let policies = PolicySet::from_sources(shipped_sources()).unwrap();
    let policy = policies.product(PUMP).unwrap();
    let identity = Identity::build(
        policy,
        &DeviceRecord {
            serial: "IP20000001".into(),
            gtin: "00850000000017".into(),
        },
    )
    .unwrap();
    let findings = lint_device_certificate(&LintInput {
        certificate_der: &leaf,
        issuer_der: &issuer,
        policy,
        identity: &identity,
        now: time::OffsetDateTime::from_unix_timestamp(at).unwrap(),
    });
    assert!(findings.is_empty(), "{findings:?}");
}
