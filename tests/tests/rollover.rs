//! Issuing-CA rollover (issue 20, docs/PROFILE.md §3.5) against the real server: after `ca
//! rollover --ca basic` the running server (and a replica on PostgreSQL) issues new
//! certificates and renewals from G2 without a restart; G1 keeps its CRL and OCSP (a G1
//! certificate revoked after the rollover is on G1's CRL and `revoked` in OCSP, checked with
//! openssl); a device certificate never ends after its issuer; a short-lived retiring
//! generation retires once its last certificate expired, with a final CRL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ca_server::storage::testing;
use iomt_core::policy::Level;
use iomt_tests::rollover::wait_for_material;
use iomt_tests::{TestApp, read_pem_certs, require_tool, run_tool, webpki_verify};
use x509_parser::prelude::{FromDer, X509Certificate};

const FAST: &str = "[ca]\nreload_interval_secs = 1\n";

async fn enroll(app: &TestApp, serial: &str) -> PathBuf {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    app.enroll(serial, &token, &dir).await.expect("enroll");
    dir
}

async fn renew(app: &TestApp, dir: &Path) {
    let schedule = enroll_client::rotation::Schedule {
        window_percent: 70,
        jitter_percent: 0,
    };
    enroll_client::rotation::renew(&app.est_server(), dir, schedule, true)
        .await
        .expect("renew");
}

fn leaf(dir: &Path) -> Vec<u8> {
    read_pem_certs(&dir.join("cert.pem")).remove(0)
}

fn issuer_cn(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    cert.issuer().to_string()
}

fn not_after(der: &[u8]) -> i64 {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    cert.validity().not_after.timestamp()
}

