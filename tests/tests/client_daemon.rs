//! The `run` daemon against the real CA: a CA asking for a day's pause (429) or a short one
//! (503), each honoured only up to `--retry-max` and logged with the reason; its own certificate
//! revoked (exit 10 after the OCSP check) or put on hold (no renewal until released).

use std::path::{Path, PathBuf};

use iomt_tests::client_process::{Fault, FaultFront, RunningClient, child_entry};
use iomt_tests::{TestApp, no_reenroll_interval};

#[test]
fn client_process_entry_runs_the_client_when_asked() {
    child_entry();
}

async fn enrolled(app: &TestApp, serial: &str) -> PathBuf {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    app.enroll(serial, &token, &dir).await.expect("enroll");
    dir
}

/// A CA with no minimum re-enrollment interval whose certificates' OCSP and CRL URLs point at
/// its own HTTP listener.
async fn published_app() -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TestApp::init_dir(no_reenroll_interval, Some(port), &[])
        .await
        .expect("init");
    TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await
}

/// `run` with every certificate due at once, short waits, and `info` logs.
fn start_run(app: &TestApp, url: &str, dir: &Path, extra: &[&str]) -> RunningClient {
    let root = app.root_pem();
    let mut args = vec![
        "run",
        "--server",
        url,
        "--ca-cert",
        root.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--jitter-percent",
        "0",
        "--retry-min",
        "100ms",
        "--retry-max",
        "2s",
    ];
    args.extend_from_slice(extra);
    RunningClient::start(&args, &[("ENROLL_LOG", "info")])
}

fn current_serial(dir: &Path) -> String {
    let leaf = iomt_tests::read_pem_certs(&dir.join("cert.pem")).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn run_with_429_retry_after_a_day_waits_only_retry_max_and_says_why() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20003001").await;
    let day = Fault::Status {
        status: 429,
        retry_after: Some("86400".into()),
        body: "reenroll.too_soon: retry in 86400 s\n".into(),
    };
    let front = FaultFront::start(&app.data_dir(), app.https, vec![day.clone(), day]);
    let url = front.url();
    let mut running = start_run(
        &app,
        &url,
        &dir,
        &["--window-percent", "0", "--ocsp-interval", "0s"],
    );
    running
        .wait_until(|| async { app.certificates("IP20003001").await.len() >= 2 })
        .await;
    let run = running.stop().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let capped = run
        .stderr
        .matches("the CA's Retry-After, capped at --retry-max")
        .count();
    assert_eq!(
        capped, 2,
        "each day-long pause became one --retry-max wait: {run:?}"
    );
    assert!(run.stderr.contains("waiting"), "{run:?}");
}

#[tokio::test]
async fn run_with_503_retry_after_honours_it_and_renews() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20003002").await;
    let busy = Fault::Status {
        status: 503,
        retry_after: Some("1".into()),
        body: "storage.unavailable: try again shortly\n".into(),
    };
    let front = FaultFront::start(&app.data_dir(), app.https, vec![busy]);
    let url = front.url();
    let mut running = start_run(
        &app,
        &url,
        &dir,
        &["--window-percent", "0", "--ocsp-interval", "0s"],
    );
    running
        .wait_until(|| async { app.certificates("IP20003002").await.len() >= 2 })
        .await;
    let run = running.stop().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("reason=\"the CA's Retry-After\""),
        "the 503's Retry-After was the wait's reason: {run:?}"
    );
}

#[tokio::test]
async fn run_with_a_revoked_certificate_exits_10_after_its_ocsp_check() {
    let app = published_app().await;
    let dir = enrolled(&app, "IP20003003").await;
    let serial = current_serial(&dir);
    app.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"])
        .await
        .expect("revoke");
    // Not due for months: only the status check can notice.
    let running = start_run(&app, &app.server_url(), &dir, &["--window-percent", "70"]);
    let run = running.finish().await;
    assert_eq!(run.code, Some(10), "{run:?}");
    let last = run.stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the device needs re-provisioning")
            && last.contains("revoked (keyCompromise)"),
        "{run:?}"
    );
}

#[tokio::test]
async fn run_with_a_held_certificate_waits_until_released_then_renews() {
    let app = published_app().await;
    let dir = enrolled(&app, "IP20003004").await;
    let serial = current_serial(&dir);
    app.cli(&["revoke", "--serial", &serial, "--reason", "certificateHold"])
        .await
        .expect("hold");
    let mut running = start_run(&app, &app.server_url(), &dir, &["--window-percent", "0"]);
    // Due at once, but held: the status is asked again after each bounded wait, no renewal.
    running
        .wait_for_log_count("the certificate is on hold", 2)
        .await;
    assert_eq!(
        app.certificates("IP20003004").await.len(),
        1,
        "no renewal while on hold"
    );
    app.revocation
        .release(&serial.parse().unwrap(), "test")
        .await
        .expect("release");
    running
        .wait_until(|| async { app.certificates("IP20003004").await.len() >= 2 })
        .await;
    let run = running.stop().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("OCSP: the certificate is good"),
        "{run:?}"
    );
}
