//! The hospital-side rustls example (certs-example/hospital-server) against a real CA: enrolled
//! devices are accepted with their identity; revoked, held, expired, other-CA and wrong-level
//! certificates are rejected with the right reason; CRLs come from the distribution points.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hospital_example::{Decision, HospitalConfig, HospitalError, HospitalServer, RejectReason};
use iomt_tests::{TestApp, read_pem_certs};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{broadcast, oneshot};

const BASIC: &str = "1.3.6.1.4.1.32473.7.1.1";
const HIGH: &str = "1.3.6.1.4.1.32473.7.1.3";

/// A running hospital server with its own self-signed TLS certificate for "localhost".
struct Hospital {
    server: Arc<HospitalServer>,
    decisions: broadcast::Receiver<Decision>,
    server_cert: CertificateDer<'static>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Hospital {
    /// Binds (so it is ready before this returns) and runs a server trusting `app`'s root, with
    /// the Basic and root CRLs from `app`'s distribution point.
    async fn start(app: &TestApp, accept: &[&str]) -> Hospital {
        let (config, dir) = hospital_config(app, accept);
        let server = HospitalServer::bind(config).await.expect("bind");
        Hospital::run(server, dir)
    }

    /// Runs a bound server (`dir` holds its certificate).
    fn run(server: HospitalServer, dir: tempfile::TempDir) -> Hospital {
        let server = Arc::new(server);
        let decisions = server.subscribe();
        let (tx, rx) = oneshot::channel::<()>();
        let running = server.clone();
        tokio::spawn(async move {
            running
                .run_until(async move {
                    let _ = rx.await;
                })
                .await;
        });
        let server_cert = read_pem_certs(&dir.path().join("server.pem")).remove(0);
        Hospital {
            server,
            decisions,
            server_cert: CertificateDer::from(server_cert),
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// Connects presenting the credentials in `device` (cert.pem + issuing CA, key.pem), or none,
    /// sends a GET, and returns the server's decision and what the client saw.
    async fn connect(
        &mut self,
        device: Option<&Path>,
    ) -> (Decision, Result<(u16, String), String>) {
        self.connect_as(device.map(identity)).await
    }

    /// Connects presenting `credential` (chain and key) or none; see [`Hospital::connect`].
    async fn connect_as(
        &mut self,
        credential: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> (Decision, Result<(u16, String), String>) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_cert.clone()).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let tls = match credential {
            Some((chain, key)) => tls.with_client_auth_cert(chain, key).unwrap(),
            None => tls.with_no_client_auth(),
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .resolve("localhost", self.server.local_addr())
            .no_proxy()
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/", self.server.local_addr().port());
        let seen = match client.get(url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                Ok((status, response.text().await.unwrap_or_default()))
            }
            Err(error) => Err(format!("{error:?}")),
        };
        let decision = tokio::time::timeout(Duration::from_secs(10), self.decisions.recv())
            .await
            .expect("a decision within 10 s")
            .expect("decision channel");
        (decision, seen)
    }

    /// Connects and expects a rejection for `expected`, seen by the client too.
    async fn expect_rejected(&mut self, device: &Path, expected: &RejectReason) {
        let (decision, seen) = self.connect(Some(device)).await;
        assert_eq!(decision, Decision::Rejected(expected.clone()), "{seen:?}");
        assert!(
            !matches!(seen, Ok((200, _))),
            "the client must not get an accepted answer: {seen:?}"
        );
    }
}

impl Drop for Hospital {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A config for `app` (server certificate written to a new temp dir, returned with it).
fn hospital_config(app: &TestApp, accept: &[&str]) -> (HospitalConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("server.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("server.key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let config = HospitalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_cert: app.root_pem(),
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key.pem"),
        crl_urls: ["basic", "root"]
            .iter()
            .map(|name| format!("http://{}/crl/{name}.crl", app.http))
            .collect(),
        accept_policies: accept.iter().map(|oid| oid.parse().unwrap()).collect(),
    };
    (config, dir)
}

/// The client certificate chain (leaf, issuing CA) and key of a credential directory.
fn identity(dir: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let leaf = read_pem_certs(&dir.join("cert.pem")).remove(0);
    let issuing = read_pem_certs(&dir.join("chain.pem")).remove(0);
    let key = pem::parse(std::fs::read(dir.join("key.pem")).unwrap()).unwrap();
    (
        vec![leaf.into(), issuing.into()],
        PrivateKeyDer::try_from(key.into_contents()).unwrap(),
    )
}

/// Enrolls a pump; returns its credential directory and certificate serial (hex).
async fn enroll(app: &TestApp, serial: &str) -> (PathBuf, String) {
    let token = app.pump_with_token(serial).await;
    let dir = app.dir.path().join(serial);
    let enrolled = app.enroll(serial, &token, &dir).await.expect("enroll");
    (dir, enrolled.certificate_serial)
}

fn accepted_serial(decision: &Decision) -> &str {
    match decision {
        Decision::Accepted(identity) => &identity.serial,
        Decision::Rejected(reason) => panic!("expected acceptance, got: rejected: {reason}"),
    }
}

#[tokio::test]
async fn enrolled_device_is_accepted() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000001").await;
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    let (decision, seen) = hospital.connect(Some(&device)).await;
    let Decision::Accepted(identity) = &decision else {
        panic!("expected acceptance: {decision} / {seen:?}");
    };
    assert_eq!(identity.serial, "IP20000001");
    assert_eq!(identity.common_name.as_deref(), Some("IP200-IP20000001"));
    assert_eq!(identity.policy_oid.as_str(), BASIC);
    let uri = identity.product_uri.as_deref().expect("product URI");
    assert!(uri.ends_with("/21/IP20000001"), "{uri}");
    let (status, body) = seen.expect("answer");
    assert_eq!(status, 200);
    assert!(
        body.starts_with("accepted serial=IP20000001 cn=IP200-IP20000001 ")
            && body.trim_end().ends_with(" policy=1.3.6.1.4.1.32473.7.1.1"),
        "{body}"
    );
}

#[tokio::test]
async fn revoked_device_is_rejected_as_revoked() {
    let app = TestApp::spawn().await;
    let (good, _) = enroll(&app, "IP20000001").await;
    let (revoked, revoked_serial) = enroll(&app, "IP20000002").await;
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    let (before, _) = hospital.connect(Some(&revoked)).await;
    assert_eq!(accepted_serial(&before), "IP20000002", "not revoked yet");

    let reason = ca_server::revocation::Reason::parse("keyCompromise").unwrap();
    app.revocation
        .revoke(&revoked_serial.parse().unwrap(), reason, "test")
        .await
        .unwrap();
    hospital.server.refresh_crls().await.expect("refresh");

    hospital
        .expect_rejected(&revoked, &RejectReason::Revoked)
        .await;
    let (decision, _) = hospital.connect(Some(&good)).await;
    assert_eq!(accepted_serial(&decision), "IP20000001");
}

#[tokio::test]
async fn held_device_is_rejected_as_revoked() {
    let app = TestApp::spawn().await;
    let (held, held_serial) = enroll(&app, "IP20000003").await;
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    app.cli(&[
        "revoke",
        "--serial",
        &held_serial,
        "--reason",
        "certificateHold",
    ])
    .await
    .unwrap();
    hospital.server.refresh_crls().await.expect("refresh");
    hospital
        .expect_rejected(&held, &RejectReason::Revoked)
        .await;

    // Released: the next CRL no longer lists it.
    app.cli(&["release", "--serial", &held_serial])
        .await
        .unwrap();
    hospital.server.refresh_crls().await.expect("refresh");
    let (decision, _) = hospital.connect(Some(&held)).await;
    assert_eq!(accepted_serial(&decision), "IP20000003");
}

#[tokio::test]
async fn device_of_another_ca_is_rejected_as_other_ca() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let (foreign, _) = enroll(&other, "IP20000004").await;
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    hospital
        .expect_rejected(&foreign, &RejectReason::OtherCa)
        .await;
}

