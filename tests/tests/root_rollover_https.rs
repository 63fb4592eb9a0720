//! Reaching the CA across a root rollover (issue 20 §3, §4). After `ca rollover --ca root` the
//! server renews its HTTPS certificate under root G2 by itself and serves it with the NewWithOld
//! link, so a device that trusts only G1 still builds G1 → link → HTTPS certificate, and one that
//! trusts G2 stops at G2: checked with rustls, with `openssl s_client -verify_return_error` given
//! either root, and with the real enroll-client (a new device given only G1, a G1 device
//! renewing), also after a restart. A device that took G2 into `trust.pem` keeps renewing when
//! the CA's chain ends at G2 alone (the client trusts every root in `trust.pem`, not only
//! `--ca-cert`). A station's `provision` takes G2 up through the link and writes `trust.pem` into
//! every device folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use iomt_core::policy::Level;
use iomt_tests::client_process::{ClientRun, child_entry, run_client};
use iomt_tests::rollover::tls_handshake;
use iomt_tests::{MONITOR, TestApp, read_pem_certs, require_tool, run_tool, webpki_verify};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

const FAST: &str = "[ca]\nreload_interval_secs = 1\n";

#[test]
fn client_process_entry_runs_the_client_when_asked() {
    child_entry();
}

/// `openssl s_client -verify_return_error` against the CA with `ca_file` as its only trust:
/// whether the chain verified, and what openssl said.
fn s_client(addr: SocketAddr, ca_file: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-verify_return_error"])
        .args(["-connect", &addr.to_string(), "-servername", "localhost"])
        .args(["-verify_hostname", "localhost", "-CAfile"])
        .arg(ca_file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success() && text.contains("Verification: OK"),
        text,
    )
}

fn write_pem(path: &Path, ders: &[&[u8]]) {
    let text: String = ders
        .iter()
        .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.to_vec())))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn issuer_cn(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .issuer()
        .to_string()
}

struct Roots {
    g1: Vec<u8>,
    g2: Vec<u8>,
    link: Vec<u8>,
    g1_pem: PathBuf,
    g2_pem: PathBuf,
}

/// `ca rollover --ca root`, picked up by the server; both roots as PEM files.
async fn roll_the_root(app: &TestApp) -> Roots {
    app.cli(&["ca", "rollover", "--ca", "root"]).await.unwrap();
    app.wait_for_root("root-g2").await;
    let ca_dir = app.data_dir().join("ca");
    let g1 = app.root_der().to_vec();
    let g2 = read_pem_certs(&ca_dir.join("root-g2.crt.pem")).remove(0);
    let link = read_pem_certs(&ca_dir.join("root-g2.link-new-with-old.crt.pem")).remove(0);
    let (g1_pem, g2_pem) = (app.dir.path().join("g1.pem"), app.dir.path().join("g2.pem"));
    write_pem(&g1_pem, &[&g1]);
    write_pem(&g2_pem, &[&g2]);
    Roots {
        g1,
        g2,
        link,
        g1_pem,
        g2_pem,
    }
}

