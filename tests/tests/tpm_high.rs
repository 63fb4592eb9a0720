//! The assurance levels a TPM unlocks, end to end with the `enroll-client` command line, a
//! software TPM (swtpm) and the real CA:
//! - a High ventilator enrolled on the line by a station (`enroll --station … --tpm …`): key made
//!   and attested in the TPM, the CSR bound to its TLS connection (RFC 9266);
//! - a Substantial monitor enrolled in the field with a one-time token and TPM evidence.
//!
//! Each certificate lints clean with pkilint, verifies with `openssl verify -policy_check` for
//! its level's OID, is shown by `enroll-client verify` with its level and its TPM, is accepted by
//! the hospital example over mutual TLS signed in the TPM, and renews (`renew --tpm`) with a
//! new key attested in the same TPM. The refusals of a High request whose binding is missing or
//! taken from another connection, and of evidence larger than the request limit, change
//! nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use enroll_client::attested::{self, ChallengeAuth};
use enroll_client::error::ClientError;
use enroll_client::est::EstClient;
use enroll_client::keystore;
use enroll_client::tpm::{Tpm, TpmClientCert, TpmKey, TpmKeyFile};
use hospital_example::Decision;
use iomt_tests::client_process::{ClientRun, RunningClient, child_entry, run_client};
use iomt_tests::hospital::{Hospital, device_chain};
use iomt_tests::swtpm::{self, SoftwareTpm};
use iomt_tests::{MONITOR, TestApp, no_reenroll_interval, read_pem_certs, require_tool, run_tool};
use x509_parser::prelude::{FromDer, X509Certificate};

const VENTILATOR: &str = "example-ventilator";
const HIGH_OID: &str = "1.3.6.1.4.1.32473.7.1.3";
const SUBSTANTIAL_OID: &str = "1.3.6.1.4.1.32473.7.1.2";

#[test]
fn client_process_entry_runs_the_client_when_asked() {
    child_entry();
}

/// A level as a hospital checks it: its policy OID, its `verify --require-level` name and the
/// issuing CA's CRL.
struct Level {
    oid: &'static str,
    name: &'static str,
    crl: &'static str,
}

const HIGH: Level = Level {
    oid: HIGH_OID,
    name: "high",
    crl: "high",
};
const SUBSTANTIAL: Level = Level {
    oid: SUBSTANTIAL_OID,
    name: "substantial",
    crl: "substantial",
};

/// `COMMAND --server URL --ca-cert ROOT ARGS...` for `app`'s CA.
fn command_line(app: &TestApp, command: &str, args: &[&str]) -> Vec<String> {
    let root = app.root_pem();
    [command, "--server", &app.server_url(), "--ca-cert"]
        .into_iter()
        .map(str::to_owned)
        .chain([root.display().to_string()])
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect()
}

/// Runs `enroll-client COMMAND` against `app` with `args` and `env`, to its end.
async fn client(app: &TestApp, command: &str, args: &[&str], env: &[(&str, &str)]) -> ClientRun {
    let line = command_line(app, command, args);
    let line: Vec<&str> = line.iter().map(String::as_str).collect();
    run_client(&line, env).await
}

/// [`client`], which must exit 0 (else the test fails with its output).
async fn client_ok(app: &TestApp, command: &str, args: &[&str]) -> ClientRun {
    let run = client(app, command, args, &[]).await;
    assert_eq!(
        run.code,
        Some(0),
        "enroll-client {command} {args:?}:\n{run:?}"
    );
    run
}

/// Creates a station for the ventilator and enrolls its own key; its credential directory.
async fn ventilator_station(app: &TestApp, name: &str) -> PathBuf {
    let token = app
        .cli(&[
            "station",
            "create",
            "--name",
            name,
            "--products",
            VENTILATOR,
        ])
        .await
        .expect("station create");
    let dir = app.dir.path().join(format!("station-{name}"));
    app.enroll(name, token.trim(), &dir)
        .await
        .expect("the station enrolls its own key");
    dir
}

/// The certificate serial (hex) and SubjectPublicKeyInfo of a device's cert.pem.
fn leaf_facts(dir: &Path) -> (String, Vec<u8>) {
    let der = read_pem_certs(&dir.join("cert.pem")).remove(0);
    let (_, cert) = X509Certificate::from_der(&der).expect("certificate");
    (cert.raw_serial_as_string(), cert.public_key().raw.to_vec())
}