fn serial_hex(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    hex::encode(cert.raw_serial())
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

/// The serials (lowercase hex) a CRL served at `/crl/<name>.crl` lists, after checking its
/// signature against the CA certificate served at `/ca/<name>.cer`.
async fn crl_serials(app: &TestApp, name: &str) -> Vec<String> {
    use x509_parser::prelude::CertificateRevocationList;
    let (status, der) = fetch(app, &format!("/crl/{name}.crl")).await;
    assert_eq!(status, 200, "/crl/{name}.crl");
    let (status, ca) = fetch(app, &format!("/ca/{name}.cer")).await;
    assert_eq!(status, 200, "/ca/{name}.cer");
    let (_, crl) = CertificateRevocationList::from_der(&der).expect("CRL");
    let (_, ca) = X509Certificate::from_der(&ca).expect("CA certificate");
    crl.verify_signature(ca.public_key())
        .expect("the CRL is signed by its generation");
    crl.iter_revoked_certificates()
        .map(|entry| hex::encode(entry.raw_serial()))
        .collect()
}

#[tokio::test]
async fn issuing_ca_rollover_moves_issuance_to_g2_and_g1_keeps_its_crl_and_ocsp() {
    let app = TestApp::spawn_with_ca_config(FAST, None).await;
    let old = enroll(&app, "IP20000001").await;
    let other = enroll(&app, "IP20000002").await;
    assert!(issuer_cn(&leaf(&old)).contains("Basic Issuing CA G1"));

    let out = app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    assert!(out.contains("basic-g2 is active"), "{out}");
    app.wait_for_active(Level::Basic, "basic-g2").await;

    // New devices get G2; the chain verifies to the same root.
    let fresh = enroll(&app, "IP20000003").await;
    let fresh_leaf = leaf(&fresh);
    assert!(issuer_cn(&fresh_leaf).contains("Basic Issuing CA G2"));
    let chain = read_pem_certs(&fresh.join("chain.pem"));
    webpki_verify(&fresh_leaf, &chain[0], &app.root_der());
    assert_eq!(app.certificates("IP20000003").await[0].issuer, "basic-g2");

    // A G1 device renews under G2.
    let g1_serial = serial_hex(&leaf(&old));
    renew(&app, &old).await;
    let renewed = leaf(&old);
    assert!(issuer_cn(&renewed).contains("Basic Issuing CA G2"));
    let records = app.certificates("IP20000001").await;
    assert!(
        records
            .iter()
            .any(|r| r.issuer == "basic-g2" && r.supersedes.as_deref() == Some(&*g1_serial))
    );

    // A G1 certificate revoked after the rollover: on G1's CRL (not G2's), revoked in OCSP.
    let revoked = serial_hex(&leaf(&other));
    app.cli(&["revoke", "--serial", &revoked, "--reason", "keyCompromise"])
        .await
        .unwrap();
    assert!(crl_serials(&app, "basic").await.contains(&revoked));
    assert!(!crl_serials(&app, "basic-g2").await.contains(&revoked));

    if require_tool("openssl", &["version"]) {
        let g1_issuer = app.dir.path().join("basic-g1.pem");
        std::fs::copy(other.join("chain.pem"), &g1_issuer).unwrap();
        let ocsp = |issuer: PathBuf, cert: PathBuf, responder: &str| {
            let url = format!("http://{}/ocsp/{responder}", app.http);
            let root = app.root_pem();
            async move {
                tokio::task::spawn_blocking(move || {
                    let out = Command::new("openssl")
                        .args(["ocsp", "-issuer"])
                        .arg(&issuer)
                        .arg("-cert")
                        .arg(&cert)
                        .arg("-CAfile")
                        .arg(&root)
                        .args(["-url", &url])
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr)
                })
                .await
                .unwrap()
            }
        };
        let text = ocsp(g1_issuer.clone(), other.join("cert.pem"), "basic").await;
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(": revoked"), "{text}");
        let text = ocsp(fresh.join("chain.pem"), fresh.join("cert.pem"), "basic-g2").await;
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(": good"), "{text}");
        // Both chains verify with openssl against the one root.
        for dir in [&fresh, &old] {
            run_tool(
                Command::new("openssl")
                    .arg("verify")
                    .arg("-CAfile")
                    .arg(app.root_pem())
                    .arg("-untrusted")
                    .arg(dir.join("chain.pem"))
                    .arg(dir.join("cert.pem")),
            );
        }
    }

    // `ca list`: both generations, their status and valid-certificate counts.
    let list = app.cli(&["ca", "list", "--json"]).await.unwrap();
    let views: serde_json::Value = serde_json::from_str(&list).unwrap();
    let view = |name: &str| {
        views
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {list}"))
    };
    assert_eq!(view("basic")["status"], "retiring");
    // G1 still has IP20000001's superseded (unexpired) certificate; IP20000002's is revoked.
    assert_eq!(view("basic")["valid_certificates"], 1);
    assert_eq!(view("basic-g2")["status"], "active");
    assert_eq!(view("basic-g2")["valid_certificates"], 2);
    assert_eq!(view("basic-g2")["generation"], "G2");
    assert_eq!(view("substantial")["status"], "active");
    let table = app.cli(&["ca", "list"]).await.unwrap();
    assert!(table.contains("basic-g2"), "{table}");
    assert!(table.contains("retiring: issues nothing"), "{table}");

    // After a restart the server loads both generations from the database.
    let mut app = app;
    app.stop_server().await;
    app.restart().await;
    assert_eq!(app.active_generation(Level::Basic), "basic-g2");
    assert!(crl_serials(&app, "basic").await.contains(&revoked));
    let again = enroll(&app, "IP20000004").await;
    assert!(issuer_cn(&leaf(&again)).contains("Basic Issuing CA G2"));
}

#[tokio::test]
async fn a_device_certificate_never_ends_after_its_issuer_and_the_short_ca_is_flagged() {
    let app = TestApp::spawn_with_ca_config(
        &format!("{FAST}[ca.basic]\nlifetime = \"2h\"\nrollover_before_days = 30\n"),
        None,
    )
    .await;
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    let dir = enroll(&app, "IP20000010").await;
    let cert = leaf(&dir);
    let issuer = read_pem_certs(&dir.join("chain.pem")).remove(0);
    assert!(issuer_cn(&cert).contains("G2"));
    // Capped at the issuer's notAfter (the policy would give a year).
    assert_eq!(not_after(&cert), not_after(&issuer));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(not_after(&issuer) <= now + 2 * 3600 + 60);

    let list = app.cli(&["ca", "list"]).await.unwrap();
    assert!(
        list.contains("can no longer cover a full certificate lifetime"),
        "{list}"
    );
    assert!(list.contains("planned rollover date"), "{list}");
}

