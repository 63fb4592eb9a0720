//! A device whose clock is wrong, against the real CA: 10 minutes slow (more than the CA's 5
//! minutes of backdating), 2 days slow, 2 days fast. The committed certificate is installed and
//! the client says plainly that the device clock is off and what to do; `run` plans by the CA's
//! clock. The client's clock is shifted with the test-only `IOMT_TEST_CLOCK_OFFSET_SECS`.

use std::path::{Path, PathBuf};

use enroll_client::clock::TEST_CLOCK_OFFSET_ENV;
use iomt_tests::client_process::{
    ClientRun, RunningClient, assert_complete_set, child_entry, run_client,
};
use iomt_tests::{TestApp, no_reenroll_interval};

const TEN_MINUTES_SLOW: &str = "-600";
const TWO_DAYS_SLOW: &str = "-172800";
const TWO_DAYS_FAST: &str = "172800";

#[test]
fn client_process_entry_runs_the_client_when_asked() {
    child_entry();
}

fn server_args(app: &TestApp, dir: &Path) -> Vec<String> {
    [
        "--server",
        &app.server_url(),
        "--ca-cert",
        app.root_pem().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn client(command: &[&str], app: &TestApp, dir: &Path, offset: Option<&str>) -> ClientRun {
    let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    args.extend(server_args(app, dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = offset
        .map(|o| vec![(TEST_CLOCK_OFFSET_ENV, o)])
        .unwrap_or_default();
    run_client(&args, &env).await
}

async fn enroll_with_clock(app: &TestApp, serial: &str, offset: &str) -> (PathBuf, ClientRun) {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    let run = client(
        &["enroll", "--serial", serial, "--token", &token],
        app,
        &dir,
        Some(offset),
    )
    .await;
    (dir, run)
}

fn assert_says_clock_is(run: &ClientRun, direction: &str) {
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("the device clock is") && all.contains(direction) && all.contains("NTP"),
        "expected clock advice ({direction}): {run:?}"
    );
}

#[tokio::test]
async fn enroll_and_renew_with_the_clock_ten_minutes_slow_install_and_say_so() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let (dir, run) = enroll_with_clock(&app, "IP20002001", TEN_MINUTES_SLOW).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // The CA backdates an hour, so the certificate is valid even by this clock; the CA's Date
    // header still tells the device its clock is off.
    assert_says_clock_is(&run, "behind the CA's");
    assert_complete_set(&dir, &app.root_der());

    let run = client(&["renew", "--force"], &app, &dir, Some(TEN_MINUTES_SLOW)).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_says_clock_is(&run, "behind the CA's");
    assert_complete_set(&dir, &app.root_der());
    assert_eq!(app.certificates("IP20002001").await.len(), 2);
    // Once the clock is fixed, the next renewal is an ordinary one.
    let run = client(&["renew", "--force"], &app, &dir, None).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr.contains("clock"), "{run:?}");
}

#[tokio::test]
async fn renew_with_the_clock_two_days_slow_installs_and_says_so() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let (dir, run) = enroll_with_clock(&app, "IP20002002", TWO_DAYS_SLOW).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // Not valid yet by the device clock, valid by the CA's: installed, and said plainly.
    assert!(
        run.stdout.contains("warning: the device clock is"),
        "{run:?}"
    );
    assert_says_clock_is(&run, "2d");
    let run = client(&["renew", "--force"], &app, &dir, Some(TWO_DAYS_SLOW)).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_says_clock_is(&run, "behind the CA's");
    assert_complete_set(&dir, &app.root_der());
    let run = client(&["renew", "--force"], &app, &dir, None).await;
    assert_eq!(run.code, Some(0), "the next renewal succeeds: {run:?}");
}

#[tokio::test]
async fn renew_with_the_clock_two_days_fast_renews_and_says_so() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let (dir, run) = enroll_with_clock(&app, "IP20002003", TWO_DAYS_FAST).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_says_clock_is(&run, "ahead of the CA's");
    let run = client(&["renew", "--force"], &app, &dir, Some(TWO_DAYS_FAST)).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_says_clock_is(&run, "ahead of the CA's");
    assert_complete_set(&dir, &app.root_der());
    let run = client(&["renew", "--force"], &app, &dir, None).await;
    assert_eq!(run.code, Some(0), "the next renewal succeeds: {run:?}");
}

#[tokio::test]
async fn run_with_the_clock_two_days_slow_renews_by_the_ca_clock() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let token = app.pump_with_token("IP20002004").await;
    let dir = app.dir.path().join("IP20002004");
    app.enroll("IP20002004", &token, &dir)
        .await
        .expect("enroll");
    // Window 0: due at notBefore, which the slow device clock places two days ahead. Planned
    // by the device clock alone, the loop would wait two days; by the CA's, it renews now.
    let mut args: Vec<String> = [
        "run",
        "--window-percent",
        "0",
        "--jitter-percent",
        "0",
        "--retry-max",
        "1h",
        "--ocsp-interval",
        "0s",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(server_args(&app, &dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = RunningClient::start(
        &args,
        &[
            (TEST_CLOCK_OFFSET_ENV, TWO_DAYS_SLOW),
            ("ENROLL_LOG", "info"),
        ],
    );
    running
        .wait_until(|| async { app.certificates("IP20002004").await.len() >= 2 })
        .await;
    let run = running.stop().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_says_clock_is(&run, "behind the CA's");
}
