//! Devices across a root rollover (issue 20 §3): a fleet enrolled under root G1 keeps renewing
//! after `ca rollover --ca root` (taking root G2 into `DIR/trust.pem` through the NewWithOld
//! link) and after `ca rollover --ca basic` (renewing into the G2 chain); new devices chain to
//! G2; a G1 device revoked after the rollover is on its issuer's CRL and `revoked` in OCSP; the
//! hospital example server (rustls, with CRLs) and nginx, given the trust bundle, accept both
//! chains. A new root offered without a link, or with a forged one, is refused (in the TLS
//! handshake, the HTTPS certificate being under G2 by then) and `trust.pem` stays as it was.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hospital_example::Decision;
use iomt_core::policy::Level;
use iomt_tests::client_process::{RunningClient, child_entry};
use iomt_tests::hospital::{self, Hospital};
use iomt_tests::{TestApp, read_pem_certs, require_tool, run_tool, webpki_verify};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

const FAST: &str = "[ca]\nreload_interval_secs = 1\n";
const BASIC: &str = "1.3.6.1.4.1.32473.7.1.1";

#[test]
fn client_process_entry_runs_the_client_when_asked() {
    child_entry();
}

async fn enroll(app: &TestApp, serial: &str) -> PathBuf {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    app.enroll(serial, &token, &dir).await.expect("enroll");
    dir
}

async fn renew(app: &TestApp, dir: &Path) -> Result<(), enroll_client::error::ClientError> {
    let schedule = enroll_client::rotation::Schedule {
        window_percent: 70,
        jitter_percent: 0,
    };
    enroll_client::rotation::renew(&app.est_server(), dir, schedule, true)
        .await
        .map(|_| ())
}

fn leaf(dir: &Path) -> Vec<u8> {
    read_pem_certs(&dir.join("cert.pem")).remove(0)
}

fn issuer(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .issuer()
        .to_string()
}

fn subjects(path: &Path) -> Vec<String> {
    read_pem_certs(path)
        .iter()
        .map(|d| {
            X509Certificate::from_der(d)
                .unwrap()
                .1
                .subject()
                .to_string()
        })
        .collect()
}

fn pem_of(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.clone())))
        .collect()
}