#[tokio::test]
async fn concurrent_rollovers_of_one_ca_make_exactly_one_new_generation() {
    let app = TestApp::spawn_with_ca_config(FAST, None).await;
    let (a, b) = tokio::join!(
        app.cli(&["ca", "rollover", "--ca", "high"]),
        app.cli(&["ca", "rollover", "--ca", "high"]),
    );
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    let loser = [a, b].into_iter().find_map(Result::err).unwrap();
    assert!(loser.contains("concurrent rollover"), "{loser}");
    let list = app.cli(&["ca", "list", "--json"]).await.unwrap();
    assert!(
        list.contains("high-g2") && !list.contains("high-g3"),
        "{list}"
    );
}

#[tokio::test]
async fn a_retiring_generation_retires_after_its_last_certificate_expired() {
    // G2 lives 70 s: its device certificates end with it; then G3 takes over and G2 retires.
    let app =
        TestApp::spawn_with_ca_config(&format!("{FAST}[ca.basic]\nlifetime = \"70s\"\n"), None)
            .await;
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    let dir = enroll(&app, "IP20000020").await;
    let short = leaf(&dir);
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g3").await;
    let ends = not_after(&short);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let list = app.cli(&["ca", "list", "--json"]).await.unwrap();
        let views: serde_json::Value = serde_json::from_str(&list).unwrap();
        let g2 = views
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "basic-g2")
            .cloned()
            .unwrap();
        if g2["status"] == "retired" {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(now >= ends, "retired before its last certificate expired");
            break;
        }
        assert_eq!(g2["status"], "retiring", "{list}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never retired: {list}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Its final CRL stays published; G1 (with no certificate left) retired too.
    let (status, _) = fetch(&app, "/crl/basic-g2.crl").await;
    assert_eq!(status, 200);
    let list = app.cli(&["ca", "list"]).await.unwrap();
    assert!(list.contains("basic-g3"), "{list}");
}

