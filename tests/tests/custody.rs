//! CA keys at rest: sealed with a passphrase (given or generated), refused cleanly with a wrong
//! one, and an offline root (openssl) whose certificates `ca import` checks before installing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ca_server::pki::KeyAccess;
use iomt_tests::custody::{assert_no_clear_private_key, offline_root, snapshot};
use iomt_tests::{TestApp, read_pem_certs, require_tool, run_tool, webpki_verify};

fn pass_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path
}

async fn enroll_one(app: &TestApp, serial: &str) {
    let token = app.pump_with_token(serial).await;
    let out = app.dir.path().join(format!("device-{serial}"));
    app.enroll(serial, &token, &out).await.expect("enroll");
    let leaf = read_pem_certs(&out.join("cert.pem")).remove(0);
    let chain = read_pem_certs(&out.join("chain.pem"));
    webpki_verify(&leaf, &chain[0], &app.root_der());
}

#[tokio::test]
async fn init_without_passphrase_generates_private_passphrase_file_and_seals_keys() {
    let app = TestApp::spawn().await;
    let passphrase = app.data_dir().join("passphrase");
    let mode = std::fs::metadata(&passphrase).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read_to_string(app.data_dir().join("ca/basic.key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN IOMT ENCRYPTED PRIVATE KEY-----"));
    assert!(key.contains("Kdf: pbkdf2-hmac-sha256"));
    enroll_one(&app, "IP20000001").await;
    assert_no_clear_private_key(&app.data_dir());
}

#[tokio::test]
async fn enroll_with_passphrase_file_keys_works_and_nothing_is_clear() {
    let scratch = tempfile::tempdir().unwrap();
    let good = pass_file(scratch.path(), "pass", "a long operator passphrase");
    let dir = TestApp::init_dir(
        |_, t| t.to_owned(),
        None,
        &["--passphrase-file", good.to_str().unwrap()],
    )
    .await
    .expect("init");
    let data = dir.path().join("ca");
    assert!(
        !data.join("passphrase").exists(),
        "no generated passphrase when one is given"
    );
    let access = KeyAccess {
        passphrase_file: Some(good.clone()),
        ..KeyAccess::default()
    };
    let app = TestApp::serve_dir(dir, access).await;
    enroll_one(&app, "IP20000002").await;
    // Revocation signs a CRL through the same key custody.
    let out = app
        .cli(&[
            "revoke",
            "--device",
            "IP20000002",
            "--passphrase-file",
            good.to_str().unwrap(),
        ])
        .await
        .expect("revoke");
    assert!(out.contains("revoked"), "{out}");
    assert_no_clear_private_key(&app.data_dir());
}

#[tokio::test]
async fn commands_with_wrong_passphrase_fail_cleanly_and_change_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let good = pass_file(scratch.path(), "good", "the right passphrase here");
    let wrong = pass_file(scratch.path(), "wrong", "not the right passphrase");
    let dir = TestApp::init_dir(
        |_, t| t.to_owned(),
        None,
        &["--passphrase-file", good.to_str().unwrap()],
    )
    .await
    .expect("init");
    let data = dir.path().join("ca");
    let data_str = data.to_str().unwrap();
    let before = snapshot(&data);

    let error = TestApp::cli_in(
        data_str,
        &[
            "revoke",
            "--serial",
            "4000",
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
    )
    .await
    .expect_err("wrong passphrase must fail");
    assert!(error.contains("wrong CA passphrase"), "{error}");
    assert!(
        !error.contains("not the right"),
        "the passphrase leaked: {error}"
    );
    let mut settings = ca_server::config::Settings::load(&data).unwrap();
    settings.key_access.passphrase_file = Some(wrong.clone());
    let build = ca_server::startup::Application::build(&settings).await;
    let error = build.err().expect("serve must refuse").to_string();
    assert!(error.contains("wrong CA passphrase"), "{error}");
    assert_eq!(
        snapshot(&data),
        before,
        "a refused command changed the data directory"
    );
}

/// `IOMT_CA_PASSPHRASE` can only be set for a whole process, so this test re-runs itself in a
/// child process with the variable set.
#[tokio::test]
async fn enroll_with_passphrase_from_environment_works() {
    const NAME: &str = "enroll_with_passphrase_from_environment_works";
    if std::env::var("IOMT_CA_PASSPHRASE").is_err() {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env("IOMT_CA_PASSPHRASE", "passphrase from the environment")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && text.contains("1 passed"),
            "{text}"
        );
        return;
    }
    let dir = TestApp::init_dir(|_, t| t.to_owned(), None, &[])
        .await
        .expect("init");
    let data = dir.path().join("ca");
    assert!(
        !data.join("passphrase").exists(),
        "the environment's passphrase is used, none generated"
    );
    let app = TestApp::serve_dir(dir, KeyAccess::default()).await;
    enroll_one(&app, "IP20000004").await;
    assert_no_clear_private_key(&app.data_dir());
}