async fn fetch(app: &TestApp, path: &str) -> Vec<u8> {
    let response = app
        .plain_client()
        .get(format!("http://{}{path}", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_g1_fleet_renews_across_the_root_rollover_and_hospitals_accept_both_chains() {
    let app = TestApp::spawn_with_ca_config(FAST, None).await;
    let renewing = enroll(&app, "IP20000301").await;
    let revoked = enroll(&app, "IP20000302").await;
    let untouched = enroll(&app, "IP20000303").await;
    let g1 = app.root_der().to_vec();
    assert_eq!(
        read_pem_certs(&renewing.join("trust.pem")),
        vec![g1.clone()]
    );

    app.cli(&["ca", "rollover", "--ca", "root"]).await.unwrap();
    app.wait_for_root("root-g2").await;
    let g2 = read_pem_certs(&app.data_dir().join("ca").join("root-g2.crt.pem")).remove(0);

    // The first renewal after the root rollover takes G2 in through its link; still G1 issuance.
    renew(&app, &renewing)
        .await
        .expect("renew after the root rollover");
    assert_eq!(
        read_pem_certs(&renewing.join("trust.pem")),
        vec![g1.clone(), g2.clone()]
    );
    assert!(issuer(&leaf(&renewing)).contains("Basic Issuing CA G1"));

    // After the issuing CA rolls over, renewals and new devices chain to G2.
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    renew(&app, &renewing)
        .await
        .expect("renew into the G2 chain");
    let fresh = enroll(&app, "IP20000304").await;
    for dir in [&renewing, &fresh] {
        let chain = read_pem_certs(&dir.join("chain.pem"));
        assert!(issuer(&leaf(dir)).contains("Basic Issuing CA G2"));
        assert_eq!(chain[1], g2, "chain.pem ends with root G2");
        webpki_verify(&leaf(dir), &chain[0], &CertificateDer::from(g2.clone()));
        assert_eq!(read_pem_certs(&dir.join("trust.pem")).len(), 2);
    }
    // A device that has not renewed yet still holds the G1 chain.
    assert_eq!(read_pem_certs(&untouched.join("chain.pem"))[1], g1);

    // A G1 device revoked after the rollover: on G1's CRL, `revoked` by OCSP.
    let serial = hex::encode(
        X509Certificate::from_der(&leaf(&revoked))
            .unwrap()
            .1
            .raw_serial(),
    );
    app.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"])
        .await
        .unwrap();
    let crl = fetch(&app, "/crl/basic.crl").await;
    let (_, crl) = x509_parser::prelude::CertificateRevocationList::from_der(&crl).unwrap();
    assert!(
        crl.iter_revoked_certificates()
            .any(|e| hex::encode(e.raw_serial()) == serial)
    );

    let work = app.dir.path().join("hospital");
    std::fs::create_dir_all(&work).unwrap();
    let bundle = work.join("bundle.pem");
    std::fs::write(&bundle, fetch(&app, "/ca/bundle.pem").await).unwrap();
    let names = subjects(&bundle);
    assert!(names.iter().any(|n| n.contains("Root CA G1")));
    assert!(names.iter().any(|n| n.contains("Root CA G2")));

    if require_tool("openssl", &["version"]) {
        let out = Command::new("openssl")
            .args(["ocsp", "-issuer"])
            .arg(revoked.join("chain.pem"))
            .arg("-cert")
            .arg(revoked.join("cert.pem"))
            .arg("-CAfile")
            .arg(app.root_pem())
            .args(["-url", &format!("http://{}/ocsp/basic", app.http)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Response verify OK") && text.contains(": revoked"),
            "{text}"
        );
    }

    // The hospital example server, trusting the bundle's roots, with every CRL in use.
    let roots = work.join("roots.pem");
    let bundle_certs = read_pem_certs(&bundle);
    std::fs::write(&roots, pem_of(&[g1.clone(), g2.clone()])).unwrap();
    assert!(bundle_certs.contains(&g1) && bundle_certs.contains(&g2));
    let crls = ["root", "root-g2", "basic", "basic-g2"];
    let (config, dir) = hospital::config(&app, &roots, &crls, &[BASIC]);
    let hospital = Hospital::start_with(config, dir).await;
    for (dir, accepted) in [
        (&renewing, true),
        (&fresh, true),
        (&untouched, true),
        (&revoked, false),
    ] {
        let (decision, _) = hospital.connect(Some(dir)).await;
        assert_eq!(
            matches!(decision, Decision::Accepted(_)),
            accepted,
            "{}: {decision}",
            dir.display()
        );
    }

    // nginx, given the bundle as its client CA file and the CRLs of every CA in use.
    if require_tool("nginx", &["-v"]) && require_tool("curl", &["--version"]) {
        let site = Nginx::start(&app, &work, &bundle).await;
        for (dir, status) in [
            (&renewing, "200"),
            (&fresh, "200"),
            (&untouched, "200"),
            (&revoked, "400"),
        ] {
            assert_eq!(
                site.status(dir),
                status,
                "{}: {}",
                dir.display(),
                site.log()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enroll_client_run_takes_root_g2_in_and_renews_into_the_g2_chain() {
    // A CA whose certificates' OCSP URLs point at its own HTTP listener (`run` checks its own
    // certificate by OCSP), with a one-second reload interval.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TestApp::init_dir(iomt_tests::no_reenroll_interval, Some(port), &[])
        .await
        .expect("init");
    let config = dir.path().join("ca").join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap() + "\n" + FAST;
    std::fs::write(&config, text).unwrap();
    let app = TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await;
    let device = enroll(&app, "IP20000321").await;
    app.cli(&["ca", "rollover", "--ca", "root"]).await.unwrap();
    app.wait_for_root("root-g2").await;
    app.cli(&["ca", "rollover", "--ca", "basic"]).await.unwrap();
    app.wait_for_active(Level::Basic, "basic-g2").await;
    let g2 = read_pem_certs(&app.data_dir().join("ca").join("root-g2.crt.pem")).remove(0);

    let (root, out) = (app.root_pem(), device.clone());
    let url = app.server_url();
    let mut running = RunningClient::start(
        &[
            "run",
            "--server",
            &url,
            "--ca-cert",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--jitter-percent",
            "0",
            "--window-percent",
            "0",
            "--retry-min",
            "100ms",
            "--retry-max",
            "2s",
        ],
        &[("ENROLL_LOG", "info")],
    );
    running
        .wait_until(|| async {
            std::fs::read(device.join("chain.pem"))
                .ok()
                .is_some_and(|_| read_pem_certs(&device.join("chain.pem")).last() == Some(&g2))
        })
        .await;
    let run = running.stop().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(issuer(&leaf(&device)).contains("Basic Issuing CA G2"));
    assert_eq!(
        read_pem_certs(&device.join("trust.pem")),
        vec![app.root_der().to_vec(), g2]
    );
}

/// A certificate with exactly root G2's subject and key, signed by another key under G1's name.
fn forged_link(g1: &[u8], g2: &[u8]) -> Vec<u8> {
    let (_, g1) = X509Certificate::from_der(g1).unwrap();
    let (_, g2) = X509Certificate::from_der(g2).unwrap();
    let dn = |cert: &X509Certificate<'_>| {
        let mut dn = rcgen::DistinguishedName::new();
        for attr in cert.subject().iter_attributes() {
            let oid: Vec<u64> = attr.attr_type().iter().unwrap().collect();
            let text = attr.as_str().unwrap().to_owned();
            let value = if attr.attr_value().tag()
                == x509_parser::der_parser::asn1_rs::Tag::PrintableString
            {
                rcgen::DnValue::PrintableString(text.try_into().unwrap())
            } else {
                rcgen::DnValue::Utf8String(text)
            };
            dn.push(rcgen::DnType::from_oid(&oid), value);
        }
        dn
    };
    let mut subject = rcgen::CertificateParams::default();
    subject.distinguished_name = dn(&g2);
    subject.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    let mut impostor = rcgen::CertificateParams::default();
    impostor.distinguished_name = dn(&g1);
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let key = rcgen::SubjectPublicKeyInfo::from_der(g2.public_key().raw).unwrap();
    let forged = subject
        .signed_by(&key, &rcgen::Issuer::new(impostor, &other))
        .unwrap();
    let (_, parsed) = X509Certificate::from_der(forged.der()).unwrap();
    assert_eq!(parsed.subject().as_raw(), g2.subject().as_raw());
    assert_eq!(parsed.issuer().as_raw(), g1.subject().as_raw());
    forged.der().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_root_without_a_link_or_with_a_forged_one_is_refused_and_trust_pem_unchanged() {
    let mut app = TestApp::spawn_with_ca_config(FAST, None).await;
    let device = enroll(&app, "IP20000311").await;
    let trust_before = std::fs::read(device.join("trust.pem")).unwrap();
    let cert_before = std::fs::read(device.join("cert.pem")).unwrap();
    app.cli(&["ca", "rollover", "--ca", "root"]).await.unwrap();
    app.wait_for_root("root-g2").await;
    let ca_dir = app.data_dir().join("ca");
    let g2 = read_pem_certs(&ca_dir.join("root-g2.crt.pem")).remove(0);
    let old_with_new = read_pem_certs(&ca_dir.join("root-g2.link-old-with-new.crt.pem")).remove(0);
    let forged = forged_link(&app.root_der(), &g2);

    // Missing: the NewWithOld slot holds the OldWithNew certificate, so the CA names G2 but
    // carries no link for it. Forged: a link naming G2 signed by another key. The HTTPS
    // certificate is under G2 by then and served with that slot's certificate, so a G1 device
    // meets the bad link first in the TLS handshake and is refused there (exit 4), before
    // cacerts; the same cacerts are refused with exit 12 by trust.rs's unit tests.
    app.wait_for_https_under(&g2).await;
    for (case, link, reason) in [
        ("missing", old_with_new, "UnknownIssuer"),
        ("forged", forged, "BadSignature"),
    ] {
        app.replace_root_link(&link).await;
        let error = renew(&app, &device).await.expect_err(case);
        assert_eq!(error.exit_code(), 4, "{case}: {error}");
        let text = error.to_string();
        assert!(text.contains(reason), "{case}: {text}");
        assert_eq!(
            std::fs::read(device.join("trust.pem")).unwrap(),
            trust_before,
            "{case}"
        );
        assert_eq!(
            std::fs::read(device.join("cert.pem")).unwrap(),
            cert_before,
            "{case}"
        );
    }
}

/// nginx (certs-example/nginx/iomt-mtls.conf) with `bundle` as ssl_client_certificate.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    port: u16,
    server_cert: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    async fn start(app: &TestApp, work: &Path, bundle: &Path) -> Nginx {
        let prefix = work.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let mut crls = String::new();
        for ca in ["root", "root-g2", "basic", "basic-g2"] {
            let der = prefix.join(format!("{ca}.crl"));
            std::fs::write(&der, fetch(app, &format!("/crl/{ca}.crl")).await).unwrap();
            crls.push_str(&run_tool(
                Command::new("openssl")
                    .args(["crl", "-inform", "DER", "-in"])
                    .arg(&der),
            ));
        }
        let crl_file = prefix.join("iomt-crls.pem");
        std::fs::write(&crl_file, crls).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (server_cert, server_key) = (prefix.join("server.pem"), prefix.join("server.key"));
        std::fs::write(&server_cert, cert.pem()).unwrap();
        std::fs::write(&server_key, key.serialize_pem()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-example/nginx/iomt-mtls.conf"),
        )
        .unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let site = template
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@SERVER_CERT@", &path(&server_cert))
            .replace("@SERVER_KEY@", &path(&server_key))
            .replace("@IOMT_ROOT@", &path(bundle))
            .replace("@IOMT_CRLS@", &path(&crl_file));
        let conf = format!(
            "master_process off;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {p}/tmp_body;\n proxy_temp_path {p}/tmp_proxy;\n fastcgi_temp_path {p}/tmp_fcgi;\n uwsgi_temp_path {p}/tmp_uwsgi;\n scgi_temp_path {p}/tmp_scgi;\n{site}\n}}\n",
            p = prefix.display()
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx {
            child,
            prefix,
            port,
            server_cert,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start: {}",
                nginx.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }

    /// The HTTP status nginx gives the device (curl presenting cert.pem + chain.pem).
    fn status(&self, device: &Path) -> String {
        let client = device.join("client.pem");
        let chain = std::fs::read_to_string(device.join("cert.pem")).unwrap()
            + &std::fs::read_to_string(device.join("chain.pem")).unwrap();
        std::fs::write(&client, chain).unwrap();
        let output = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&self.server_cert)
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", self.port)])
            .arg("--cert")
            .arg(&client)
            .arg("--key")
            .arg(device.join("key.pem"))
            .arg(format!("https://localhost:{}/", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
