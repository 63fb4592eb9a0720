//! `TestApp`: a real CA in a temp directory, served on 127.0.0.1:0 over real rustls HTTPS, with
//! one method per operation the tests need. Outside tools are found with [`require_tool`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ca_server::authority::Authority;
use ca_server::cli::{Cli, run};
use ca_server::config::Settings;
use ca_server::startup::Application;
use ca_server::storage::CertificateRecord;
use clap_free::parse;
use enroll_client::enroll::{EnrollAuthorization, EnrollRequest, Enrolled, enroll};
use enroll_client::error::ClientError;
use rustls_pki_types::CertificateDer;
use tokio::sync::oneshot;

/// The example token-enrolled product (narrows Basic).
pub const PUMP: &str = "example-infusion-pump";
/// The example station-only product (narrows Substantial).
pub const MONITOR: &str = "example-patient-monitor";

pub mod browser;
pub mod client_process;
pub mod console;
pub mod custody;
pub mod hospital;
pub mod operations;
pub mod pkilint;
pub mod rollover;
pub mod server_process;
pub mod swtpm;

mod clap_free {
    /// Parses a `ca-server` command line as the binary would.
    pub fn parse(args: &[&str]) -> super::Cli {
        use clap::Parser;
        super::Cli::try_parse_from(std::iter::once("ca-server").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("bad test command line {args:?}: {e}"))
    }
}

