//! Client faults during renewal, against the real CA: the client SIGKILLed at random moments, a
//! disk that fills during a renewal, answers that are oversized or garbage, a superseded
//! certificate. The device always ends with a complete, matching set and its next renewal
//! succeeds, or it exits 10 with a reason where nothing can succeed.
//!
//! Replays after the CA committed (a kill between commit and install, a full disk) rely on the
//! CA answering a repeated request with the certificate it already issued (issue 17, item 2).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enroll_client::staging;
use iomt_tests::client_process::{
    ClientRun, Fault, FaultFront, Moments, assert_complete_set, child_entry, client_command,
    run_client,
};
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

fn renew_args(url: &str, app: &TestApp, dir: &Path, force: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "renew",
        "--server",
        url,
        "--ca-cert",
        app.root_pem().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    if force {
        args.push("--force".into());
    }
    args
}

async fn renew(url: &str, app: &TestApp, dir: &Path, force: bool) -> ClientRun {
    let args = renew_args(url, app, dir, force);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_client(&args, &[]).await
}

/// The certificate in `dir` is the newest the CA issued for the device (nothing issued since
/// was lost), and nothing is left staged.
async fn assert_newest_and_nothing_staged(app: &TestApp, dir: &Path) {
    let current = assert_complete_set(dir, &app.root_der());
    let successor = app.authority.store().successor(&current).await.unwrap();
    assert!(
        successor.is_none(),
        "the CA issued {successor:?} after the installed {current}: a certificate was lost"
    );
    assert!(
        !staging::request_path(dir).exists(),
        "a staged request is left"
    );
}

#[tokio::test]
async fn renew_killed_at_random_moments_ends_complete_and_renews_again() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20001001").await;
    let url = app.server_url();
    // One full renewal gives the span in which the kills are spread.
    let started = Instant::now();
    let first = renew(&url, &app, &dir, true).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    let span = started.elapsed().as_millis() as u64 + 20;
    let mut moments = Moments::new();
    for round in 0..32 {
        let args = renew_args(&url, &app, &dir, true);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = client_command(&args).spawn().expect("client");
        let after = moments.below(span);
        tokio::time::sleep(Duration::from_millis(after)).await;
        let _ = child.kill(); // SIGKILL; the child may already have finished
        let killed = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        // The next run finishes a staged renewal, or finds nothing due.
        let rerun = renew(&url, &app, &dir, false).await;
        assert_eq!(
            rerun.code,
            Some(0),
            "round {round}, killed after {after} ms ({:?}): rerun {rerun:?}",
            killed.status
        );
        assert_newest_and_nothing_staged(&app, &dir).await;
    }
    let last = renew(&url, &app, &dir, true).await;
    assert_eq!(last.code, Some(0), "the next renewal succeeds: {last:?}");
    assert_newest_and_nothing_staged(&app, &dir).await;
}

/// Whether a tmpfs can be mounted in a user namespace here (no root needed where allowed).
fn user_namespace_tmpfs() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI needs unprivileged user namespaces (unshare -Urm) for the full-disk test"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs in a user namespace (unshare -Urm)");
    }
    ok
}

