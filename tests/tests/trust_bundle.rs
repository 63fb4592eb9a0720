//! `GET /ca/bundle.pem` (issue 20 §3): the hospital trust bundle holds the root and every CA
//! generation still in use. After `ca rollover --ca basic`, openssl builds the chain of a device
//! enrolled under G1 and of one enrolled under G2 from the bundle alone (root as the trust
//! anchor, the rest untrusted intermediates), and each generation's certificate is in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use iomt_core::policy::Level;
use iomt_tests::{TestApp, read_pem_certs, require_tool, run_tool};
use x509_parser::prelude::{FromDer, X509Certificate};

async fn enroll(app: &TestApp, serial: &str) -> PathBuf {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    app.enroll(serial, &token, &dir).await.expect("enroll");
    dir
}

async fn bundle(app: &TestApp) -> (String, String) {
    let response = app
        .plain_client()
        .get(format!("http://{}/ca/bundle.pem", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (kind, response.text().await.unwrap())
}

fn subjects(pem_path: &Path) -> Vec<String> {
    read_pem_certs(pem_path)
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .unwrap()
                .1
                .subject()
                .to_string()
        })
        .collect()
}

/// `openssl verify` of `leaf` with the bundle's first certificate (the root) as the only trust
/// anchor and the rest of the bundle as untrusted intermediates.
fn openssl_verifies(work: &Path, bundle: &Path, leaf: &Path) -> bool {
    let certs = read_pem_certs(bundle);
    let root = work.join("anchor.pem");
    let rest = work.join("intermediates.pem");
    let pem = |ders: &[Vec<u8>]| -> String {
        ders.iter()
            .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.clone())))
            .collect()
    };
    std::fs::write(&root, pem(&certs[..1])).unwrap();
    std::fs::write(&rest, pem(&certs[1..])).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&rest)
        .arg(leaf)
        .output()
        .unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trust_bundle_holds_both_generations_and_openssl_builds_old_and_new_chains() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn_with_ca_config("[ca]\nreload_interval_secs = 1\n", None).await;
    let work = app.dir.path().to_path_buf();
    let (kind, before) = bundle(&app).await;
    assert_eq!(kind, "application/pem-certificate-chain");
    let before_path = work.join("before.pem");
    std::fs::write(&before_path, &before).unwrap();
    let names = subjects(&before_path);
    assert!(names[0].contains("Root CA G1"), "{names:?}");
    // Root, basic, substantial, high, station.
    assert_eq!(names.len(), 5, "{names:?}");

    let old = enroll(&app, "IP20000101").await;
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    let new = enroll(&app, "IP20000102").await;

    let (_, after) = bundle(&app).await;
    let after_path = work.join("after.pem");
    std::fs::write(&after_path, &after).unwrap();
    let names = subjects(&after_path);
    assert_eq!(names.len(), 6, "G2 added, G1 kept: {names:?}");
    assert!(names.iter().any(|n| n.contains("Basic Issuing CA G1")));
    assert!(names.iter().any(|n| n.contains("Basic Issuing CA G2")));

    let (old_leaf, new_leaf) = (old.join("cert.pem"), new.join("cert.pem"));
    let issuer = |p: &Path| {
        let der = read_pem_certs(p).remove(0);
        X509Certificate::from_der(&der)
            .unwrap()
            .1
            .issuer()
            .to_string()
    };
    assert!(issuer(&old_leaf).contains("G1") && issuer(&new_leaf).contains("G2"));
    // The bundle alone builds both chains; the one from before the rollover only the old.
    assert!(openssl_verifies(&work, &before_path, &old_leaf));
    assert!(!openssl_verifies(&work, &before_path, &new_leaf));
    assert!(openssl_verifies(&work, &after_path, &old_leaf));
    assert!(openssl_verifies(&work, &after_path, &new_leaf));
    // And the verification names the G2 chain.
    let chain = run_tool(
        Command::new("openssl")
            .args(["verify", "-show_chain", "-CAfile"])
            .arg(work.join("anchor.pem"))
            .arg("-untrusted")
            .arg(work.join("intermediates.pem"))
            .arg(&new_leaf),
    );
    assert!(chain.contains("Basic Issuing CA G2"), "{chain}");
}