#[tokio::test]
async fn init_with_short_passphrase_is_refused_and_creates_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let short = pass_file(scratch.path(), "short", "short");
    let data = scratch.path().join("ca");
    let error = TestApp::cli_in(
        data.to_str().unwrap(),
        &["init", "--passphrase-file", short.to_str().unwrap()],
    )
    .await
    .expect_err("weak passphrase");
    assert!(error.contains("at least 12"), "{error}");
    assert!(!data.exists(), "a refused init left {}", data.display());
}

#[tokio::test]
async fn enroll_under_external_root_signed_by_openssl_works_without_the_root_key() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let dir = TestApp::init_dir(|_, t| t.to_owned(), None, &["--external-root"])
        .await
        .expect("init");
    let data = dir.path().join("ca");
    let data_str = data.to_str().unwrap();
    assert!(!data.join("root.pem").exists());
    assert!(!data.join("ca/root.key.pem").exists());
    let mut settings = ca_server::config::Settings::load(&data).unwrap();
    settings.key_access = KeyAccess::default();
    let error = ca_server::startup::Application::build(&settings)
        .await
        .err()
        .expect("serve before import")
        .to_string();
    assert!(error.contains("ca import"), "{error}");

    let root_dir = dir.path().join("offline-root");
    std::fs::create_dir(&root_dir).unwrap();
    offline_root(&data.join("csr"), &root_dir);
    let out = TestApp::cli_in(
        data_str,
        &[
            "ca",
            "import",
            "--root",
            root_dir.join("root.crt.pem").to_str().unwrap(),
            "--certs",
            root_dir.join("signed").to_str().unwrap(),
            "--root-crl",
            root_dir.join("root.crl.pem").to_str().unwrap(),
        ],
    )
    .await
    .expect("import");
    assert!(out.contains("installed"), "{out}");
    assert!(
        !data.join("ca/root.key.pem").exists(),
        "the online CA never holds the root key"
    );

    let app = TestApp::serve_dir(dir, KeyAccess::default()).await;
    enroll_one(&app, "IP20000003").await;
    let root_crl = app
        .plain_client()
        .get(format!("http://{}/crl/root.crl", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(root_crl.status(), 200);
    let served = root_crl.bytes().await.unwrap();
    let offline = pem::parse(std::fs::read(root_dir.join("root.crl.pem")).unwrap()).unwrap();
    assert_eq!(
        served.as_ref(),
        offline.contents(),
        "the offline root's CRL is served as is"
    );
    // Issuing-CA CRLs are still signed online (through the sealed issuing key).
    let basic = app
        .plain_client()
        .get(format!("http://{}/crl/basic.crl", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    // openssl agrees the whole chain holds.
    let device = app.dir.path().join("device-IP20000003");
    run_tool(Command::new("openssl").args([
        "verify",
        "-CAfile",
        root_dir.join("root.crt.pem").to_str().unwrap(),
        "-untrusted",
        device.join("chain.pem").to_str().unwrap(),
        device.join("cert.pem").to_str().unwrap(),
    ]));
    assert_no_clear_private_key(&app.data_dir());
}

#[tokio::test]
async fn import_certificate_for_another_key_is_refused_and_installs_nothing() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let dir = TestApp::init_dir(|_, t| t.to_owned(), None, &["--external-root"])
        .await
        .expect("init");
    let data = dir.path().join("ca");
    let csr_dir = data.join("csr");
    let root_dir = dir.path().join("offline-root");
    std::fs::create_dir(&root_dir).unwrap();
    offline_root(&csr_dir, &root_dir);
    // Replace basic.crt.pem with a certificate of the right profile for a different key.
    let other_key = root_dir.join("other.key");
    let other_csr = root_dir.join("other.csr");
    run_tool(Command::new("openssl").args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        other_key.to_str().unwrap(),
        "-subj",
        "/C=US/CN=IoMT Basic Issuing CA G1",
        "-out",
        other_csr.to_str().unwrap(),
    ]));
    run_tool(Command::new("openssl").current_dir(&csr_dir).args([
        "x509",
        "-req",
        "-in",
        other_csr.to_str().unwrap(),
        "-CA",
        root_dir.join("root.crt.pem").to_str().unwrap(),
        "-CAkey",
        root_dir.join("root.key").to_str().unwrap(),
        "-set_serial",
        "0x51f2a0c3d4e5f60718293a4b5c6d7e8f",
        "-days",
        "100",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        "basic",
        "-out",
        root_dir.join("signed/basic.crt.pem").to_str().unwrap(),
    ]));
    let before = snapshot(&data);
    let error = TestApp::cli_in(
        data.to_str().unwrap(),
        &[
            "ca",
            "import",
            "--root",
            root_dir.join("root.crt.pem").to_str().unwrap(),
            "--certs",
            root_dir.join("signed").to_str().unwrap(),
        ],
    )
    .await
    .expect_err("a certificate for another key must be refused");
    assert!(error.contains("does not match the key"), "{error}");
    assert_eq!(
        snapshot(&data),
        before,
        "a refused import changed the data directory"
    );
}