#[tokio::test]
async fn renew_on_a_full_disk_fails_cleanly_and_completes_once_space_returns() {
    // A real ENOSPC: the credential directory on a 256 KiB tmpfs mounted in a user namespace,
    // filled to leave one page — room for the staged request, not for the new set.
    if !user_namespace_tmpfs() {
        return;
    }
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20001002").await;
    let work = app.dir.path().join("full-disk");
    std::fs::create_dir(&work).unwrap();
    let mount = work.join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let device = mount.join("device");
    let url = app.server_url();
    let line = |force| renew_args(&url, &app, &device, force).join("\n");
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=256k tmpfs '{mnt}' || exit 90
cp -a '{dir}' '{device}' || exit 91
dd if=/dev/zero of='{mnt}/reserve' bs=4096 count=1 2>/dev/null
dd if=/dev/zero of='{mnt}/fill' bs=4096 2>/dev/null
rm '{mnt}/reserve'
client() {{ IOMT_TEST_CLIENT_ARGS="$1" '{exe}' {entry} --exact --nocapture --test-threads=1; }}
client '{force}' > '{work}/full.out' 2>&1; echo $? > '{work}/full.code'
rm '{mnt}/fill'
client '{again}' > '{work}/again.out' 2>&1; echo $? > '{work}/again.code'
client '{force}' > '{work}/next.out' 2>&1; echo $? > '{work}/next.code'
cp -a '{device}' '{work}/after'
"#,
        mnt = mount.display(),
        dir = dir.display(),
        device = device.display(),
        exe = exe.display(),
        entry = iomt_tests::client_process::CHILD_ENTRY,
        work = work.display(),
        force = line(true),
        again = line(false),
    );
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("unshare")
            .args(["-Urm", "sh", "-c", &script])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "namespace script: {status:?}");
    let read = |name: &str| std::fs::read_to_string(work.join(name)).unwrap_or_default();
    assert_ne!(
        read("full.code").trim(),
        "0",
        "the renewal on a full disk cannot succeed: {}",
        read("full.out")
    );
    assert!(
        read("full.out").contains("No space left"),
        "the failure names the full disk: {}",
        read("full.out")
    );
    assert_eq!(read("again.code").trim(), "0", "{}", read("again.out"));
    assert_eq!(read("next.code").trim(), "0", "{}", read("next.out"));
    assert_newest_and_nothing_staged(&app, &work.join("after")).await;
}

#[tokio::test]
async fn renew_with_oversized_answers_stops_reading_early_and_keeps_the_set() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20001003").await;
    let before = assert_complete_set(&dir, &app.root_der());
    let front = FaultFront::start(
        &app.data_dir(),
        app.https,
        vec![Fault::Endless, Fault::Announced(200 * 1024 * 1024)],
    );
    for what in ["endless body", "200 MB Content-Length"] {
        let run = renew(&front.url(), &app, &dir, true).await;
        assert_eq!(run.code, Some(7), "{what}: {run:?}");
        assert!(run.stderr.contains("larger than"), "{what}: {run:?}");
        assert_eq!(assert_complete_set(&dir, &app.root_der()), before);
    }
    // The client hung up soon after its 256 KiB limit: what the front managed to write is what
    // the socket buffers took, nowhere near the 200 MB a buffering client would have read.
    let sent = front.body_bytes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 32 * 1024 * 1024, "{sent} bytes were sent");
    let run = renew(&front.url(), &app, &dir, true).await;
    assert_eq!(run.code, Some(0), "the next renewal succeeds: {run:?}");
    assert_newest_and_nothing_staged(&app, &dir).await;
}

#[tokio::test]
async fn renew_with_a_garbage_answer_keeps_the_set_and_renews_next_time() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20001004").await;
    let before = assert_complete_set(&dir, &app.root_der());
    let garbage = Fault::Status {
        status: 200,
        retry_after: None,
        body: "%%% this is not base64 %%%\n".into(),
    };
    let front = FaultFront::start(&app.data_dir(), app.https, vec![garbage]);
    let run = renew(&front.url(), &app, &dir, true).await;
    assert_eq!(run.code, Some(7), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert_eq!(assert_complete_set(&dir, &app.root_der()), before);
    let run = renew(&front.url(), &app, &dir, true).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_newest_and_nothing_staged(&app, &dir).await;
}

#[tokio::test]
async fn renew_from_a_superseded_certificate_with_nothing_staged_exits_10() {
    let app = TestApp::spawn_with_policies(no_reenroll_interval).await;
    let dir = enrolled(&app, "IP20001005").await;
    let old = app.dir.path().join("old-copy");
    let copied = std::process::Command::new("cp")
        .args(["-a", dir.to_str().unwrap(), old.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let url = app.server_url();
    assert_eq!(renew(&url, &app, &dir, true).await.code, Some(0));
    // The copy still holds the superseded certificate; a new key from it is refused for good.
    let run = renew(&url, &app, &old, true).await;
    assert_eq!(run.code, Some(10), "{run:?}");
    let line = run.stderr.trim();
    assert!(
        line.starts_with("error: the device needs re-provisioning")
            && line.contains("reenroll.superseded")
            && line.lines().count() == 1,
        "{line}"
    );
}
