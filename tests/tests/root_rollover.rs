//! Root rollover (issue 20 §3, RFC 4210 §4.4) against the real server: `ca rollover --ca root`
//! makes root G2 in the CA's custody and the two link certificates; the running server serves
//! them in EST `cacerts` (RFC 7030 §4.1.3) and `/ca/bundle.pem` without a restart; openssl
//! builds the old chain (under G1) and the new one (under G2, after `ca rollover --ca basic`)
//! from what `cacerts` serves, verifies NewWithOld under G1 and OldWithNew under G2; root G2
//! publishes its CRL and answers OCSP for the CA certificates it signed. An offline root is
//! refused with what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use iomt_core::policy::Level;
use iomt_tests::{TestApp, read_pem_certs, require_tool, run_tool};
use x509_parser::prelude::{FromDer, X509Certificate};

const FAST: &str = "[ca]\nreload_interval_secs = 1\n";

async fn enroll(app: &TestApp, serial: &str) -> PathBuf {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    app.enroll(serial, &token, &dir).await.expect("enroll");
    dir
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).expect("certificate").1
}

fn pem_of(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.clone())))
        .collect()
}

/// The certificates `GET <path>` (an EST cacerts URL) serves.
async fn cacerts(app: &TestApp, path: &str) -> Vec<Vec<u8>> {
    let response = app
        .http_client()
        .get(format!("{}/.well-known/est/{path}", app.server_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let body = response.text().await.unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("base64");
    iomt_core::wire::parse_certs_only(&der).expect("certs-only")
}

async fn fetch(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let response = app
        .plain_client()
        .get(format!("http://{}{path}", app.http))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn with_subject<'a>(certs: &'a [Vec<u8>], cn: &str) -> Vec<&'a Vec<u8>> {
    certs
        .iter()
        .filter(|der| parse(der).subject().to_string().contains(cn))
        .collect()
}

fn openssl_verify(anchor: &Path, untrusted: Option<&Path>, cert: &Path) -> Result<String, String> {
    let mut command = Command::new("openssl");
    command
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(anchor);
    if let Some(untrusted) = untrusted {
        command.arg("-untrusted").arg(untrusted);
    }
    let out = command.arg(cert).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.contains(": OK") {
        Ok(text)
    } else {
        Err(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn root_rollover_serves_root_g2_and_links_and_openssl_builds_both_chains() {
    let app = TestApp::spawn_with_ca_config(FAST, None).await;
    let work = app.dir.path().to_path_buf();
    let old = enroll(&app, "IP20000201").await;

    let out = app.cli(&["ca", "rollover", "--ca", "root"]).await.unwrap();
    assert!(out.contains("root-g2 is the active root"), "{out}");
    let ca_dir = app.data_dir().join("ca");
    let root_g2 = ca_dir.join("root-g2.crt.pem");
    let new_with_old = ca_dir.join("root-g2.link-new-with-old.crt.pem");
    let old_with_new = ca_dir.join("root-g2.link-old-with-new.crt.pem");
    for file in [&root_g2, &new_with_old, &old_with_new] {
        assert!(file.exists(), "{} in {out}", file.display());
    }
    app.wait_for_root("root-g2").await;

    // The links name exactly the roots they carry: subject and key.
    let g1 = app.root_der().to_vec();
    let g2 = read_pem_certs(&root_g2).remove(0);
    let nwo = read_pem_certs(&new_with_old).remove(0);
    let own = read_pem_certs(&old_with_new).remove(0);
    let (g1c, g2c, nwoc, ownc) = (parse(&g1), parse(&g2), parse(&nwo), parse(&own));
    assert!(g2c.subject().to_string().contains("Root CA G2"));
    assert_eq!(g2c.subject(), g2c.issuer(), "G2 is self-signed");
    assert_eq!(nwoc.subject().as_raw(), g2c.subject().as_raw());
    assert_eq!(nwoc.public_key().raw, g2c.public_key().raw);
    assert_eq!(nwoc.issuer().as_raw(), g1c.subject().as_raw());
    nwoc.verify_signature(Some(g1c.public_key()))
        .expect("NewWithOld is signed by the G1 key");
    assert_eq!(ownc.subject().as_raw(), g1c.subject().as_raw());
    assert_eq!(ownc.public_key().raw, g1c.public_key().raw);
    ownc.verify_signature(Some(g2c.public_key()))
        .expect("OldWithNew is signed by the G2 key");
    assert!(nwoc.validity().not_after <= g1c.validity().not_after);

    // Issuance stays under G1 until the issuing CA rolls over; then basic-g2 is under G2
    // (devices enrolling then: tests/tests/root_rollover_client.rs).
    assert_eq!(app.active_generation(Level::Basic), "basic");
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    let basic_g2 = app
        .authority
        .ca()
        .current()
        .issuing(Level::Basic)
        .cert_der
        .to_vec();
    assert_eq!(parse(&basic_g2).issuer().as_raw(), g2c.subject().as_raw());
    let text = String::from_utf8_lossy(&basic_g2).into_owned();
    assert!(
        text.contains("/crl/root-g2.crl") && text.contains("/ocsp/root-g2"),
        "basic-g2 points at root G2's CRL and OCSP"
    );

    // cacerts: the current chain, G1, the links and the retiring G1 issuing CA (a certs-only
    // SET OF: in DER order, not in the order the server lists them).
    let all = cacerts(&app, "cacerts").await;
    for (what, der) in [
        ("root G2", &g2),
        ("root G1", &g1),
        ("NewWithOld", &nwo),
        ("OldWithNew", &own),
    ] {
        assert!(all.contains(der), "cacerts carries {what}");
    }
    assert_eq!(with_subject(&all, "Basic Issuing CA G1").len(), 1);
    assert_eq!(with_subject(&all, "Basic Issuing CA G2").len(), 1);
    let labeled = cacerts(&app, &format!("{}/cacerts", iomt_tests::PUMP)).await;
    assert!(
        labeled.contains(&g2)
            && labeled.contains(&nwo)
            && labeled.contains(&own)
            && labeled.contains(&g1)
    );
    assert_eq!(with_subject(&labeled, "Basic Issuing CA G1").len(), 1);
    assert!(with_subject(&labeled, "High Issuing CA").is_empty());

    // The bundle: both roots and both chains.
    let (status, bundle) = fetch(&app, "/ca/bundle.pem").await;
    assert_eq!(status, 200);
    let bundle_path = work.join("bundle.pem");
    std::fs::write(&bundle_path, &bundle).unwrap();
    let bundled = read_pem_certs(&bundle_path);
    assert!(bundled.contains(&g1) && bundled.contains(&g2));
    assert!(bundled.contains(&basic_g2));
    assert_eq!(with_subject(&bundled, "Basic Issuing CA G1").len(), 1);

    // Root G2 publishes its CRL and serves its certificate.
    let (status, crl) = fetch(&app, "/crl/root-g2.crl").await;
    assert_eq!(status, 200);
    let (_, crl) = x509_parser::prelude::CertificateRevocationList::from_der(&crl).unwrap();
    crl.verify_signature(g2c.public_key())
        .expect("root-g2.crl is signed by root G2");
    assert_eq!(fetch(&app, "/ca/root-g2.cer").await, (200, g2.clone()));

    if require_tool("openssl", &["version"]) {
        let cacerts_pem = work.join("cacerts.pem");
        std::fs::write(&cacerts_pem, pem_of(&all)).unwrap();
        let g1_pem = app.root_pem();
        // The old chain (device enrolled under G1) and the new chain, each to its own root.
        let basic_g2_pem = work.join("basic-g2.pem");
        std::fs::write(&basic_g2_pem, pem_of(std::slice::from_ref(&basic_g2))).unwrap();
        openssl_verify(&g1_pem, Some(&cacerts_pem), &old.join("cert.pem")).expect("old chain");
        openssl_verify(&root_g2, Some(&cacerts_pem), &basic_g2_pem).expect("new chain");
        assert!(openssl_verify(&root_g2, Some(&cacerts_pem), &old.join("cert.pem")).is_err());
        // The links: NewWithOld under the old root, OldWithNew under the new; not crosswise.
        openssl_verify(&g1_pem, None, &new_with_old).expect("NewWithOld under G1");
        openssl_verify(&root_g2, None, &old_with_new).expect("OldWithNew under G2");
        assert!(openssl_verify(&root_g2, None, &new_with_old).is_err());

        // Root G2's OCSP answers for the CA certificate it signed.
        let text = run_tool(
            Command::new("openssl")
                .args(["ocsp", "-issuer"])
                .arg(&root_g2)
                .arg("-cert")
                .arg(&basic_g2_pem)
                .arg("-CAfile")
                .arg(&root_g2)
                .args(["-url", &format!("http://{}/ocsp/root-g2", app.http)]),
        );
        assert!(text.contains(": good"), "{text}");
    }
    if let Some(linter) = iomt_tests::pkilint::tool("lint_pkix_cert") {
        let files: Vec<PathBuf> = all
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let path = work.join(format!("cacerts-{i}.pem"));
                std::fs::write(&path, pem_of(std::slice::from_ref(der))).unwrap();
                path
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            for file in files {
                iomt_tests::pkilint::assert_clean(&linter, &[], &file);
            }
        })
        .await
        .unwrap();
    }

    // `ca list`: G1 retiring, G2 active; after a restart both come from the database.
    let list = app.cli(&["ca", "list", "--json"]).await.unwrap();
    let views: serde_json::Value = serde_json::from_str(&list).unwrap();
    let status = |name: &str| {
        views
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["status"].clone())
    };
    assert_eq!(status("root"), Some("retiring".into()), "{list}");
    assert_eq!(status("root-g2"), Some("active".into()), "{list}");
    let table = app.cli(&["ca", "list"]).await.unwrap();
    assert!(
        table.contains("root-g2") && table.contains("retiring root"),
        "{table}"
    );
    let mut app = app;
    app.stop_server().await;
    app.restart().await;
    assert_eq!(app.authority.ca().current().active_root_name(), "root-g2");
    let again = cacerts(&app, "cacerts").await;
    assert!(again.contains(&nwo) && again.contains(&own));
}

#[tokio::test]
async fn root_rollover_under_an_offline_root_is_refused_with_what_to_do() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let dir = TestApp::init_dir(iomt_tests::no_reenroll_interval, None, &["--external-root"])
        .await
        .expect("init");
    let data = dir.path().join("ca");
    let root_dir = dir.path().join("offline-root");
    std::fs::create_dir(&root_dir).unwrap();
    iomt_tests::custody::offline_root(&data.join("csr"), &root_dir);
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    TestApp::cli_in(
        &path(&data),
        &[
            "ca",
            "import",
            "--root",
            &path(&root_dir.join("root.crt.pem")),
            "--certs",
            &path(&root_dir.join("signed")),
            "--root-crl",
            &path(&root_dir.join("root.crl.pem")),
        ],
    )
    .await
    .expect("import");
    let err = TestApp::cli_in(&path(&data), &["ca", "rollover", "--ca", "root"])
        .await
        .unwrap_err();
    assert!(err.contains("the root is offline"), "{err}");
    assert!(err.contains("ceremony"), "{err}");
    assert!(!data.join("ca").join("root-g2.crt.pem").exists());
    let list = TestApp::cli_in(&path(&data), &["ca", "list", "--json"])
        .await
        .unwrap();
    assert!(!list.contains("root-g2"), "{list}");
}