/// The real enroll-client: `renew --force` of the set in `dir` trusting `ca_cert`.
async fn renew_process(app: &TestApp, ca_cert: &Path, dir: &Path) -> ClientRun {
    let url = app.server_url();
    let args = [
        "renew",
        "--server",
        &url,
        "--ca-cert",
        ca_cert.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--force",
    ];
    run_client(&args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_root_rollover_the_https_certificate_moves_to_g2_and_g1_clients_still_connect() {
    let mut app = TestApp::spawn_with_ca_config(FAST, None).await;
    let token = app.pump_with_token("IP20000401").await;
    let device = app.dir.path().join("IP20000401");
    app.enroll("IP20000401", &token, &device).await.unwrap();
    let before = tls_handshake(app.https, &[app.root_der().to_vec()])
        .await
        .unwrap();
    assert!(issuer_cn(&before[0]).contains("Root CA G1"));

    let roots = roll_the_root(&app).await;
    // Renewed by the running server under G2, served with the NewWithOld link (not G2 itself).
    let chain = app.wait_for_https_under(&roots.g2).await;
    assert_ne!(chain[0], before[0]);
    assert!(issuer_cn(&chain[0]).contains("Root CA G2"));
    assert_eq!(chain, vec![chain[0].clone(), roots.link.clone()]);
    let g1_only = tls_handshake(app.https, std::slice::from_ref(&roots.g1))
        .await
        .expect("a client that trusts only G1 builds G1 -> link -> HTTPS certificate");
    assert_eq!(g1_only, chain);

    if require_tool("openssl", &["version"]) {
        for root in [&roots.g1_pem, &roots.g2_pem] {
            let (verified, text) = s_client(app.https, root);
            assert!(verified, "{}: {text}", root.display());
        }
        // The check is real: a root that signed nothing here does not verify.
        let stranger = app.dir.path().join("stranger.pem");
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(&stranger, other.cert.pem()).unwrap();
        let (verified, text) = s_client(app.https, &stranger);
        assert!(!verified, "{text}");
    }

    // The real client given only G1: a new device enrolls (issuance is still under G1) and takes
    // G2 up through the link; the G1 device renews.
    let fresh = app.dir.path().join("IP20000402");
    let token = app.pump_with_token("IP20000402").await;
    let url = app.server_url();
    let enrolled = run_client(
        &[
            "enroll",
            "--server",
            &url,
            "--ca-cert",
            roots.g1_pem.to_str().unwrap(),
            "--serial",
            "IP20000402",
            "--token",
            &token,
            "--out",
            fresh.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(enrolled.code, Some(0), "{enrolled:?}");
    let renewed = renew_process(&app, &roots.g1_pem, &device).await;
    assert_eq!(renewed.code, Some(0), "{renewed:?}");
    for dir in [&fresh, &device] {
        assert_eq!(
            read_pem_certs(&dir.join("trust.pem")),
            vec![roots.g1.clone(), roots.g2.clone()]
        );
        assert_eq!(read_pem_certs(&dir.join("chain.pem"))[1], roots.g1);
    }

    // A restart serves the same certificate with the same link.
    app.stop_server().await;
    app.restart().await;
    assert_eq!(
        tls_handshake(app.https, std::slice::from_ref(&roots.g1))
            .await
            .unwrap(),
        chain
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_holding_g2_renews_when_the_https_chain_ends_at_g2_alone() {
    let mut app = TestApp::spawn_with_ca_config(FAST, None).await;
    let token = app.pump_with_token("IP20000411").await;
    let device = app.dir.path().join("IP20000411");
    app.enroll("IP20000411", &token, &device).await.unwrap();
    let roots = roll_the_root(&app).await;
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    app.wait_for_https_under(&roots.g2).await;
    // The device takes G2 in (trust.pem: G1, G2) and renews into the G2 chain.
    let renewed = renew_process(&app, &roots.g1_pem, &device).await;
    assert_eq!(renewed.code, Some(0), "{renewed:?}");
    assert_eq!(read_pem_certs(&device.join("trust.pem")).len(), 2);

    // The CA's HTTPS chain now ends at G2 alone, as once G1 has expired and its link is gone:
    // the NewWithOld slot holds the OldWithNew certificate, so nothing the server sends leads
    // from G1 to the HTTPS certificate.
    let old_with_new = read_pem_certs(
        &app.data_dir()
            .join("ca")
            .join("root-g2.link-old-with-new.crt.pem"),
    )
    .remove(0);
    app.replace_root_link(&old_with_new).await;
    let refused = tls_handshake(app.https, std::slice::from_ref(&roots.g1)).await;
    assert!(refused.is_err(), "G1 alone no longer reaches the CA");
    tls_handshake(app.https, std::slice::from_ref(&roots.g2))
        .await
        .unwrap();
    if require_tool("openssl", &["version"]) {
        assert!(!s_client(app.https, &roots.g1_pem).0);
        let (verified, text) = s_client(app.https, &roots.g2_pem);
        assert!(verified, "{text}");
    }

    // Still given only G1 with --ca-cert, the device trusts G2 from trust.pem: it renews.
    let serial_before = read_pem_certs(&device.join("cert.pem")).remove(0);
    let renewed = renew_process(&app, &roots.g1_pem, &device).await;
    assert_eq!(renewed.code, Some(0), "{renewed:?}");
    let leaf = read_pem_certs(&device.join("cert.pem")).remove(0);
    assert_ne!(leaf, serial_before);
    let chain = read_pem_certs(&device.join("chain.pem"));
    assert_eq!(chain[1], roots.g2);
    webpki_verify(&leaf, &chain[0], &CertificateDer::from(roots.g2.clone()));
    // The same credential without trust.pem (a device that never took G2 up) cannot reach this
    // CA: the control.
    let stranded = app.dir.path().join("g1-only");
    run_tool(Command::new("cp").arg("-a").arg(&device).arg(&stranded));
    std::fs::remove_file(stranded.join("trust.pem")).unwrap();
    let refused = renew_process(&app, &roots.g1_pem, &stranded).await;
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("UnknownIssuer"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provision_writes_trust_pem_into_each_device_folder_and_follows_a_root_rollover() {
    let app = TestApp::spawn_with_ca_config(FAST, None).await;
    let name = "plant4-line1-st01";
    let token = app
        .cli(&["station", "create", "--name", name, "--products", MONITOR])
        .await
        .expect("station create");
    let station = app.dir.path().join("station");
    app.enroll(name, token.trim(), &station)
        .await
        .expect("station enrolls");
    let serials = ["PM74000001", "PM74000002", "PM74000003"];
    let mut csv = String::from("serial,product\n");
    for serial in serials {
        csv.push_str(&format!("{serial},{MONITOR}\n"));
    }
    let csv_path = app.dir.path().join("batch.csv");
    std::fs::write(&csv_path, csv).unwrap();
    app.cli(&["device", "register", "--csv", csv_path.to_str().unwrap()])
        .await
        .expect("register");
    let provision = |list: &[&str], out: &Path| {
        let file = out.with_extension("txt");
        std::fs::write(&file, list.join("\n")).unwrap();
        let (url, root) = (app.server_url(), app.root_pem());
        let (file, out, station) = (file.clone(), out.to_path_buf(), station.clone());
        async move {
            let args = [
                "provision",
                "--server",
                &url,
                "--ca-cert",
                root.to_str().unwrap(),
                "--station",
                station.to_str().unwrap(),
                "--serials",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--quiet",
            ];
            run_client(&args, &[]).await
        }
    };

    // Before any rollover: the device folder trusts G1, like an enrolled device.
    let before = app.dir.path().join("before");
    let run = provision(&serials[..1], &before).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let g1 = app.root_der().to_vec();
    assert_eq!(
        read_pem_certs(&before.join(serials[0]).join("trust.pem")),
        vec![g1.clone()]
    );

    // After the root and the Substantial issuing CA rolled over, with --ca-cert still G1.
    let roots = roll_the_root(&app).await;
    app.cli(&["ca", "rollover", "--ca", "substantial"])
        .await
        .unwrap();
    app.wait_for_active(Level::Substantial, "substantial-g2")
        .await;
    let after = app.dir.path().join("after");
    let run = provision(&serials[1..], &after).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        read_pem_certs(&station.join("trust.pem")),
        vec![g1.clone(), roots.g2.clone()],
        "the station took G2 up through its link"
    );
    for serial in &serials[1..] {
        let dir = after.join(serial);
        let trust = dir.join("trust.pem");
        assert_eq!(read_pem_certs(&trust), vec![g1.clone(), roots.g2.clone()]);
        let chain = read_pem_certs(&dir.join("chain.pem"));
        assert!(issuer_cn(&read_pem_certs(&dir.join("cert.pem"))[0]).contains("G2"));
        assert_eq!(chain[1], roots.g2, "chain.pem ends with root G2");
        if require_tool("openssl", &["version"]) {
            run_tool(
                Command::new("openssl")
                    .args(["verify", "-CAfile"])
                    .arg(&trust)
                    .arg("-untrusted")
                    .arg(dir.join("chain.pem"))
                    .arg(dir.join("cert.pem")),
            );
        }
    }
    // The client on the device reads it as its trust file: both roots beside --ca-cert G1.
    let trust =
        enroll_client::trust::Trust::load(&CertificateDer::from(g1), &after.join(serials[1]))
            .unwrap();
    assert_eq!(trust.roots().len(), 2);
}
