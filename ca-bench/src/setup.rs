//! A fresh CA for one run: `ca-server` commands run in child processes (this binary re-executed
//! with the hidden `ca-server` subcommand), free ports, bulk registration and tokens, an
//! optional fresh PostgreSQL database, and the serving child.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use sqlx::Connection;

/// The token-enrolled example product (narrows IoMT Basic, P-256).
pub const PRODUCT: &str = "example-infusion-pump";
/// How long the server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The ring crypto provider, the only one this workspace uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The n-th device serial of the product (`IP2` and seven digits, as its policy requires).
pub fn device_serial(n: usize) -> String {
    format!("IP2{n:07}")
}

/// A CA created in a temporary directory, with its listeners' addresses.
pub struct Ca {
    _tmp: tempfile::TempDir,
    /// The data directory.
    pub data: PathBuf,
    /// EST over HTTPS.
    pub https: SocketAddr,
    /// CRL, OCSP and CA certificates over plain HTTP.
    pub http: SocketAddr,
    database: Option<Postgres>,
}

impl Ca {
    /// Runs `ca-server init` in a fresh temp dir on free ports, on SQLite, or on a fresh
    /// database of the PostgreSQL server at `postgres_url`. Re-enrollment is allowed back to
    /// back (the policies' minimum interval is set to 0).
    pub async fn create(postgres_url: Option<&str>) -> anyhow::Result<Ca> {
        let tmp = tempfile::tempdir().context("temp dir")?;
        let data = tmp.path().join("ca");
        let https = free_port()?;
        let http = free_port()?;
        let database = match postgres_url {
            Some(url) => Some(Postgres::create(url).await?),
            None => None,
        };
        let ca = Ca {
            _tmp: tmp,
            data,
            https,
            http,
            database,
        };
        let public_url = format!("http://{}", ca.http);
        ca.cli(&[
            "init",
            "--listen",
            &ca.https.to_string(),
            "--http-listen",
            &ca.http.to_string(),
            "--public-url",
            &public_url,
        ])?;
        allow_back_to_back_reenrollment(&ca.data.join("policies"))?;
        Ok(ca)
    }

    /// Runs a `ca-server` command on this CA in a child process and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command(args)?;
        let output = command
            .stdin(Stdio::null())
            .output()
            .context("cannot run the ca-server child")?;
        if !output.status.success() {
            bail!(
                "`ca-server {}` failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut command = Command::new(exe);
        command
            .arg("ca-server")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data);
        if let Some(db) = &self.database {
            command.arg("--database-url").arg(&db.url);
        }
        command.env(
            "CA_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or("warn".into()),
        );
        Ok(command)
    }

    /// Registers `count` devices of [`PRODUCT`] from one CSV and creates their one-time tokens;
    /// returns `(serial, token)` in order.
    pub fn register_with_tokens(&self, count: usize) -> anyhow::Result<Vec<(String, String)>> {
        let serials: Vec<String> = (0..count).map(device_serial).collect();
        let mut csv = String::from("serial,product\n");
        let mut list = String::new();
        for serial in &serials {
            csv.push_str(&format!("{serial},{PRODUCT}\n"));
            list.push_str(serial);
            list.push('\n');
        }
        let csv_path = self.data.join("bench-devices.csv");
        let list_path = self.data.join("bench-serials.txt");
        std::fs::write(&csv_path, csv)?;
        std::fs::write(&list_path, list)?;
        self.cli(&["device", "register", "--csv", path_str(&csv_path)?])?;
        let out = self.cli(&["token", "create", "--serials-file", path_str(&list_path)?])?;
        let pairs: Vec<(String, String)> = out
            .lines()
            .filter_map(|line| line.split_once(','))
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .collect();
        if pairs.len() != count {
            bail!(
                "token create printed {} tokens for {count} devices",
                pairs.len()
            );
        }
        Ok(pairs)
    }

