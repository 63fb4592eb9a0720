//! `provision` killed with SIGKILL five times at random moments in a 2,000-device batch, then
//! rerun: every device done, exactly one certificate each, none stranded (no device whose
//! certificate the CA committed without its folder on the station).
//!
//! A device killed between the CA's commit and its folder is finished by resending its staged
//! CSR; that relies on the CA answering the same station's repeat for the same key with the
//! certificate it already issued (issue 17, item 2).

use std::path::Path;

use enroll_client::staging::BATCH_STAGING_DIR;
use iomt_tests::client_process::{Moments, child_entry, client_command, run_client};
use iomt_tests::{MONITOR, TestApp};

const DEVICES: usize = 2_000;
const KILLS: usize = 5;

#[test]
fn client_process_entry_runs_the_client_when_asked() {
    child_entry();
}

/// Device folders in place (the hidden staging entries excluded).
fn folders(out: &Path) -> usize {
    std::fs::read_dir(out)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_killed_five_times_then_rerun_finishes_every_device_once() {
    let app = TestApp::spawn().await;
    let name = "plant9-line1-st01";
    let token = app
        .cli(&[
            "station",
            "create",
            "--name",
            name,
            "--products",
            MONITOR,
            "--rate-limit",
            "1000000/h",
        ])
        .await
        .expect("station create");
    let station = app.dir.path().join("station");
    app.enroll(name, token.trim(), &station)
        .await
        .expect("station enrolls");
    let serials: Vec<String> = (0..DEVICES).map(|i| format!("PM78{i:06}")).collect();
    let mut csv = String::from("serial,product\n");
    for serial in &serials {
        csv.push_str(&format!("{serial},{MONITOR}\n"));
    }
    let csv_path = app.dir.path().join("batch.csv");
    std::fs::write(&csv_path, csv).unwrap();
    app.cli(&["device", "register", "--csv", csv_path.to_str().unwrap()])
        .await
        .expect("register");
    let list = app.dir.path().join("serials.txt");
    std::fs::write(&list, serials.join("\n")).unwrap();
    let out = app.dir.path().join("line-out");
    let (url, root) = (app.server_url(), app.root_pem());
    let args = [
        "provision",
        "--server",
        &url,
        "--ca-cert",
        root.to_str().unwrap(),
        "--station",
        station.to_str().unwrap(),
        "--serials",
        list.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--concurrency",
        "16",
        "--quiet",
    ];

    let mut moments = Moments::new();
    for kill in 0..KILLS {
        let mut child = client_command(&args).spawn().expect("provision");
        // Somewhere in the next few hundred devices, then a few milliseconds more so the
        // moment falls inside a device as often as between two.
        let target = folders(&out) + 1 + moments.below(400) as usize;
        while folders(&out) < target && matches!(child.try_wait(), Ok(None)) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(moments.below(40))).await;
        let _ = child.kill();
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        eprintln!("kill {kill}: {} folders", folders(&out));
    }
    let rerun = run_client(&args, &[]).await;
    assert_eq!(
        rerun.code,
        Some(0),
        "the rerun finishes the batch: {rerun:?}"
    );
    assert!(rerun.stdout.contains(" 0 failed"), "{rerun:?}");

    let (mut stranded, mut doubled) = (Vec::new(), Vec::new());
    for serial in &serials {
        let records = app.certificates(serial).await;
        let folder = out.join(serial);
        let Ok(cert_pem) = std::fs::read_to_string(folder.join("cert.pem")) else {
            stranded.push(serial.clone());
            continue;
        };
        if records.len() != 1 {
            doubled.push(format!("{serial}: {}", records.len()));
            continue;
        }
        let leaf = pem::parse(&cert_pem).unwrap().into_contents();
        assert_eq!(
            leaf, records[0].der,
            "{serial}: the folder holds the one issued"
        );
        let key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(folder.join("key.pem")).unwrap())
                .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        assert_eq!(
            parsed.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
            "{serial}: key.pem is the certificate's key"
        );
        assert!(folder.join("chain.pem").is_file(), "{serial}: chain.pem");
    }
    assert!(
        stranded.is_empty(),
        "devices without a folder: {stranded:?}"
    );
    assert!(
        doubled.is_empty(),
        "devices with other than one certificate: {doubled:?}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(out.join(BATCH_STAGING_DIR))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staged requests left: {leftovers:?}");
    let partial = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .count();
    assert_eq!(partial, 0, "half-written folders left");
}
