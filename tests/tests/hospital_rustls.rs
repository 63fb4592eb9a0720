//! The hospital-side rustls example (certs-example/hospital-server) against a real CA: enrolled
//! devices are accepted with their identity; revoked, held, expired, other-CA and wrong-level
//! certificates are rejected with the right reason; CRLs come from the distribution points.

use std::path::{Path, PathBuf};

use hospital_example::{Decision, HospitalConfig, HospitalError, HospitalServer, RejectReason};
use iomt_tests::TestApp;
use iomt_tests::hospital::{self, Hospital, device_credential};

const BASIC: &str = "1.3.6.1.4.1.32473.7.1.1";
const HIGH: &str = "1.3.6.1.4.1.32473.7.1.3";

/// The Basic issuing CA's and the root's CRLs, from `app`'s distribution point.
const CRLS: [&str; 2] = ["basic", "root"];

/// A running hospital server trusting `app`'s root with the Basic and root CRLs.
async fn start(app: &TestApp, accept: &[&str]) -> Hospital {
    Hospital::start(app, &CRLS, accept).await
}

fn hospital_config(app: &TestApp, accept: &[&str]) -> (HospitalConfig, tempfile::TempDir) {
    hospital::config(app, &app.root_pem(), &CRLS, accept)
}

/// Connects and expects a rejection for `expected`, seen by the client too.
async fn expect_rejected(hospital: &Hospital, device: &Path, expected: &RejectReason) {
    let (decision, seen) = hospital.connect(Some(device)).await;
    assert_eq!(decision, Decision::Rejected(expected.clone()), "{seen:?}");
    assert!(
        !matches!(seen, Ok((200, _))),
        "the client must not get an accepted answer: {seen:?}"
    );
}

/// Enrolls a pump; returns its credential directory and certificate serial (hex).
async fn enroll(app: &TestApp, serial: &str) -> (PathBuf, String) {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    let enrolled = app.enroll(serial, &token, &dir).await.expect("enroll");
    (dir, enrolled.certificate_serial)
}

fn accepted_serial(decision: &Decision) -> &str {
    match decision {
        Decision::Accepted(identity) => &identity.serial,
        Decision::Rejected(reason) => panic!("expected acceptance, got: rejected: {reason}"),
    }
}

#[tokio::test]
async fn enrolled_device_is_accepted() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000001").await;
    let hospital = start(&app, &[BASIC]).await;
    let (decision, seen) = hospital.connect(Some(&device)).await;
    let Decision::Accepted(identity) = &decision else {
        panic!("expected acceptance: {decision} / {seen:?}");
    };
    assert_eq!(identity.serial, "IP20000001");
    assert_eq!(identity.common_name.as_deref(), Some("IP200-IP20000001"));
    assert_eq!(identity.policy_oid.as_str(), BASIC);
    let uri = identity.product_uri.as_deref().expect("product URI");
    assert!(uri.ends_with("/21/IP20000001"), "{uri}");
    let (status, body) = seen.expect("answer");
    assert_eq!(status, 200);
    assert!(
        body.starts_with("accepted serial=IP20000001 cn=IP200-IP20000001 ")
            && body.trim_end().ends_with(" policy=1.3.6.1.4.1.32473.7.1.1"),
        "{body}"
    );
}

#[tokio::test]
async fn revoked_device_is_rejected_as_revoked() {
    let app = TestApp::spawn().await;
    let (good, _) = enroll(&app, "IP20000001").await;
    let (revoked, revoked_serial) = enroll(&app, "IP20000002").await;
    let hospital = start(&app, &[BASIC]).await;
    let (before, _) = hospital.connect(Some(&revoked)).await;
    assert_eq!(accepted_serial(&before), "IP20000002", "not revoked yet");

    let reason = ca_server::revocation::Reason::parse("keyCompromise").unwrap();
    app.revocation
        .revoke(&revoked_serial.parse().unwrap(), reason, "test")
        .await
        .unwrap();
    hospital.server.refresh_crls().await.expect("refresh");

    expect_rejected(&hospital, &revoked, &RejectReason::Revoked).await;
    let (decision, _) = hospital.connect(Some(&good)).await;
    assert_eq!(accepted_serial(&decision), "IP20000001");
}

#[tokio::test]
async fn held_device_is_rejected_as_revoked() {
    let app = TestApp::spawn().await;
    let (held, held_serial) = enroll(&app, "IP20000003").await;
    let hospital = start(&app, &[BASIC]).await;
    app.cli(&[
        "revoke",
        "--serial",
        &held_serial,
        "--reason",
        "certificateHold",
    ])
    .await
    .unwrap();
    hospital.server.refresh_crls().await.expect("refresh");
    expect_rejected(&hospital, &held, &RejectReason::Revoked).await;

    // Released: the next CRL no longer lists it.
    app.cli(&["release", "--serial", &held_serial])
        .await
        .unwrap();
    hospital.server.refresh_crls().await.expect("refresh");
    let (decision, _) = hospital.connect(Some(&held)).await;
    assert_eq!(accepted_serial(&decision), "IP20000003");
}

#[tokio::test]
async fn device_of_another_ca_is_rejected_as_other_ca() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let (foreign, _) = enroll(&other, "IP20000004").await;
    let hospital = start(&app, &[BASIC]).await;
    expect_rejected(&hospital, &foreign, &RejectReason::OtherCa).await;
}

