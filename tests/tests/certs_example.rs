//! `certs-example/`: the generator of the example PKI that the README there explains, and its
//! verifier. Every run generates a fresh set into a temporary directory and verifies it, then
//! verifies the committed set; `REGENERATE_CERTS_EXAMPLE=1` also replaces the committed files and
//! moves the README's `-attime` to the new set. No private key is ever written there, and every
//! URL names the placeholder host [`PUBLIC_URL`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ca_server::authority::{CertificateInputs, build_and_sign};
use ca_server::pki::{CaMaterial, PublicUrls};
use ca_server::revocation::Reason;
use enroll_client::provision::{ProvisionRequest, provision};
use iomt_core::identity::{DeviceRecord, Identity, TpmResidency};
use iomt_core::lint::{LintInput, lint_device_certificate};
use iomt_core::ocsp::{self, Status};
use iomt_core::policy::{Policy, PolicySet, shipped_sources};
use iomt_tests::{TestApp, read_pem_certs};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

/// The public base URL of the example CA: every CRL, OCSP and caIssuers URL in the set starts
/// with it. `.invalid` is reserved by RFC 6761 §6.4 and never resolves, so nobody fetches from a
/// host that happens to exist.
const PUBLIC_URL: &str = "http://ca.example.invalid";

/// The example station: its name is also its certificate's CN.
const STATION: &str = "PLANT01-LINE1-ST01";

/// The fictional TPM of the High sample: what the CA derives from an EK certificate it verified
/// (hwSerialNum `<manufacturer>:<EK AKI>:<EK serial>`, the EK certificate's SHA-256).
fn example_tpm() -> TpmResidency {
    TpmResidency {
        hw_serial: "00001014:5E4F3A2B1C0D9E8F7A6B5C4D3E2F1A0B9C8D7E6F:0A1B2C3D4E5F".to_owned(),
        // Fictional: the SHA-256 of no real EK certificate.
        ek_certificate_sha256: hex::decode(
            "9f1c2b7a4e6d8c0b3a5f7e9d1c2b4a6f8e0d2c4b6a8f0e2d4c6b8a0f2e4d6c8b",
        )
        .unwrap(),
    }
}

/// What a sample's certificate must say: the registration record's identity, and for the High
/// sample that of a key verified to be in [`example_tpm`] (docs/PROFILE.md §2.7).
fn example_identity(policy: &Policy, serial: &str, gtin: &str) -> Identity {
    let identity = Identity::build(
        policy,
        &DeviceRecord {
            serial: serial.into(),
            gtin: gtin.into(),
        },
    )
    .unwrap();
    if policy.policy.level == iomt_core::policy::Level::High {
        identity.with_tpm_residency(policy, &example_tpm())
    } else {
        identity
    }
}

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

/// An evaluation CA whose certificates point at [`PUBLIC_URL`], served on ephemeral ports.
async fn spawn_example_ca() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ca");
    TestApp::cli_in(
        data.to_str().unwrap(),
        &[
            "init",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--public-url",
            PUBLIC_URL,
        ],
    )
    .await
    .expect("init");
    TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await
}

