//! `certs-example/`: the generator of the example PKI that the README there explains, and its
//! verifier. Every run generates a fresh set into a temporary directory and verifies it, then
//! verifies the committed set; `REGENERATE_CERTS_EXAMPLE=1` also replaces the committed files.
//! No private key is ever written there.

use std::path::{Path, PathBuf};

use ca_server::authority::{CertificateInputs, build_and_sign};
use ca_server::pki::{CaMaterial, PublicUrls};
use ca_server::revocation::Reason;
use iomt_core::identity::{DeviceRecord, Identity};
use iomt_core::lint::{LintInput, lint_device_certificate};
use iomt_core::ocsp::{self, Status};
use iomt_core::policy::{Policy, PolicySet, shipped_sources};
use iomt_tests::{TestApp, read_pem_certs};
use rustls_pki_types::{CertificateDer, UnixTime};

fn pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// The devices of the example set: file, product, serial, GTIN, issuing CA file.
const DEVICES: [(&str, &str, &str, &str, &str); 4] = [
    (
        "device-basic-IP20000001.pem",
        "example-infusion-pump",
        "IP20000001",
        "00850000000017",
        "issuing-basic.pem",
    ),
    (
        "device-basic-revoked-IP20000002.pem",
        "example-infusion-pump",
        "IP20000002",
        "00850000000017",
        "issuing-basic.pem",
    ),
    (
        "device-substantial-PM70000001.pem",
        "example-patient-monitor",
        "PM70000001",
        "00850000000024",
        "issuing-substantial.pem",
    ),
    (
        "device-high-VT90000001.pem",
        "example-ventilator",
        "VT90000001",
        "00850000000031",
        "issuing-high.pem",
    ),
];

async fn generate(out: &Path) {
    let app = TestApp::spawn_published().await;
    let ca_dir = app.data_dir().join("ca");
    for (from, to) in [
        ("root", "root.pem"),
        ("basic", "issuing-basic.pem"),
        ("substantial", "issuing-substantial.pem"),
        ("high", "issuing-high.pem"),
        ("station", "station-ca.pem"),
    ] {
        std::fs::copy(ca_dir.join(format!("{from}.crt.pem")), out.join(to)).unwrap();
    }
    // Basic devices go through the real EST path.
    for (file, _, serial, _, _) in &DEVICES[..2] {
        let token = app.pump_with_token(serial).await;
        let dir = app.dir.path().join(serial);
        app.enroll(serial, &token, &dir).await.unwrap();
        std::fs::copy(dir.join("cert.pem"), out.join(file)).unwrap();
        std::fs::copy(dir.join("chain.pem"), out.join("chain-basic.pem")).unwrap();
    }
    // Substantial and High need a station and key attestation, which this CA does not accept
    // yet; their samples come from the same certificate builder and linter, not through EST.
    let ca = CaMaterial::load(&app.data_dir()).unwrap();
    let policies = app.authority.policies();
    let urls = PublicUrls::new(&format!("http://{}", app.http));
    for (file, product, serial, gtin, _) in &DEVICES[2..] {
        let policy = policies.product(product).unwrap();
        let identity = Identity::build(
            policy,
            &DeviceRecord {
                serial: (*serial).into(),
                gtin: (*gtin).into(),
            },
        )
        .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        use rcgen::PublicKeyData;
        let signed = build_and_sign(&CertificateInputs {
            policy,
            identity: &identity,
            spki_der: &key.subject_public_key_info(),
            sunset: policy.keys.allowed[0].sunset_date(),
            issuer: ca.issuing(policy.policy.level),
            urls: &urls,
            now: time::OffsetDateTime::now_utc(),
        })
        .unwrap();
        std::fs::write(out.join(file), pem(&signed.der)).unwrap();
    }
    // A station certificate (PROFILES §3.4) from the station CA.
    let station_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CountryName,
        rcgen::DnValue::PrintableString("US".try_into().unwrap()),
    );
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "Example Medical Devices, Inc.",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "PLANT01-LINE1-ST01");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    params.serial_number = Some(ca_server::pki::random_serial().unwrap());
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(
        iomt_core::extensions::key_identifier(station_key.public_key_raw()),
    );
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 32],
        iomt_core::extensions::certificate_policies(&["1.3.6.1.4.1.32473.7.4.1".to_owned()])
            .unwrap(),
    )];
    let station = params.signed_by(&station_key, &ca.station.issuer).unwrap();
    std::fs::write(out.join("station-PLANT01-LINE1-ST01.pem"), station.pem()).unwrap();

    // The revoked device, its CRL entry and an OCSP response saying so.
    let revoked = read_pem_certs(&out.join(DEVICES[1].0)).remove(0);
    let (_, parsed) = x509_parser::parse_x509_certificate(&revoked).unwrap();
    let serial_hex: String = parsed
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    app.revocation
        .revoke(
            &serial_hex,
            Reason::parse("keyCompromise").unwrap(),
            "example",
        )
        .await
        .unwrap();
    for ca_name in ["basic", "root"] {
        let crl = app.revocation.current_crl(ca_name).await.unwrap();
        std::fs::write(out.join(format!("{ca_name}.crl")), &crl.der).unwrap();
    }
    let issuer = read_pem_certs(&out.join("issuing-basic.pem")).remove(0);
    let request = ocsp::build_request(&issuer, parsed.raw_serial(), None).unwrap();
    std::fs::write(
        out.join("ocsp-revoked-IP20000002.der"),
        app.revocation.ocsp("basic", &request).await.unwrap(),
    )
    .unwrap();
}