#[tokio::test]
async fn replicas_on_postgres_pick_up_a_rollover_without_restart() {
    let Some(database) = testing::create().await else {
        return;
    };
    let app = TestApp::spawn_with_ca_config(FAST, Some(&database.url)).await;
    let (_replica_https, _replica_http, replica_revocation, _stop) = app.spawn_replica().await;
    let old = enroll(&app, "IP20000030").await;
    app.cli(&["ca", "rollover", "--ca", "substantial"])
        .await
        .unwrap();
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    wait_for_material(replica_revocation.ca(), Level::Basic, "basic-g2").await;
    wait_for_material(
        replica_revocation.ca(),
        Level::Substantial,
        "substantial-g2",
    )
    .await;
    renew(&app, &old).await;
    assert!(issuer_cn(&leaf(&old)).contains("Basic Issuing CA G2"));
    // The replica answers OCSP for both generations and serves both CRLs.
    assert_eq!(
        replica_revocation.responder_names(),
        [
            "root",
            "basic",
            "basic-g2",
            "substantial",
            "substantial-g2",
            "high"
        ]
    );
    replica_revocation.current_crl("basic").await.unwrap();
    replica_revocation.current_crl("basic-g2").await.unwrap();

    // A root rollover made on one replica: the other loads root G2 and its links from
    // PostgreSQL, serves root G2's CRL and answers as its OCSP responder.
    app.cli(&["ca", "rollover", "--ca", "root"]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while replica_revocation.ca().current().active_root_name() != "root-g2" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica did not pick up root-g2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(replica_revocation.ca().current().root_links().len(), 2);
    assert!(
        replica_revocation
            .responder_names()
            .contains(&"root-g2".to_owned())
    );
    replica_revocation.current_crl("root-g2").await.unwrap();
}

#[tokio::test]
async fn offline_root_rollover_is_a_csr_and_a_ceremony_then_ca_import_activates_it() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    // A CA under an offline root (the README ceremony), with a one-second reload interval.
    let dir = TestApp::init_dir(iomt_tests::no_reenroll_interval, None, &["--external-root"])
        .await
        .expect("init");
    let data = dir.path().join("ca");
    let config = data.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap() + "\n" + FAST;
    std::fs::write(&config, text).unwrap();
    let root_dir = dir.path().join("offline-root");
    std::fs::create_dir(&root_dir).unwrap();
    iomt_tests::custody::offline_root(&data.join("csr"), &root_dir);
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let root_crt = path(&root_dir.join("root.crt.pem"));
    TestApp::cli_in(
        &path(&data),
        &[
            "ca",
            "import",
            "--root",
            &root_crt,
            "--certs",
            &path(&root_dir.join("signed")),
            "--root-crl",
            &path(&root_dir.join("root.crl.pem")),
        ],
    )
    .await
    .expect("import");
    let app = TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await;
    let old = enroll(&app, "IP20000040").await;

    // The rollover makes a key and a CSR; G1 stays active until the ceremony.
    let out = app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    assert!(out.contains("basic-g2.csr.pem"), "{out}");
    let list = app.cli(&["ca", "list"]).await.unwrap();
    assert!(list.contains("pending"), "{list}");
    assert_eq!(app.active_generation(Level::Basic), "basic");
    // A second rollover while one is pending is refused.
    let again = app
        .cli(&["ca", "rollover", "--ca", "basic"])
        .await
        .unwrap_err();
    assert!(again.contains("pending"), "{again}");

    // The ceremony, as printed: the generated script signs it (and makes the root's OCSP answer).
    let ceremony = app.data_dir().join("rollover").join("basic-g2");
    let signed = ceremony.join("signed");
    run_tool(
        Command::new("sh")
            .current_dir(&ceremony)
            .arg("sign-with-openssl.sh")
            .arg(&root_crt)
            .arg(root_dir.join("root.key"))
            .arg(&signed),
    );
    // A certificate for another key is refused and changes nothing.
    let wrong = dir_with_wrong_certificate(&app, &root_dir);
    let refused = app
        .cli(&[
            "ca",
            "import",
            "--root",
            &root_crt,
            "--certs",
            &path(&wrong),
        ])
        .await
        .unwrap_err();
    assert!(refused.contains("does not match the key"), "{refused}");
    assert!(app.cli(&["ca", "list"]).await.unwrap().contains("pending"));

    let out = app
        .cli(&[
            "ca",
            "import",
            "--root",
            &root_crt,
            "--certs",
            &path(&signed),
        ])
        .await
        .unwrap();
    assert!(out.contains("basic-g2 is active"), "{out}");
    app.wait_for_active(Level::Basic, "basic-g2").await;

    let fresh = enroll(&app, "IP20000041").await;
    assert!(issuer_cn(&leaf(&fresh)).contains("Basic Issuing CA G2"));
    renew(&app, &old).await;
    assert!(issuer_cn(&leaf(&old)).contains("Basic Issuing CA G2"));
    for dir in [&fresh, &old] {
        run_tool(
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(app.root_pem())
                .arg("-untrusted")
                .arg(dir.join("chain.pem"))
                .arg(dir.join("cert.pem")),
        );
    }
    // The root's pre-signed answer over the new CA certificate is served at /ocsp/root.
    let url = format!("http://{}/ocsp/root", app.http);
    let cert = signed.join("basic-g2.crt.pem");
    let root_pem = app.root_pem();
    let text = tokio::task::spawn_blocking(move || {
        let out = Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(&root_pem)
            .arg("-cert")
            .arg(&cert)
            .arg("-CAfile")
            .arg(&root_pem)
            .args(["-url", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    })
    .await
    .unwrap();
    assert!(text.contains(": good"), "{text}");
}

/// A directory holding `basic-g2.crt.pem` signed by the offline root for a key that is not the
/// pending generation's.
fn dir_with_wrong_certificate(app: &TestApp, root_dir: &Path) -> PathBuf {
    let wrong = app.dir.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let key = wrong.join("other.key");
    run_tool(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key),
    );
    run_tool(
        Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&key)
            .args(["-subj", "/CN=other", "-out"])
            .arg(wrong.join("other.csr")),
    );
    run_tool(
        Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(wrong.join("other.csr"))
            .arg("-CA")
            .arg(root_dir.join("root.crt.pem"))
            .arg("-CAkey")
            .arg(root_dir.join("root.key"))
            .args(["-days", "30", "-set_serial", "0x1234567890abcdef12", "-out"])
            .arg(wrong.join("basic-g2.crt.pem")),
    );
    wrong
}
