//! The hospital-side rustls example (certs-example/hospital-server) as the suites run it: bound
//! on 127.0.0.1:0 with its own self-signed certificate for "localhost", trusting the roots it is
//! given and the CRLs it is told to fetch, and a client that connects to it with a device's
//! credential and reads the server's decision.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hospital_example::{Decision, HospitalConfig, HospitalServer};
use rustls::client::WantsClientCert;
use rustls::{ClientConfig, ConfigBuilder};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{Mutex, broadcast, oneshot};

use crate::{TestApp, read_pem_certs};

/// What the client saw: the status and body of an answer, or the transport error.
pub type Seen = Result<(u16, String), String>;

/// A running hospital server; stopped on drop.
pub struct Hospital {
    pub server: Arc<HospitalServer>,
    /// The server's own certificate, the one root its clients trust.
    pub server_cert: CertificateDer<'static>,
    decisions: Mutex<broadcast::Receiver<Decision>>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// A configuration trusting `roots` (a PEM file), fetching the CRLs `crls` (names under the
/// CA's `/crl/NAME.crl`) from `app`, and accepting the policy OIDs `accept`; its TLS
/// certificate and key are written to the returned directory.
pub fn config(
    app: &TestApp,
    roots: &Path,
    crls: &[&str],
    accept: &[&str],
) -> (HospitalConfig, tempfile::TempDir) {
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
        ca_cert: roots.to_path_buf(),
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key.pem"),
        crl_urls: crls
            .iter()
            .map(|name| format!("http://{}/crl/{name}.crl", app.http))
            .collect(),
        accept_policies: accept.iter().map(|oid| oid.parse().unwrap()).collect(),
    };
    (config, dir)
}

/// The client certificate chain (leaf, issuing CA) and key of a credential directory.
pub fn device_credential(dir: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = pem::parse(std::fs::read(dir.join("key.pem")).unwrap()).unwrap();
    (
        device_chain(dir),
        PrivateKeyDer::try_from(key.into_contents()).unwrap(),
    )
}

/// A device's cert.pem leaf and the issuing CA first in its chain.pem.
pub fn device_chain(dir: &Path) -> Vec<CertificateDer<'static>> {
    let leaf = read_pem_certs(&dir.join("cert.pem")).remove(0);
    let issuing = read_pem_certs(&dir.join("chain.pem")).remove(0);
    vec![leaf.into(), issuing.into()]
}

impl Hospital {
    /// Binds (so it is ready before this returns) and runs a server trusting `app`'s root,
    /// fetching `crls` and accepting `accept`.
    pub async fn start(app: &TestApp, crls: &[&str], accept: &[&str]) -> Hospital {
        let (config, dir) = config(app, &app.root_pem(), crls, accept);
        Hospital::start_with(config, dir).await
    }

    /// Binds and runs a server with `config` (whose certificate files are in `dir`).
    pub async fn start_with(config: HospitalConfig, dir: tempfile::TempDir) -> Hospital {
        let server = HospitalServer::bind(config).await.expect("bind");
        Hospital::run(server, dir)
    }

    /// Runs a bound server (`dir` holds its certificate).
    pub fn run(server: HospitalServer, dir: tempfile::TempDir) -> Hospital {
        let server = Arc::new(server);
        let decisions = server.subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = server.clone();
        tokio::spawn(async move {
            running
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let server_cert = read_pem_certs(&dir.path().join("server.pem")).remove(0);
        Hospital {
            server,
            server_cert: CertificateDer::from(server_cert),
            decisions: Mutex::new(decisions),
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// A client configuration trusting this server, still to be given its client certificate.
    pub fn client_config(&self) -> ConfigBuilder<ClientConfig, WantsClientCert> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_cert.clone()).unwrap();
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
    }

    /// Connects presenting the credentials in `device` (cert.pem + issuing CA, key.pem), or
    /// none, sends a GET, and returns the server's decision and what the client saw.
    pub async fn connect(&self, device: Option<&Path>) -> (Decision, Seen) {
        self.connect_as(device.map(device_credential)).await
    }

    /// Connects presenting `credential` (chain and key) or none; see [`Hospital::connect`].
    pub async fn connect_as(
        &self,
        credential: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> (Decision, Seen) {
        let tls = self.client_config();
        let tls = match credential {
            Some((chain, key)) => tls.with_client_auth_cert(chain, key).unwrap(),
            None => tls.with_no_client_auth(),
        };
        self.connect_with(tls).await
    }

    /// Connects with the client configuration `tls` (e.g. one whose key signs in a TPM).
    pub async fn connect_with(&self, tls: ClientConfig) -> (Decision, Seen) {
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
        let mut decisions = self.decisions.lock().await;
        let decision = tokio::time::timeout(Duration::from_secs(10), decisions.recv())
            .await
            .expect("a decision within 10 s")
            .expect("decision channel");
        (decision, seen)
    }
}

impl Drop for Hospital {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