fn verify_set(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read(path).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
            "no private key is ever written"
        );
    }
    let root = CertificateDer::from(read_pem_certs(&dir.join("root.pem")).remove(0));
    let policies = PolicySet::from_sources(shipped_sources()).unwrap();
    for (file, product, serial, gtin, issuer_file) in DEVICES {
        let leaf = read_pem_certs(&dir.join(file)).remove(0);
        let issuer = read_pem_certs(&dir.join(issuer_file)).remove(0);
        let at = verify_chain(&leaf, &issuer, &root, webpki::KeyUsage::client_auth());
        let policy: &Policy = policies.product(product).unwrap();
        let identity = Identity::build(
            policy,
            &DeviceRecord {
                serial: serial.into(),
                gtin: gtin.into(),
            },
        )
        .unwrap();
        let findings = lint_device_certificate(&LintInput {
            certificate_der: &leaf,
            issuer_der: &issuer,
            policy,
            identity: &identity,
            now: time::OffsetDateTime::from_unix_timestamp(at).unwrap(),
            verify_signature: true,
        });
        assert!(findings.is_empty(), "{file}: {findings:?}");
    }
    let station = read_pem_certs(&dir.join("station-PLANT01-LINE1-ST01.pem")).remove(0);
    verify_chain(
        &station,
        &read_pem_certs(&dir.join("station-ca.pem")).remove(0),
        &root,
        webpki::KeyUsage::client_auth(),
    );
    assert_eq!(
        read_pem_certs(&dir.join("chain-basic.pem")),
        vec![
            read_pem_certs(&dir.join("issuing-basic.pem")).remove(0),
            root.to_vec()
        ]
    );

    // The CRL is signed by the Basic issuing CA and lists the revoked device; the OCSP response
    // verifies and says revoked.
    let issuer_der = read_pem_certs(&dir.join("issuing-basic.pem")).remove(0);
    let (_, issuer) = x509_parser::parse_x509_certificate(&issuer_der).unwrap();
    let crl_der = std::fs::read(dir.join("basic.crl")).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
    crl.verify_signature(issuer.public_key())
        .expect("CRL signature");
    let revoked = read_pem_certs(&dir.join(DEVICES[1].0)).remove(0);
    let (_, revoked) = x509_parser::parse_x509_certificate(&revoked).unwrap();
    assert!(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == revoked.raw_serial())
    );
    let root_crl = std::fs::read(dir.join("root.crl")).unwrap();
    let (_, root_crl) = x509_parser::parse_x509_crl(&root_crl).unwrap();
    let (_, root_cert) = x509_parser::parse_x509_certificate(&root).unwrap();
    root_crl
        .verify_signature(root_cert.public_key())
        .expect("root CRL signature");
    let response = std::fs::read(dir.join("ocsp-revoked-IP20000002.der")).unwrap();
    let at = crl.last_update().timestamp() + 60;
    let status = ocsp::check_response(&response, &issuer_der, revoked.raw_serial(), None, at)
        .expect("OCSP response verifies");
    assert!(
        matches!(
            status,
            Status::Revoked {
                reason: Some(1),
                ..
            }
        ),
        "{status:?}"
    );
}

/// Verifies `leaf` → `issuer` → root an hour into the leaf's validity; returns that time.
fn verify_chain(
    leaf: &[u8],
    issuer: &[u8],
    root: &CertificateDer<'_>,
    usage: webpki::KeyUsage,
) -> i64 {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let at = parsed.validity().not_before.timestamp() + 3600;
    let leaf = CertificateDer::from(leaf.to_vec());
    webpki::EndEntityCert::try_from(&leaf)
        .unwrap()
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[webpki::anchor_from_trusted_cert(root).unwrap()],
            &[CertificateDer::from(issuer.to_vec())],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at as u64)),
            usage,
            None,
            None,
        )
        .expect("chain verifies");
    at
}

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../certs-example")
}

#[tokio::test]
async fn generated_example_set_verifies_and_the_committed_one_too() {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path()).await;
    verify_set(fresh.path());
    if std::env::var("REGENERATE_CERTS_EXAMPLE").is_ok_and(|v| v == "1") {
        for old in std::fs::read_dir(example_dir()).unwrap() {
            let path = old.unwrap().path();
            if path.is_file()
                && path
                    .extension()
                    .is_some_and(|e| e == "pem" || e == "crl" || e == "der")
            {
                std::fs::remove_file(path).unwrap();
            }
        }
        for entry in std::fs::read_dir(fresh.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, example_dir().join(path.file_name().unwrap())).unwrap();
        }
    }
    verify_set(&example_dir());
}
