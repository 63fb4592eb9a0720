//! CA keys in a PKCS#11 token (SoftHSM2): generated in the token by `init`, never exported,
//! used for certificates, CRLs and OCSP responder certificates; a wrong PIN fails cleanly.
//!
//! SoftHSM reads SOFTHSM2_CONF once per process, so each test re-runs itself in a child process
//! whose environment points at a fresh token directory made by `softhsm2-util`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ca_server::pki::KeyAccess;
use iomt_tests::custody::{assert_no_clear_private_key, snapshot};
use iomt_tests::{TestApp, read_pem_certs, require_tool, run_tool, webpki_verify};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "iomt-test";
const CHILD: &str = "IOMT_SOFTHSM_TEST_DIR";

/// In the parent: makes a SoftHSM token directory, runs `test` in a child process with
/// SOFTHSM2_CONF set, asserts it passed and returns `None`. In the child: the token directory.
fn softhsm(test: &str) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var(CHILD) {
        return Some(PathBuf::from(dir));
    }
    if !require_tool("softhsm2-util", &["--version"]) || !Path::new(MODULE).exists() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    run_tool(
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                "5678901234",
                "--pin",
                "1234567",
            ]),
    );
    std::fs::write(dir.path().join("pin"), "1234567\n").unwrap();
    std::fs::write(dir.path().join("wrong-pin"), "7654321\n").unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child test failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
    None
}

fn token_args(hsm: &Path, pin: &str) -> Vec<String> {
    vec![
        "--pkcs11-module".into(),
        MODULE.into(),
        "--pkcs11-token".into(),
        TOKEN.into(),
        "--pkcs11-pin-file".into(),
        hsm.join(pin).display().to_string(),
    ]
}