async fn generate(out: &Path) {
    let app = spawn_example_ca().await;
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
    // A station enrolls its own key with a one-time token, then provisions the Substantial
    // device through EST with its certificate (docs/PROFILE.md §3.4, §6.3).
    let token = app
        .cli(&[
            "station",
            "create",
            "--name",
            STATION,
            "--products",
            DEVICES[2].1,
        ])
        .await
        .expect("station create");
    let station_dir = app.dir.path().join("station");
    app.enroll(STATION, token.trim(), &station_dir)
        .await
        .unwrap();
    std::fs::copy(
        station_dir.join("cert.pem"),
        out.join(format!("station-{STATION}.pem")),
    )
    .unwrap();
    let (file, product, serial, gtin, _) = DEVICES[2];
    app.cli(&[
        "device",
        "register",
        "--serial",
        serial,
        "--product",
        product,
        "--gtin",
        gtin,
    ])
    .await
    .expect("register");
    let serials = app.dir.path().join("serials.txt");
    std::fs::write(&serials, format!("{serial}\n")).unwrap();
    let line_out = app.dir.path().join("line-out");
    let report = provision(&ProvisionRequest {
        server: app.est_server(),
        station: station_dir,
        serials,
        out: line_out.clone(),
        concurrency: 1,
        pkcs12_password: None,
        progress: false,
    })
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    std::fs::copy(line_out.join(serial).join("cert.pem"), out.join(file)).unwrap();

    // High needs a TPM whose evidence the CA verifies (swtpm in tests/tests/tpm_enroll.rs); its
    // sample comes from the same certificate builder and linter, with the identity the CA gives
    // a verified TPM key, so the set needs no TPM to regenerate.
    let ca = CaMaterial::load(&app.data_dir()).unwrap();
    let policies = app.authority.policies();
    let urls = PublicUrls::new(PUBLIC_URL);
    for (file, product, serial, gtin, _) in &DEVICES[3..] {
        let policy = policies.product(product).unwrap();
        let identity = example_identity(policy, serial, gtin);
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
            &serial_hex.parse().unwrap(),
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
        let text = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains("PRIVATE KEY"),
            "no private key is ever written"
        );
        for host in ["127.0.0.1", "localhost"] {
            assert!(
                !text.contains(host),
                "{}: names {host}; every URL uses {PUBLIC_URL}",
                path.display()
            );
        }
        if path.extension().is_some_and(|e| e == "pem") {
            for der in read_pem_certs(&path) {
                assert_placeholder_urls(&path, &der);
            }
        }
    }
    let root = CertificateDer::from(read_pem_certs(&dir.join("root.pem")).remove(0));
    let policies = PolicySet::from_sources(shipped_sources()).unwrap();
    for (file, product, serial, gtin, issuer_file) in DEVICES {
        let leaf = read_pem_certs(&dir.join(file)).remove(0);
        let issuer = read_pem_certs(&dir.join(issuer_file)).remove(0);
        let at = verify_chain(&leaf, &issuer, &root, webpki::KeyUsage::client_auth());
        let policy: &Policy = policies.product(product).unwrap();
        let identity = example_identity(policy, serial, gtin);
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
    let at = verification_time(dir);
    for crl in [&crl, &root_crl] {
        let next = crl.next_update().map_or(i64::MAX, |t| t.timestamp());
        assert!(
            (crl.last_update().timestamp()..next).contains(&at),
            "both CRLs are current at the verification time"
        );
    }
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

/// Every URL in the certificate's CRL distribution points and AIA starts with [`PUBLIC_URL`]/,
/// and the certificate is valid at the set's [`verification_time`] (the README's `-attime`).
fn assert_placeholder_urls(path: &Path, der: &[u8]) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let mut uris = Vec::new();
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        uris.extend(names.iter().filter_map(uri));
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                uris.extend(
                    aia.accessdescs
                        .iter()
                        .filter_map(|d| uri(&d.access_location)),
                );
            }
            _ => {}
        }
    }
    for uri in uris {
        assert!(
            uri.starts_with(&format!("{PUBLIC_URL}/")),
            "{}: {uri} is not under {PUBLIC_URL}",
            path.display()
        );
    }
    let dir = path.parent().unwrap();
    let at = verification_time(dir);
    let validity = cert.validity();
    assert!(
        (validity.not_before.timestamp()..=validity.not_after.timestamp()).contains(&at),
        "{}: not valid at the verification time {at}",
        path.display()
    );
}

fn uri<'a>(name: &GeneralName<'a>) -> Option<&'a str> {
    match name {
        GeneralName::URI(uri) => Some(uri),
        _ => None,
    }
}

/// The moment the set is verified at, by this test and by the README's commands (`-attime`): a
/// minute after the Basic CRL was signed, the last thing made but the OCSP answer, when every
/// certificate, both CRLs and the OCSP answer (valid an hour) are current.
fn verification_time(dir: &Path) -> i64 {
    let crl = std::fs::read(dir.join("basic.crl")).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    crl.last_update().timestamp() + 60
}

/// The one `-attime` value every command of the README uses.
fn readme_attime(readme: &str) -> i64 {
    let values: BTreeSet<&str> = readme
        .split("-attime ")
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
        .collect();
    assert_eq!(
        values.len(),
        1,
        "certs-example/README.md uses one -attime: {values:?}"
    );
    values.first().unwrap().parse().unwrap()
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
        // The README verifies the set at a fixed time: move it (every occurrence, also in
        // `date -d @...`) to the new set.
        let readme = example_dir().join("README.md");
        let text = std::fs::read_to_string(&readme).unwrap();
        let old = readme_attime(&text).to_string();
        let new = verification_time(&example_dir()).to_string();
        std::fs::write(&readme, text.replace(&old, &new)).unwrap();
    }
    verify_set(&example_dir());
    let readme = std::fs::read_to_string(example_dir().join("README.md")).unwrap();
    assert_eq!(
        readme_attime(&readme),
        verification_time(&example_dir()),
        "certs-example/README.md verifies the committed set at its verification time \
         (REGENERATE_CERTS_EXAMPLE=1 moves it)"
    );
}