#[tokio::test]
async fn basic_device_at_a_high_only_server_is_rejected_as_wrong_level() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000005").await;
    let mut hospital = Hospital::start(&app, &[HIGH]).await;
    let (decision, seen) = hospital.connect(Some(&device)).await;
    match &decision {
        Decision::Rejected(RejectReason::WrongLevel {
            presented,
            accepted,
        }) => {
            assert!(presented.iter().any(|oid| oid == BASIC), "{presented:?}");
            assert_eq!(
                accepted.iter().map(|oid| oid.as_str()).collect::<Vec<_>>(),
                [HIGH]
            );
        }
        other => panic!("expected a wrong-level rejection, got {other:?}"),
    }
    let (status, body) = seen.expect("an answer after a successful handshake");
    assert_eq!(status, 403);
    assert!(
        body.starts_with("rejected: wrong level: policy OIDs [1.3.6.1.4.1.32473.7.1.1")
            && body.contains("not in the accepted set [1.3.6.1.4.1.32473.7.1.3]"),
        "{body}"
    );
}

#[tokio::test]
async fn expired_device_certificate_is_rejected_as_expired() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000006").await;
    let expired = expired_copy(&app, &device, &app.dir.path().join("expired"));
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    hospital
        .expect_rejected(&expired, &RejectReason::Expired)
        .await;
}