#[tokio::test]
async fn enroll_with_softhsm_keys_signs_through_the_token() {
    let Some(hsm) = softhsm("enroll_with_softhsm_keys_signs_through_the_token") else {
        return;
    };
    let args = token_args(&hsm, "pin");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = TestApp::init_dir(|_, t| t.to_owned(), None, &args)
        .await
        .expect("init with SoftHSM");
    let data = dir.path().join("ca");
    assert!(data.join("ca/pkcs11.toml").exists());
    for name in ["root", "basic", "substantial", "high", "station"] {
        assert!(
            !data.join(format!("ca/{name}.key.pem")).exists(),
            "the {name} key must stay in the token"
        );
    }
    // A one-second look for CA rollovers (see the end of this test).
    let config = data.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap() + "\n[ca]\nreload_interval_secs = 1\n";
    std::fs::write(&config, text).unwrap();
    // The PIN file recorded at init is read again by serve.
    let app = TestApp::serve_dir(dir, KeyAccess::default()).await;
    let token = app.pump_with_token("IP20000010").await;
    let out = app.dir.path().join("device");
    app.enroll("IP20000010", &token, &out)
        .await
        .expect("enroll");
    let leaf = read_pem_certs(&out.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&out.join("chain.pem"));
    webpki_verify(&leaf, &chain[0], &app.root_der());

    // A CRL signed by the token verifies with the issuing CA's certificate.
    app.cli(&["revoke", "--device", "IP20000010"])
        .await
        .expect("revoke");
    let crl = app
        .plain_client()
        .get(format!("http://{}/crl/basic.crl", app.http))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, issuer) = X509Certificate::from_der(&chain[0]).unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&crl).unwrap();
    crl.verify_signature(issuer.public_key())
        .expect("the CRL signed through PKCS#11 verifies");
    assert_eq!(crl.iter_revoked_certificates().count(), 1);

    // OCSP: the delegated responder's certificate was signed through the token too.
    if require_tool("openssl", &["version"]) {
        let issuer = app.dir.path().join("issuer.pem");
        std::fs::write(
            &issuer,
            pem::encode(&pem::Pem::new("CERTIFICATE", chain[0].clone())),
        )
        .unwrap();
        let args = [
            "ocsp".to_owned(),
            "-issuer".into(),
            issuer.display().to_string(),
            "-cert".into(),
            out.join("cert.pem").display().to_string(),
            "-CAfile".into(),
            app.root_pem().display().to_string(),
            "-url".into(),
            format!("http://{}/ocsp/basic", app.http),
        ];
        // Blocking tool off the runtime thread: the server answers on this runtime.
        let output =
            tokio::task::spawn_blocking(move || Command::new("openssl").args(&args).output())
                .await
                .unwrap()
                .unwrap();
        // openssl prints the verification result on stderr.
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            text.contains("Response verify OK") && text.contains(": revoked"),
            "{text}"
        );
    }

    // Rollover keeps the custody: the G2 key is generated in the token, signs there, and the
    // running server issues from it without a restart.
    let pkcs11_before = std::fs::read(app.data_dir().join("ca/pkcs11.toml")).unwrap();
    app.cli(&["ca", "rollover", "--ca", "basic"])
        .await
        .expect("rollover");
    let list = app.cli(&["ca", "list", "--json"]).await.unwrap();
    assert!(list.contains("\"custody\": \"pkcs11\""), "{list}");
    app.wait_for_active(iomt_core::policy::Level::Basic, "basic-g2")
        .await;
    let token = app.pump_with_token("IP20000011").await;
    let second = app.dir.path().join("device-g2");
    app.enroll("IP20000011", &token, &second)
        .await
        .expect("enroll under G2");
    let leaf = read_pem_certs(&second.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&second.join("chain.pem"));
    webpki_verify(&leaf, &chain[0], &app.root_der());
    let (_, g2) = X509Certificate::from_der(&chain[0]).unwrap();
    assert!(g2.subject().to_string().contains("G2"), "{}", g2.subject());
    // Nothing about G2 was written to the data directory: the database holds its CKA_ID.
    assert_eq!(
        std::fs::read(app.data_dir().join("ca/pkcs11.toml")).unwrap(),
        pkcs11_before
    );

    // A root rollover keeps the custody as well: root G2's key is made in the token, signs its
    // own certificate and OldWithNew there, and the next issuing generation comes from it.
    app.cli(&["ca", "rollover", "--ca", "root"])
        .await
        .expect("root rollover");
    app.wait_for_root("root-g2").await;
    let list = app.cli(&["ca", "list", "--json"]).await.unwrap();
    let views: serde_json::Value = serde_json::from_str(&list).unwrap();
    let root_g2 = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "root-g2")
        .unwrap_or_else(|| panic!("root-g2 in {list}"));
    assert_eq!(root_g2["custody"], "pkcs11", "{list}");
    let ca_dir = app.data_dir().join("ca");
    let g2 = read_pem_certs(&ca_dir.join("root-g2.crt.pem")).remove(0);
    let old_with_new = read_pem_certs(&ca_dir.join("root-g2.link-old-with-new.crt.pem")).remove(0);
    let (_, g2_cert) = X509Certificate::from_der(&g2).unwrap();
    g2_cert
        .verify_signature(None)
        .expect("root G2 signed in the token");
    let (_, link) = X509Certificate::from_der(&old_with_new).unwrap();
    link.verify_signature(Some(g2_cert.public_key()))
        .expect("OldWithNew signed by the G2 key in the token");
    app.cli(&["ca", "rollover", "--ca", "basic"])
        .await
        .expect("rollover under root G2");
    app.wait_for_active(iomt_core::policy::Level::Basic, "basic-g3")
        .await;
    let token = app.pump_with_token("IP20000012").await;
    let third = app.dir.path().join("device-g3");
    app.enroll("IP20000012", &token, &third)
        .await
        .expect("enroll under root G2");
    let leaf = read_pem_certs(&third.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&third.join("chain.pem"));
    assert_eq!(chain[1], g2, "the chain ends with root G2");
    webpki_verify(
        &leaf,
        &chain[0],
        &rustls_pki_types::CertificateDer::from(g2),
    );
    assert_no_clear_private_key(&app.data_dir());
}

#[tokio::test]
async fn commands_with_wrong_pin_fail_cleanly_and_change_nothing() {
    let Some(hsm) = softhsm("commands_with_wrong_pin_fail_cleanly_and_change_nothing") else {
        return;
    };
    // init with a wrong PIN creates nothing.
    let scratch = tempfile::tempdir().unwrap();
    let refused = scratch.path().join("ca");
    let mut wrong = vec!["init".to_owned()];
    wrong.extend(token_args(&hsm, "wrong-pin"));
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let error = TestApp::cli_in(refused.to_str().unwrap(), &wrong)
        .await
        .expect_err("wrong PIN");
    assert!(error.contains("wrong PIN"), "{error}");
    assert!(!error.contains("7654321"), "the PIN leaked: {error}");
    assert!(
        !refused.exists(),
        "a refused init left {}",
        refused.display()
    );

    let good = token_args(&hsm, "pin");
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let dir = TestApp::init_dir(|_, t| t.to_owned(), None, &good)
        .await
        .expect("init");
    let data = dir.path().join("ca");
    let before = snapshot(&data);
    let error = TestApp::cli_in(
        data.to_str().unwrap(),
        &[
            "revoke",
            "--serial",
            "4000",
            "--pkcs11-pin-file",
            hsm.join("wrong-pin").to_str().unwrap(),
        ],
    )
    .await
    .expect_err("wrong PIN");
    assert!(error.contains("wrong PIN"), "{error}");
    assert_eq!(
        snapshot(&data),
        before,
        "a refused command changed the data directory"
    );
}
