//! `enroll-client verify`: chain, level conformance and revocation in one verdict, following the
//! certificate's own OCSP and CRL URLs.

use enroll_client::verify::{RevocationCheck, Verdict, VerifyRequest, verify};
use iomt_core::policy::Level;
use iomt_tests::TestApp;

async fn device(app: &TestApp, serial: &str) -> (std::path::PathBuf, String) {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    let enrolled = app.enroll(serial, &token, &dir).await.expect("enroll");
    (dir, enrolled.certificate_serial)
}

fn request(app: &TestApp, dir: &std::path::Path, revocation: RevocationCheck) -> VerifyRequest {
    VerifyRequest {
        ca_cert: app.root_pem(),
        cert: dir.join("cert.pem"),
        chain: Some(dir.join("chain.pem")),
        require_level: None,
        revocation,
    }
}

#[tokio::test]
async fn good_device_is_trusted_by_ocsp_and_by_crl() {
    let app = TestApp::spawn_published().await;
    let (dir, _) = device(&app, "IP20000001").await;
    for check in [
        RevocationCheck::Auto,
        RevocationCheck::Ocsp,
        RevocationCheck::Crl,
    ] {
        let report = verify(&request(&app, &dir, check)).await.unwrap();
        assert_eq!(
            report.verdict,
            Verdict::Trusted,
            "{check:?}: {:?}",
            report.lines
        );
        let text: Vec<String> = report
            .lines
            .iter()
            .map(|(l, t)| format!("{l} {t}"))
            .collect();
        assert!(
            text.iter()
                .any(|l| l.starts_with("level basic (1.3.6.1.4.1.32473.7.1.1)")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|l| l.starts_with("profile conforms")),
            "{text:?}"
        );
    }
}

#[tokio::test]
async fn revoked_device_is_reported_revoked_with_its_reason() {
    let app = TestApp::spawn_published().await;
    let (dir, serial) = device(&app, "IP20000002").await;
    app.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"])
        .await
        .unwrap();
    for check in [RevocationCheck::Ocsp, RevocationCheck::Crl] {
        let report = verify(&request(&app, &dir, check)).await.unwrap();
        match &report.verdict {
            Verdict::Revoked(text) => assert!(text.contains("keyCompromise"), "{text}"),
            other => panic!("{check:?}: expected revoked, got {other:?}"),
        }
        assert_eq!(report.verdict.exit_code(), 22);
    }
}

#[tokio::test]
async fn wrong_level_other_ca_and_unreachable_revocation_are_distinct_verdicts() {
    let app = TestApp::spawn_published().await;
    let (dir, _) = device(&app, "IP20000003").await;
    let mut high_only = request(&app, &dir, RevocationCheck::None);
    high_only.require_level = Some(Level::High);
    let report = verify(&high_only).await.unwrap();
    assert!(
        matches!(report.verdict, Verdict::NonConformant(ref why) if why.contains("high is required")),
        "{:?}",
        report.verdict
    );
    assert_eq!(report.verdict.exit_code(), 21);

    let other = TestApp::spawn().await;
    let mut foreign = request(&app, &dir, RevocationCheck::None);
    foreign.ca_cert = other.root_pem();
    let report = verify(&foreign).await.unwrap();
    assert!(
        matches!(report.verdict, Verdict::Untrusted(_)),
        "{:?}",
        report.verdict
    );
    assert_eq!(report.verdict.exit_code(), 20);

    let mut app = app;
    app.stop_server().await;
    let report = verify(&request(&app, &dir, RevocationCheck::Auto))
        .await
        .unwrap();
    assert!(
        matches!(report.verdict, Verdict::RevocationUnknown(_)),
        "{:?}",
        report.verdict
    );
    assert_eq!(report.verdict.exit_code(), 23);
}