/// Everything a hospital and an auditor check on the credential in `dir`: key.pem holds only
/// TPM blobs; pkilint; `openssl verify -policy_check` for the level's OID; `enroll-client
/// verify` names the level and the attested TPM; the hospital example accepts the device over
/// mutual TLS whose handshake the TPM signs.
async fn assert_accepted_at(app: &TestApp, tpm: &SoftwareTpm, dir: &Path, level: &Level) {
    let key_pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"),
        "key.pem holds the TPM key's blobs only"
    );
    if let Some(linter) = iomt_tests::pkilint::tool("lint_pkix_cert") {
        let cert = dir.join("cert.pem");
        tokio::task::spawn_blocking(move || iomt_tests::pkilint::assert_clean(&linter, &[], &cert))
            .await
            .unwrap();
    }
    if require_tool("openssl", &["version"]) {
        run_tool(
            Command::new("openssl")
                .args(["verify", "-x509_strict", "-purpose", "sslclient"])
                .args(["-policy_check", "-explicit_policy", "-policy", level.oid])
                .arg("-CAfile")
                .arg(app.root_pem())
                .arg("-untrusted")
                .arg(dir.join("chain.pem"))
                .arg(dir.join("cert.pem")),
        );
    }

    let root = app.root_pem();
    let cert = dir.join("cert.pem");
    let chain = dir.join("chain.pem");
    let verified = run_client(
        &[
            "verify",
            "--ca-cert",
            root.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--chain",
            chain.to_str().unwrap(),
            "--require-level",
            level.name,
        ],
        &[],
    )
    .await;
    assert_eq!(verified.code, Some(0), "{verified:?}");
    let report = verified.stdout;
    assert!(
        report.contains(&format!("level        {} ({})", level.name, level.oid)),
        "{report}"
    );
    assert!(
        report.contains("key          in a TPM 2.0 (hwSerialNum "),
        "{report}"
    );
    assert!(report.contains(", EK certificate SHA-256 "), "{report}");
    assert!(
        report.contains("residency verified by the CA's key attestation"),
        "{report}"
    );
    assert!(report.contains("verdict      TRUSTED"), "{report}");

    let hospital = Hospital::start(app, &[level.crl, "root"], &[level.oid]).await;
    // The device's TPM signs the handshake (one connection to the TPM, closed afterwards so the
    // client process can reach it again).
    let signer = TpmKeyFile {
        tpm: Tpm::open(&tpm.tcti).expect("TPM"),
        pem: key_pem.into_bytes(),
    };
    let tls = hospital
        .client_config()
        .with_client_cert_resolver(Arc::new(TpmClientCert::new(device_chain(dir), signer)));
    let (decision, seen) = hospital.connect_with(tls).await;
    let Decision::Accepted(identity) = &decision else {
        panic!("expected acceptance: {decision} / {seen:?}");
    };
    assert_eq!(identity.policy_oid.as_str(), level.oid);
    assert_eq!(seen.expect("answer").0, 200);
}

/// `renew --force --tpm`: a new key attested in the same TPM, over mutual TLS signed by the
/// current one; the new certificate passes every check again.
async fn renew_and_check(app: &TestApp, tpm: &SoftwareTpm, dir: &Path, level: &Level) {
    let (old_serial, old_key) = leaf_facts(dir);
    client_ok(
        app,
        "renew",
        &[
            "--out",
            dir.to_str().unwrap(),
            "--tpm",
            &tpm.tcti,
            "--force",
        ],
    )
    .await;
    let (new_serial, new_key) = leaf_facts(dir);
    assert_ne!(new_serial, old_serial, "a new certificate");
    assert_ne!(new_key, old_key, "a new key, made in the TPM");
    assert_accepted_at(app, tpm, dir, level).await;
}

#[tokio::test]
async fn a_high_ventilator_enrolls_through_a_station_with_its_tpm_and_renews() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn_published().await;
    tpm.trust_manufacturer(&app).await;
    tpm.run("tpm2_nvread", &["0x1c00002", "-o", "ek.der"]);
    let serial = "VT90000001";
    app.register(serial, VENTILATOR).await;
    let station = ventilator_station(&app, "plant1-line3-st01").await;

    let out = app.dir.path().join(serial);
    client_ok(
        &app,
        "enroll",
        &[
            "--station",
            station.to_str().unwrap(),
            "--tpm",
            &tpm.tcti,
            "--serial",
            serial,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    let records = app.certificates(serial).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].authorized_by, "station:plant1-line3-st01");
    let bound = app
        .authority
        .store()
        .device_tpm(serial)
        .await
        .unwrap()
        .expect("the ventilator is bound to its TPM");
    assert_eq!(bound.ek_sha256, swtpm::sha256(&tpm.read("ek.der")));
    assert_accepted_at(&app, &tpm, &out, &HIGH).await;

    // key.pem is usable only through its TPM: a renewal without --tpm is a local error.
    let before = std::fs::read(out.join("cert.pem")).unwrap();
    let refused = client(
        &app,
        "renew",
        &["--out", out.to_str().unwrap(), "--force"],
        &[],
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("pass --tpm TCTI"), "{refused:?}");
    assert_eq!(std::fs::read(out.join("cert.pem")).unwrap(), before);

    renew_and_check(&app, &tpm, &out, &HIGH).await;
    assert_eq!(app.certificates(serial).await.len(), 2);
}