    /// The database URL the server uses (a SQLite path resolved against the data directory).
    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database {
            Some(db) => Ok(db.url.clone()),
            None => Ok(ca_server::config::Settings::load(&self.data)?.database_url()),
        }
    }

    /// The PostgreSQL database's name, if the CA runs on one.
    pub fn database_name(&self) -> Option<String> {
        self.database.as_ref().map(|db| db.name.clone())
    }

    /// The root certificate (trust anchor of the HTTPS listener and of every chain).
    pub fn root_der(&self) -> anyhow::Result<CertificateDer<'static>> {
        read_cert(&self.data.join("root.pem"))
    }

    /// The Basic issuing CA certificate (issuer of the pump certificates).
    pub fn basic_ca_der(&self) -> anyhow::Result<CertificateDer<'static>> {
        read_cert(&self.data.join("ca").join("basic.crt.pem"))
    }

    /// A client configuration trusting this CA's root, without a client certificate.
    pub fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root_der()?)?;
        Ok(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }

    /// Starts `ca-server serve` and waits until its HTTPS port accepts connections.
    pub fn serve(&self) -> anyhow::Result<Server> {
        let mut command = self.command(&["serve"])?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the ca-server child")?;
        let mut server = Server { child };
        server.wait_for(self.https)?;
        Ok(server)
    }

    /// Drops the PostgreSQL database, if this CA made one. Call after the server stopped.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        if let Some(db) = self.database {
            db.drop_database().await?;
        }
        Ok(())
    }
}

/// A serving child process, killed when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// The child's process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("ca-server serve exited at start-up ({status})");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ca-server serve did not answer on {addr} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL; nothing is left to flush: every answer followed a commit).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A database created for one run on a PostgreSQL server.
pub(crate) struct Postgres {
    admin_url: String,
    name: String,
    url: String,
}

impl Postgres {
    pub(crate) async fn create(server_url: &str) -> anyhow::Result<Postgres> {
        let base = server_base(server_url)?;
        let mut bytes = [0u8; 6];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let name = format!("bench_{}", hex::encode(bytes));
        let admin_url = format!("{base}/postgres");
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("cannot connect to {admin_url}"))?;
        // The name is `bench_` and hex digits we drew: nothing to escape.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        conn.close().await?;
        Ok(Postgres {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }

    /// Its URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) async fn drop_database(&self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}

/// `postgres://user@host:port` from a URL that may name a database or carry a query.
fn server_base(url: &str) -> anyhow::Result<String> {
    let Some(scheme_end) = url.find("://") else {
        bail!("`{url}` is not a postgres:// URL");
    };
    if !url.starts_with("postgres") {
        bail!("`{url}` is not a postgres:// URL");
    }
    let after = &url[scheme_end + 3..];
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    Ok(url[..scheme_end + 3 + host_end].to_owned())
}

/// An address on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Sets `min_reenroll_interval_minutes` to 0 in every policy file of `dir`.
fn allow_back_to_back_reenrollment(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)?;
            let edited: String = text
                .lines()
                .map(|line| {
                    if line
                        .trim_start()
                        .starts_with("min_reenroll_interval_minutes")
                    {
                        "min_reenroll_interval_minutes = 0".to_owned()
                    } else {
                        line.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&path, edited + "\n")?;
        }
    }
    Ok(())
}

fn read_cert(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    let text = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let block = pem::parse(text).with_context(|| format!("{}", path.display()))?;
    Ok(CertificateDer::from(block.into_contents()))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The hidden `ca-server` subcommand: runs the real CLI in this process, as `ca-server` would.
pub fn run_ca_server(args: Vec<String>) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = <ca_server::cli::Cli as clap::Parser>::parse_from(
        std::iter::once("ca-server".to_owned()).chain(args),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(ca_server::cli::run(cli, &mut stdout)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_base_drops_database_and_query() {
        for (url, base) in [
            (
                "postgres://postgres@127.0.0.1:5432",
                "postgres://postgres@127.0.0.1:5432",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/x?sslmode=disable",
                "postgres://postgres@127.0.0.1:5432",
            ),
            ("postgresql://u:p@h/db", "postgresql://u:p@h"),
        ] {
            assert_eq!(server_base(url).unwrap(), base);
        }
        assert!(server_base("sqlite://x").is_err());
    }

    #[test]
    fn device_serials_match_the_pump_pattern() {
        assert_eq!(device_serial(42), "IP20000042");
    }
}