/// A running CA.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub http: SocketAddr,
    /// The Prometheus listener, when the test asked for one ([`TestApp::spawn_with_metrics`]).
    pub metrics: Option<SocketAddr>,
    pub authority: Arc<Authority>,
    pub revocation: Arc<ca_server::revocation::Revocation>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// `init` a fresh evaluation CA and serve it on ephemeral ports.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with_policies(|_, text| text.to_owned()).await
    }

    /// Like [`TestApp::spawn`], with the shipped policy files rewritten by `edit(name, text)`
    /// (e.g. a short re-enrollment interval so tests need not wait).
    pub async fn spawn_with_policies(edit: impl Fn(&str, &str) -> String) -> TestApp {
        TestApp::spawn_inner(edit, None, None).await
    }

    /// Like [`TestApp::spawn`], with the listeners' `[limits]` replaced (e.g. short timeouts and
    /// a small connection cap, so tests need not wait or open thousands of sockets).
    pub async fn spawn_with_limits(limits: ca_server::config::Limits) -> TestApp {
        let dir = TestApp::init_dir(|_, text| text.to_owned(), None, &[])
            .await
            .expect("init");
        let mut settings = Settings::load(&dir.path().join("ca")).expect("settings");
        settings.config.limits = limits;
        let (https, http, metrics, authority, revocation, shutdown, server) =
            serve(&settings).await;
        TestApp {
            dir,
            https,
            http,
            metrics,
            authority,
            revocation,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Like [`TestApp::spawn`], with Prometheus metrics served on an ephemeral port
    /// ([`TestApp::metrics`]); `database_url` overrides the SQLite default.
    pub async fn spawn_with_metrics(database_url: Option<&str>) -> TestApp {
        let mut extra = Vec::new();
        if let Some(url) = database_url {
            extra.extend(["--database-url", url]);
        }
        let dir = TestApp::init_dir(|_, text| text.to_owned(), None, &extra)
            .await
            .expect("init");
        let mut settings = Settings::load(&dir.path().join("ca")).expect("settings");
        settings.config.metrics_listen = Some("127.0.0.1:0".to_owned());
        let (https, http, metrics, authority, revocation, shutdown, server) =
            serve(&settings).await;
        TestApp {
            dir,
            https,
            http,
            metrics,
            authority,
            revocation,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Like [`TestApp::spawn`] (on `database_url` when given), with the settings changed by
    /// `edit` before serving (e.g. a short console idle timeout).
    pub async fn spawn_configured(
        database_url: Option<&str>,
        edit: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let mut extra = Vec::new();
        if let Some(url) = database_url {
            extra.extend(["--database-url", url]);
        }
        let dir = TestApp::init_dir(|_, text| text.to_owned(), None, &extra)
            .await
            .expect("init");
        let mut settings = Settings::load(&dir.path().join("ca")).expect("settings");
        edit(&mut settings);
        let (https, http, metrics, authority, revocation, shutdown, server) =
            serve(&settings).await;
        TestApp {
            dir,
            https,
            http,
            metrics,
            authority,
            revocation,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// A CA whose registry lives in the given database (e.g. a fresh PostgreSQL database).
    pub async fn spawn_on_database(database_url: &str) -> TestApp {
        TestApp::spawn_inner(|_, text| text.to_owned(), None, Some(database_url)).await
    }

    /// Starts another server process-equivalent on the same data directory and database (a
    /// replica), on its own ephemeral ports; returns its HTTPS and HTTP addresses.
    pub async fn spawn_replica(
        &self,
    ) -> (
        SocketAddr,
        SocketAddr,
        Arc<ca_server::revocation::Revocation>,
        oneshot::Sender<()>,
    ) {
        let settings = Settings::load(&self.data_dir()).expect("settings");
        let (https, http, _, _, revocation, shutdown, _server) = serve(&settings).await;
        (https, http, revocation, shutdown)
    }

    /// A CA whose certificates' CRL and OCSP URLs point at its own HTTP listener, so outside
    /// relying parties can follow them (the port is chosen before `init`).
    pub async fn spawn_published() -> TestApp {
        TestApp::spawn_published_with_policies(|_, text| text.to_owned()).await
    }

    /// A published CA (see [`TestApp::spawn_published`]) with the shipped policy files
    /// rewritten by `edit(name, text)`.
    pub async fn spawn_published_with_policies(edit: impl Fn(&str, &str) -> String) -> TestApp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        TestApp::spawn_inner(edit, Some(port), None).await
    }

    /// A published CA (see [`TestApp::spawn_published`]) under an offline root: `init
    /// --external-root`, the openssl ceremony in `DIR/offline-root` ([`custody::offline_root`]:
    /// certificates, root CRL and the root's pre-signed OCSP responses), `ca import`, serve.
    pub async fn spawn_under_offline_root() -> TestApp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = TestApp::init_dir(|_, text| text.to_owned(), Some(port), &["--external-root"])
            .await
            .expect("init");
        let data = dir.path().join("ca");
        let root_dir = dir.path().join("offline-root");
        std::fs::create_dir(&root_dir).expect("offline-root dir");
        custody::offline_root(&data.join("csr"), &root_dir);
        let path = |p: PathBuf| p.to_str().expect("utf-8").to_owned();
        TestApp::cli_in(
            &path(data),
            &[
                "ca",
                "import",
                "--root",
                &path(root_dir.join("root.crt.pem")),
                "--certs",
                &path(root_dir.join("signed")),
                "--root-crl",
                &path(root_dir.join("root.crl.pem")),
            ],
        )
        .await
        .expect("import");
        TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await
    }

    async fn spawn_inner(
        edit: impl Fn(&str, &str) -> String,
        http_port: Option<u16>,
        database_url: Option<&str>,
    ) -> TestApp {
        let mut extra = Vec::new();
        if let Some(url) = database_url {
            extra.extend(["--database-url", url]);
        }
        let dir = TestApp::init_dir(edit, http_port, &extra)
            .await
            .expect("init");
        TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await
    }

    /// Runs `ca-server init` (the test listeners and policies, plus `extra` arguments) in a fresh
    /// temp directory whose `ca/` is the data directory; does not serve.
    pub async fn init_dir(
        edit: impl Fn(&str, &str) -> String,
        http_port: Option<u16>,
        extra: &[&str],
    ) -> Result<tempfile::TempDir, String> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("ca");
        let data_str = data.to_str().expect("utf-8 path");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).expect("policies dir");
        for (name, text) in iomt_core::policy::SHIPPED_POLICIES {
            std::fs::write(policies.join(name), edit(name, text)).expect("policy");
        }
        let http_listen = format!("127.0.0.1:{}", http_port.unwrap_or(0));
        let public_url = format!("http://127.0.0.1:{}", http_port.unwrap_or(8080));
        let mut args = vec![
            "init",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            &http_listen,
            "--public-url",
            &public_url,
            "--policies",
            policies.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        TestApp::cli_in(data_str, &args).await?;
        Ok(dir)
    }

    /// Serves the CA that [`TestApp::init_dir`] created, unlocking its keys as `access` says.
    pub async fn serve_dir(dir: tempfile::TempDir, access: ca_server::pki::KeyAccess) -> TestApp {
        let mut settings = Settings::load(&dir.path().join("ca")).expect("settings");
        settings.key_access = access;
        let (https, http, metrics, authority, revocation, shutdown, server) =
            serve(&settings).await;
        TestApp {
            dir,
            https,
            http,
            metrics,
            authority,
            revocation,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the server (an outage); [`TestApp::restart`] brings it back on the same ports.
    pub async fn stop_server(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("server");
        }
    }

    /// Starts the server again on the same ports and data.
    pub async fn restart(&mut self) {
        let mut settings = Settings::load(&self.data_dir()).expect("settings");
        settings.config.listen = self.https.to_string();
        settings.config.http_listen = self.http.to_string();
        if let Some(metrics) = self.metrics {
            settings.config.metrics_listen = Some(metrics.to_string());
        }
        let (_, _, _, authority, revocation, shutdown, server) = serve(&settings).await;
        self.authority = authority;
        self.revocation = revocation;
        self.shutdown = Some(shutdown);
        self.server = Some(server);
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// `root.pem`.
    pub fn root_pem(&self) -> PathBuf {
        self.data_dir().join("root.pem")
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> CertificateDer<'static> {
        let block = pem::parse(std::fs::read(self.root_pem()).expect("root.pem")).expect("pem");
        CertificateDer::from(block.into_contents())
    }

    /// The EST base URL, by the name in the TLS certificate.
    pub fn server_url(&self) -> String {
        format!("https://localhost:{}", self.https.port())
    }

    /// Runs a `ca-server` subcommand against this CA; returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> Result<String, String> {
        let data = self.data_dir();
        TestApp::cli_in(data.to_str().expect("utf-8"), args).await
    }

    /// Runs a `ca-server` command line against the data directory `data_dir`.
    pub async fn cli_in(data_dir: &str, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["--data-dir", data_dir];
        full.extend_from_slice(args);
        let mut out = Vec::new();
        run(parse(&full), &mut out)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }

    /// Registers a device under a product.
    pub async fn register(&self, serial: &str, product: &str) {
        self.cli(&[
            "device",
            "register",
            "--serial",
            serial,
            "--product",
            product,
        ])
        .await
        .expect("register");
    }

    /// Creates a token and returns it (the CLI prints it alone on stdout).
    pub async fn token(&self, serial: &str) -> String {
        let out = self
            .cli(&["token", "create", "--serial", serial])
            .await
            .expect("token");
        out.trim().to_owned()
    }

    /// Registers `serial` as a pump and returns a fresh token for it.
    pub async fn pump_with_token(&self, serial: &str) -> String {
        self.register(serial, PUMP).await;
        self.token(serial).await
    }

    /// Registers `count` pumps from `IP2{first:07}` in one CSV import and creates a token for
    /// each; returns `(serial, token)` pairs.
    pub async fn pumps_with_tokens(&self, first: usize, count: usize) -> Vec<(String, String)> {
        let serials: Vec<String> = (first..first + count)
            .map(|i| format!("IP2{i:07}"))
            .collect();
        let csv = self.dir.path().join(format!("devices-{first}.csv"));
        let rows: String = serials.iter().map(|s| format!("{s},{PUMP}\n")).collect();
        std::fs::write(&csv, format!("serial,product\n{rows}")).expect("csv");
        self.cli(&["device", "register", "--csv", csv.to_str().expect("utf-8")])
            .await
            .expect("register");
        let list = self.dir.path().join(format!("serials-{first}.txt"));
        std::fs::write(&list, serials.join("\n")).expect("serials");
        let out = self
            .cli(&[
                "token",
                "create",
                "--serials-file",
                list.to_str().expect("utf-8"),
            ])
            .await
            .expect("tokens");
        out.lines()
            .filter_map(|l| l.split_once(','))
            .map(|(serial, token)| (serial.to_owned(), token.to_owned()))
            .collect()
    }

    /// Enrolls with the real client library.
    pub async fn enroll(
        &self,
        serial: &str,
        token: &str,
        out: &Path,
    ) -> Result<Enrolled, ClientError> {
        enroll(&EnrollRequest {
            server: self.server_url(),
            ca_cert: self.root_pem(),
            serial: serial.to_owned(),
            authorization: EnrollAuthorization::Token(token.to_owned()),
            out: out.to_path_buf(),
            label: None,
            tpm: None,
        })
        .await
    }

    /// Certificates stored for a device.
    pub async fn certificates(&self, serial: &str) -> Vec<CertificateRecord> {
        self.authority
            .store()
            .certificates_for_device(serial)
            .await
            .expect("query")
    }

    /// Whether the token with this secret has been consumed.
    pub async fn token_used(&self, token: &str) -> bool {
        let record = self
            .authority
            .store()
            .token(&ca_server::auth::token::hash(token))
            .await
            .expect("query");
        record.expect("token exists").used_at.is_some()
    }

    /// An HTTPS client that trusts this CA's root.
    pub fn http_client(&self) -> reqwest::Client {
        https_client(self.root_der())
    }

    /// An HTTPS client trusting this CA's root and presenting `credential` (its certificate and
    /// the issuing CA from chain.pem) as the TLS client certificate.
    pub fn client_with_identity(
        &self,
        credential: &enroll_client::keystore::Credential,
    ) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root_der()).expect("root");
        let mut chain: Vec<CertificateDer<'static>> = pem::parse_many(&credential.cert_pem)
            .expect("cert.pem")
            .into_iter()
            .map(|p| p.into_contents().into())
            .collect();
        if let Some(issuing) = pem::parse_many(&credential.chain_pem)
            .expect("chain.pem")
            .into_iter()
            .next()
        {
            chain.push(issuing.into_contents().into());
        }
        let key = rustls_pki_types::PrivateKeyDer::try_from(
            pem::parse(&credential.key_pem)
                .expect("key.pem")
                .into_contents(),
        )
        .expect("key");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .expect("client")
    }

    /// A plain-HTTP client for the public endpoints.
    pub fn plain_client(&self) -> reqwest::Client {
        self.http_client()
    }

    /// POSTs a raw `simpleenroll` and returns (status, error code header, body).
    pub async fn post_simpleenroll(
        &self,
        serial: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, String, String) {
        let response = self
            .http_client()
            .post(format!(
                "{}/.well-known/est/simpleenroll",
                self.server_url()
            ))
            .basic_auth(serial, Some(token))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, code, response.text().await.unwrap_or_default())
    }

    /// Base64 of a CSR, as an EST body.
    pub fn est_body(csr_der: &[u8]) -> Vec<u8> {
        STANDARD.encode(csr_der).into_bytes()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.stop_server().await;
    }

    /// The EST server description the client library takes.
    pub fn est_server(&self) -> enroll_client::enroll::Server {
        enroll_client::enroll::Server {
            url: self.server_url(),
            ca_cert: self.root_pem(),
            label: None,
            tpm: None,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

type Served = (
    SocketAddr,
    SocketAddr,
    Option<SocketAddr>,
    Arc<Authority>,
    Arc<ca_server::revocation::Revocation>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

async fn serve(settings: &Settings) -> Served {
    let app = Application::build(settings).await.expect("build");
    let (https, http, metrics, authority, revocation) = (
        app.https_addr(),
        app.http_addr(),
        app.metrics_addr(),
        app.authority(),
        app.revocation(),
    );
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    (https, http, metrics, authority, revocation, tx, server)
}

/// An HTTPS client (rustls, ring) that trusts `root` only.
pub fn https_client(root: CertificateDer<'static>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client")
}

/// Policies with no minimum interval between re-enrollments (tests renew back to back).
pub fn no_reenroll_interval(_: &str, text: &str) -> String {
    text.replace(
        "min_reenroll_interval_minutes = 60",
        "min_reenroll_interval_minutes = 0",
    )
}

/// A CSR for `serial` with a fresh P-256 key (the key is returned too).
pub fn p256_csr(serial: &str) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let csr = enroll_client::csr::build_csr(&key, serial).expect("csr");
    (key, csr)
}

/// Whether an outside tool is available. Absent: the test prints why it skips, unless CI=true,
/// where a missing tool is a failure (nothing is skipped silently in CI).
pub fn require_tool(name: &str, probe: &[&str]) -> bool {
    let found = Command::new(name)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "{name} is required in CI but was not found"
        );
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}

/// Runs a command, panicking with its output on failure; returns stdout.
pub fn run_tool(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Verifies `leaf` → `issuer` → root with rustls-webpki for TLS client authentication.
pub fn webpki_verify(leaf: &[u8], issuer: &[u8], root: &CertificateDer<'_>) {
    let leaf = CertificateDer::from(leaf.to_vec());
    let end_entity = webpki::EndEntityCert::try_from(&leaf).expect("leaf parses");
    let anchor = webpki::anchor_from_trusted_cert(root).expect("anchor");
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[CertificateDer::from(issuer.to_vec())],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("chain verifies with rustls-webpki");
}

/// Reads all PEM certificates from a file, DER.
pub fn read_pem_certs(path: &Path) -> Vec<Vec<u8>> {
    pem::parse_many(std::fs::read(path).expect("read"))
        .expect("pem")
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

/// A device certificate that expired a minute ago: same subject as the one in `device_dir`,
/// a new key, signed by the test CA's Basic issuing CA (inside the CA's own lifetime).
pub struct ExpiredCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    pub key_pem: String,
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl TestApp {
    /// Crafts an [`ExpiredCertificate`] for the device enrolled in `device_dir`.
    pub fn expired_certificate(&self, device_dir: &Path) -> ExpiredCertificate {
        // The CA key is sealed: unlock it the way the server does (DIR/passphrase).
        let ca = ca_server::pki::CaMaterial::load(&self.data_dir()).expect("CA material");
        let issuer = &ca.issuing(iomt_core::policy::Level::Basic).issuer;
        let current = read_pem_certs(&device_dir.join("cert.pem")).remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&current).expect("certificate");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for attr in parsed.subject().iter_attributes() {
            let oid: Vec<u64> = attr.attr_type().iter().expect("oid").collect();
            params.distinguished_name.push(
                rcgen::DnType::from_oid(&oid),
                attr.as_str().expect("string"),
            );
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(3);
        params.not_after = now - time::Duration::minutes(1);
        let serial = [0x41, 7, 7, 7, 7, 7, 7, 7, 7, 7];
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let expired = params.signed_by(&key, issuer).expect("sign");
        ExpiredCertificate {
            der: expired.der().to_vec(),
            pem: expired.pem(),
            key_pem: key.serialize_pem(),
            serial_hex: serial.iter().map(|b| format!("{b:02x}")).collect(),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
        }
    }
}