#[tokio::test]
async fn a_substantial_monitor_enrolls_with_a_token_and_its_tpm_and_renews() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn_published_with_policies(|file, text| {
        // Renewals back to back: no minimum re-enrollment interval.
        no_reenroll_interval(file, &swtpm::monitor_naming_its_tpm(file, text))
    })
    .await;
    tpm.trust_manufacturer(&app).await;
    let serial = "PM70000401";
    app.register(serial, MONITOR).await;
    let token = app.token(serial).await;

    let out = app.dir.path().join(serial);
    // The token in the environment, as the README advises (and never in the process list).
    let enrolled = client(
        &app,
        "enroll",
        &[
            "--tpm",
            &tpm.tcti,
            "--serial",
            serial,
            "--out",
            out.to_str().unwrap(),
        ],
        &[("ENROLL_TOKEN", &token)],
    )
    .await;
    assert_eq!(enrolled.code, Some(0), "{enrolled:?}");
    assert!(app.token_used(&token).await);
    assert_accepted_at(&app, &tpm, &out, &SUBSTANTIAL).await;

    renew_and_check(&app, &tpm, &out, &SUBSTANTIAL).await;
    assert_eq!(app.certificates(serial).await.len(), 2);

    // The unattended daemon renews the same way (window open at once, no OCSP check).
    let (before, _) = leaf_facts(&out);
    let line = command_line(
        &app,
        "run",
        &[
            "--out",
            out.to_str().unwrap(),
            "--tpm",
            &tpm.tcti,
            "--window-percent",
            "0",
            "--jitter-percent",
            "0",
            "--ocsp-interval",
            "0s",
        ],
    );
    let line: Vec<&str> = line.iter().map(String::as_str).collect();
    let mut running = RunningClient::start(&line, &[("ENROLL_LOG", "info")]);
    let installed = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        running.wait_until(|| {
            let installed = leaf_facts(&out).0 != before;
            async move { installed }
        }),
    )
    .await;
    assert!(
        installed.is_ok(),
        "no renewal within 60 s:\n{}",
        running.log()
    );
    let run = running.stop().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // (With the window open at once it may have renewed again before it stopped.)
    assert!(app.certificates(serial).await.len() >= 3);
    assert_accepted_at(&app, &tpm, &out, &SUBSTANTIAL).await;
}

/// A CSR for `serial` with fresh evidence from the TPM key `key`, and `binding` as its
/// challengePassword (none when `None`).
async fn attested_csr(
    client: &EstClient,
    key: &TpmKey,
    serial: &str,
    binding: Option<&[u8; 32]>,
) -> Vec<u8> {
    let evidence = attested::evidence(client, key, serial, ChallengeAuth::ClientCertificate)
        .await
        .expect("evidence");
    attested::attested_csr(key, serial, &evidence, binding).expect("CSR")
}