#[tokio::test]
async fn basic_device_at_a_high_only_server_is_rejected_as_wrong_level() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000005").await;
    let hospital = start(&app, &[HIGH]).await;
    let (decision, seen) = hospital.connect(Some(&device)).await;
    match &decision {
        Decision::Rejected(RejectReason::WrongLevel {
            presented,
            accepted,
        }) => {
            assert!(presented.iter().any(|oid| oid == BASIC), "{presented:?}");
            assert_eq!(
                accepted.iter().map(|oid| oid.as_str()).collect::<Vec<_>>(),
                [HIGH]
            );
        }
        other => panic!("expected a wrong-level rejection, got {other:?}"),
    }
    let (status, body) = seen.expect("an answer after a successful handshake");
    assert_eq!(status, 403);
    assert!(
        body.starts_with("rejected: wrong level: policy OIDs [1.3.6.1.4.1.32473.7.1.1")
            && body.contains("not in the accepted set [1.3.6.1.4.1.32473.7.1.3]"),
        "{body}"
    );
}

#[tokio::test]
async fn expired_device_certificate_is_rejected_as_expired() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000006").await;
    let expired = expired_copy(&app, &device, &app.dir.path().join("expired"));
    let hospital = start(&app, &[BASIC]).await;
    expect_rejected(&hospital, &expired, &RejectReason::Expired).await;
}

/// A certificate with the device's subject that expired a minute ago, signed by the test CA's
/// Basic issuing CA (as in reenroll.rs), written with a new key and the device's chain to `out`.
fn expired_copy(app: &TestApp, device: &Path, out: &Path) -> PathBuf {
    let expired = app.expired_certificate(device);
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(out.join("cert.pem"), expired.pem).unwrap();
    std::fs::write(out.join("key.pem"), expired.key_pem).unwrap();
    std::fs::copy(device.join("chain.pem"), out.join("chain.pem")).unwrap();
    out.to_path_buf()
}

#[tokio::test]
async fn device_without_a_crl_for_its_issuer_is_rejected_as_revocation_unknown() {
    // Only the root's CRL: the Basic issuing CA's certificates have no known status, and unknown
    // is not allowed.
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000009").await;
    let (mut config, dir) = hospital_config(&app, &[BASIC]);
    config.crl_urls.retain(|url| url.ends_with("/root.crl"));
    let server = HospitalServer::bind(config).await.expect("bind");
    let hospital = Hospital::run(server, dir);
    expect_rejected(&hospital, &device, &RejectReason::RevocationUnknown).await;
}

#[tokio::test]
async fn device_sending_no_issuing_ca_is_rejected_as_issuing_ca_missing() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000010").await;
    let hospital = start(&app, &[BASIC]).await;
    let (mut chain, key) = device_credential(&device);
    chain.truncate(1); // cert.pem alone
    let (decision, seen) = hospital.connect_as(Some((chain, key))).await;
    assert_eq!(
        decision,
        Decision::Rejected(RejectReason::IssuingCaMissing),
        "{seen:?}"
    );
    assert!(seen.is_err(), "{seen:?}");
}

#[tokio::test]
async fn client_without_certificate_is_rejected_as_no_certificate() {
    let app = TestApp::spawn().await;
    let hospital = start(&app, &[BASIC]).await;
    let (decision, seen) = hospital.connect(None).await;
    assert_eq!(
        decision,
        Decision::Rejected(RejectReason::NoCertificate),
        "{seen:?}"
    );
    assert!(seen.is_err(), "{seen:?}");
}

#[tokio::test]
async fn failed_crl_refresh_is_reported_and_the_held_crls_stay_in_use() {
    let mut app = TestApp::spawn().await;
    let (good, _) = enroll(&app, "IP20000007").await;
    let (revoked, revoked_serial) = enroll(&app, "IP20000008").await;
    let reason = ca_server::revocation::Reason::parse("keyCompromise").unwrap();
    app.revocation
        .revoke(&revoked_serial.parse().unwrap(), reason, "test")
        .await
        .unwrap();
    let hospital = start(&app, &[BASIC]).await;

    app.stop_server().await; // the distribution point is down
    match hospital.server.refresh_crls().await {
        Err(HospitalError::CrlRefresh(failures)) => assert_eq!(failures.len(), 2, "{failures:?}"),
        other => panic!("expected a refresh failure, got {other:?}"),
    }
    expect_rejected(&hospital, &revoked, &RejectReason::Revoked).await;
    let (decision, _) = hospital.connect(Some(&good)).await;
    assert_eq!(accepted_serial(&decision), "IP20000007");
}

#[tokio::test]
async fn start_with_unreachable_crl_is_refused() {
    let mut app = TestApp::spawn().await;
    let (config, _dir) = hospital_config(&app, &[BASIC]);
    app.stop_server().await;
    match HospitalServer::bind(config).await {
        Err(HospitalError::CrlRefresh(failures)) => assert_eq!(failures.len(), 2, "{failures:?}"),
        other => panic!("expected start-up to be refused, got {other:?}"),
    }
    let (mut config, _dir) = hospital_config(&app, &[BASIC]);
    config.crl_urls.clear();
    assert!(matches!(
        HospitalServer::bind(config).await,
        Err(HospitalError::NoCrlUrl)
    ));
}