/// A certificate with the device's subject that expired a minute ago, signed by the test CA's
/// Basic issuing CA (as in reenroll.rs), written with a new key and the device's chain to `out`.
fn expired_copy(app: &TestApp, device: &Path, out: &Path) -> PathBuf {
    let expired = app.expired_certificate(device);
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(out.join("cert.pem"), expired.pem).unwrap();
    std::fs::write(out.join("key.pem"), expired.key_pem).unwrap();
    std::fs::copy(device.join("chain.pem"), out.join("chain.pem")).unwrap();
    out.to_path_buf()
}

#[tokio::test]
async fn device_without_a_crl_for_its_issuer_is_rejected_as_revocation_unknown() {
    // Only the root's CRL: the Basic issuing CA's certificates have no known status, and unknown
    // is not allowed.
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000009").await;
    let (mut config, dir) = hospital_config(&app, &[BASIC]);
    config.crl_urls.retain(|url| url.ends_with("/root.crl"));
    let server = HospitalServer::bind(config).await.expect("bind");
    let mut hospital = Hospital::run(server, dir);
    hospital
        .expect_rejected(&device, &RejectReason::RevocationUnknown)
        .await;
}

#[tokio::test]
async fn device_sending_no_issuing_ca_is_rejected_as_issuing_ca_missing() {
    let app = TestApp::spawn().await;
    let (device, _) = enroll(&app, "IP20000010").await;
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    let (mut chain, key) = identity(&device);
    chain.truncate(1); // cert.pem alone
    let (decision, seen) = hospital.connect_as(Some((chain, key))).await;
    assert_eq!(
        decision,
        Decision::Rejected(RejectReason::IssuingCaMissing),
        "{seen:?}"
    );
    assert!(seen.is_err(), "{seen:?}");
}

#[tokio::test]
async fn client_without_certificate_is_rejected_as_no_certificate() {
    let app = TestApp::spawn().await;
    let mut hospital = Hospital::start(&app, &[BASIC]).await;
    let (decision, seen) = hospital.connect(None).await;
    assert_eq!(
        decision,
        Decision::Rejected(RejectReason::NoCertificate),
        "{seen:?}"
    );
    assert!(seen.is_err(), "{seen:?}");
}

#[tokio::test]
async fn failed_crl_refresh_is_reported_and_the_held_crls_stay_in_use() {
    let mut app = TestApp::spawn().await;
    let (good, _) = enroll(&app, "IP20000007").await;
    let (revoked, revoked_serial) = enroll(&app, "IP20000008").await;
    let reason = ca_server::revocation::Reason::parse("keyCompromise").unwrap();
    app.revocation
        .revoke(&revoked_serial.parse().unwrap(), reason, "test")
        .await
        .unwrap();
    let mut hospital = Hospital::start(&app, &[BASIC]).await;

    app.stop_server().await; // the distribution point is down
    match hospital.server.refresh_crls().await {
        Err(HospitalError::CrlRefresh(failures)) => assert_eq!(failures.len(), 2, "{failures:?}"),
        other => panic!("expected a refresh failure, got {other:?}"),
    }
    hospital
        .expect_rejected(&revoked, &RejectReason::Revoked)
        .await;
    let (decision, _) = hospital.connect(Some(&good)).await;
    assert_eq!(accepted_serial(&decision), "IP20000007");
}

#[tokio::test]
async fn start_with_unreachable_crl_is_refused() {
    let mut app = TestApp::spawn().await;
    let (config, _dir) = hospital_config(&app, &[BASIC]);
    app.stop_server().await;
    match HospitalServer::bind(config).await {
        Err(HospitalError::CrlRefresh(failures)) => assert_eq!(failures.len(), 2, "{failures:?}"),
        other => panic!("expected start-up to be refused, got {other:?}"),
    }
    let (mut config, _dir) = hospital_config(&app, &[BASIC]);
    config.crl_urls.clear();
    assert!(matches!(
        HospitalServer::bind(config).await,
        Err(HospitalError::NoCrlUrl)
    ));
}