#[tokio::test]
async fn a_high_request_without_its_own_connections_binding_is_refused_and_changes_nothing() {
    if !swtpm::available() {
        return;
    }
    let tpm_sim = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    tpm_sim.trust_manufacturer(&app).await;
    let serial = "VT90000002";
    app.register(serial, VENTILATOR).await;
    let station = ventilator_station(&app, "plant1-line3-st02").await;
    let station_credential = keystore::load(&station).unwrap();
    let identity = enroll_client::tls::ClientIdentity {
        chain: device_chain(&station),
        key: enroll_client::tls::ClientKey::Software(
            iomt_tests::hospital::device_credential(&station).1,
        ),
    };
    let client = EstClient::new(&app.server_url(), &app.root_der(), "root", Some(identity))
        .expect("EST client");
    let tpm = Tpm::open(&tpm_sim.tcti).expect("TPM");
    let key = TpmKey::create_in(&tpm).expect("TPM key");
    let station_http = app.client_with_identity(&station_credential);
    let url = format!("{}/.well-known/est/simpleenroll", app.server_url());
    let post = |csr: Vec<u8>| {
        let request = station_http
            .post(&url)
            .header("content-type", "application/pkcs10")
            .body(TestApp::est_body(&csr));
        async move {
            let response = request.send().await.unwrap();
            let code = response.headers()["x-error-code"]
                .to_str()
                .unwrap()
                .to_owned();
            (response.status().as_u16(), code)
        }
    };

    // Real evidence, but no binding: a High product requires one.
    let csr = attested_csr(&client, &key, serial, None).await;
    assert_eq!(post(csr).await, (403, "csr.channel_binding_missing".into()));

    // A binding read on one connection, the CSR sent on another (a relay in the middle).
    let mut captured = None;
    let stopped = client
        .bound_enroll(None, "simpleenroll", None, |exporter| {
            captured = Some(*exporter);
            Err(ClientError::Local("nothing sent".into()))
        })
        .await;
    assert!(matches!(stopped, Err(ClientError::Local(_))), "{stopped:?}");
    let foreign = captured.expect("the exporter of the first connection");
    let evidence = attested::evidence(&client, &key, serial, ChallengeAuth::ClientCertificate)
        .await
        .unwrap();
    let relayed = client
        .bound_enroll(None, "simpleenroll", None, |_own| {
            attested::attested_csr(&key, serial, &evidence, Some(&foreign))
        })
        .await;
    match relayed {
        Err(ClientError::Forbidden { code, .. }) => {
            assert_eq!(code, "csr.channel_binding_mismatch")
        }
        other => panic!("expected csr.channel_binding_mismatch, got {other:?}"),
    }

    // Evidence over the evidence limit (in a request within the body limit), and a request
    // whose evidence makes it larger than the body limit: refused before anything is parsed.
    let oversized = |length: usize| {
        // OCTET STRING, its length in the fewest octets DER allows.
        let digits: Vec<u8> = (length as u32)
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut octets = vec![0x04, 0x80 | digits.len() as u8];
        octets.extend_from_slice(&digits);
        octets.resize(octets.len() + length, 0);
        octets
    };
    let too_much = oversized(iomt_core::attestation::MAX_EVIDENCE + 1);
    let refused = client
        .bound_enroll(None, "simpleenroll", None, |own| {
            attested::attested_csr(&key, serial, &too_much, Some(own))
        })
        .await;
    match refused {
        Err(ClientError::Server { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (413, "attestation.too_large"))
        }
        other => panic!("expected 413 attestation.too_large, got {other:?}"),
    }
    let beyond_the_body_limit = oversized(ca_server::api::BODY_LIMIT);
    let csr = attested::attested_csr(&key, serial, &beyond_the_body_limit, None).unwrap();
    assert_eq!(post(csr).await, (413, "est.too_large".into()));

    assert!(app.certificates(serial).await.is_empty(), "nothing issued");
    assert!(
        app.authority
            .store()
            .device_tpm(serial)
            .await
            .unwrap()
            .is_none(),
        "no TPM bound by a refused request"
    );

    // The same station, TPM and key, bound on the connection that sends it: issued.
    let evidence = attested::evidence(&client, &key, serial, ChallengeAuth::ClientCertificate)
        .await
        .unwrap();
    let issued = client
        .bound_enroll(None, "simpleenroll", None, |own| {
            attested::attested_csr(&key, serial, &evidence, Some(own))
        })
        .await
        .expect("a bound, attested request is issued");
    assert!(!issued.is_empty());
    assert_eq!(app.certificates(serial).await.len(), 1);
}

#[tokio::test]
async fn a_tpm_that_cannot_be_reached_exits_11_and_uses_nothing() {
    // No TPM listens on port 1: the TCTI fails before anything is asked of the CA.
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000401").await;
    let out = app.dir.path().join("IP20000401");
    let run = client(
        &app,
        "enroll",
        &[
            "--tpm",
            "swtpm:host=127.0.0.1,port=1",
            "--serial",
            "IP20000401",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("ENROLL_TOKEN", &token)],
    )
    .await;
    assert_eq!(run.code, Some(11), "{run:?}");
    assert!(run.stderr.contains("TPM"), "{run:?}");
    assert!(!run.stderr.contains(&token), "the token is never printed");
    assert!(!app.token_used(&token).await);
    assert!(!out.join("cert.pem").exists());
}
