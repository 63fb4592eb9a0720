//! Cloudflare cfssl as the peer: a P-256 CA and a TLS certificate made with rcgen, `cfssl serve`
//! over HTTPS on a free port, and a workload posting the same CSRs to `/api/v1/cfssl/sign`.
//! cfssl runs stateless (no record of what it signs) or with its certificate database
//! (`-db-config`), which is what a CA must keep: SQLite in WAL mode with `synchronous=FULL`, as
//! ours, or a fresh PostgreSQL database.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;

use crate::est::KeyAndCsr;
use crate::load::{Transport, Workload};

/// Where the Debian package installs cfssl.
pub const CFSSL: &str = "/usr/bin/cfssl";
const SIGN_PATH: &str = "/api/v1/cfssl/sign";
const CONFIG: &str =
    r#"{"signing":{"default":{"usages":["digital signature","client auth"],"expiry":"8760h"}}}"#;

/// The cfssl binary to run: `$CFSSL` if set, else [`CFSSL`]; `Err(path tried)` if it does
/// not run.
pub fn binary() -> Result<String, String> {
    let path = std::env::var("CFSSL").unwrap_or_else(|_| CFSSL.to_owned());
    let runs = Command::new(&path)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs { Ok(path) } else { Err(path) }
}

/// Where `cfssl serve` records what it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertDb {
    /// No `-db-config`: cfssl keeps no record.
    Stateless,
    /// cfssl's `certificates` schema in a SQLite file (WAL, `synchronous=FULL`).
    Sqlite,
    /// cfssl's schema in a fresh database on this PostgreSQL server (dropped afterwards).
    Postgres(String),
}

impl CertDb {
    /// How a report names it.
    pub fn describe(&self) -> &'static str {
        match self {
            CertDb::Stateless => {
                "none (cfssl serve without -db-config keeps no record of what it signs)"
            }
            CertDb::Sqlite => "SQLite certificate database (cfssl's schema, WAL, synchronous=FULL)",
            CertDb::Postgres(_) => "PostgreSQL certificate database (cfssl's schema)",
        }
    }
}

/// cfssl's `certdb` schema (its SQLite migrations 001 and 002), which `cfssl serve -db-config`
/// expects to exist.
const SQLITE_SCHEMA: &str = "CREATE TABLE certificates (serial_number blob NOT NULL, \
     authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL, reason int, \
     expiry timestamp, revoked_at timestamp, pem blob NOT NULL, issued_at timestamp, \
     not_before timestamp, metadata text, sans text, common_name text, \
     PRIMARY KEY (serial_number, authority_key_identifier)); \
     CREATE TABLE ocsp_responses (serial_number blob NOT NULL, \
     authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp, \
     PRIMARY KEY (serial_number, authority_key_identifier))";

/// The same schema in cfssl's PostgreSQL types.
const POSTGRES_SCHEMA: &str = "CREATE TABLE certificates (serial_number bytea NOT NULL, \
     authority_key_identifier bytea NOT NULL, ca_label bytea, status bytea NOT NULL, \
     reason int, expiry timestamptz, revoked_at timestamptz, pem bytea NOT NULL, \
     issued_at timestamptz, not_before timestamptz, metadata jsonb, sans jsonb, \
     common_name text, PRIMARY KEY (serial_number, authority_key_identifier)); \
     CREATE TABLE ocsp_responses (serial_number bytea NOT NULL, \
     authority_key_identifier bytea NOT NULL, body bytea NOT NULL, expiry timestamptz, \
     PRIMARY KEY (serial_number, authority_key_identifier))";

/// Creates the certificate database `db` names and returns the `-db-config` JSON for it.
async fn create_cert_db(
    dir: &Path,
    db: &CertDb,
) -> anyhow::Result<(Option<String>, Option<crate::setup::Postgres>)> {
    use sqlx::Connection;
    match db {
        CertDb::Stateless => Ok((None, None)),
        CertDb::Sqlite => {
            let path = dir.join("certs.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            sqlx::raw_sql(SQLITE_SCHEMA).execute(&mut conn).await?;
            conn.close().await?;
            // mattn/go-sqlite3 DSN parameters: the journal mode and the sync level of each commit.
            Ok((
                Some(r#"{"driver":"sqlite3","data_source":"file:certs.db?_journal_mode=WAL&_synchronous=FULL"}"#.to_owned()),
                None,
            ))
        }
        CertDb::Postgres(server) => {
            let database = crate::setup::Postgres::create(server).await?;
            let mut conn = sqlx::PgConnection::connect(database.url()).await?;
            sqlx::raw_sql(POSTGRES_SCHEMA).execute(&mut conn).await?;
            conn.close().await?;
            let source = format!("{}?sslmode=disable", database.url());
            Ok((
                Some(format!(
                    r#"{{"driver":"postgres","data_source":"{source}"}}"#
                )),
                Some(database),
            ))
        }
    }
}

/// A running `cfssl serve` (killed when dropped) and the trust for its TLS certificate.
pub struct Cfssl {
    child: Child,
    _dir: tempfile::TempDir,
    database: Option<crate::setup::Postgres>,
    /// Its HTTPS address.
    pub addr: SocketAddr,
    /// Client configuration trusting its CA.
    pub tls: Arc<ClientConfig>,
}

impl Cfssl {
    /// Writes a CA, a TLS certificate for 127.0.0.1, the signing config and the certificate
    /// database `db` asks for, then starts `cfssl serve`.
    pub async fn start(binary: &str, db: &CertDb) -> anyhow::Result<Cfssl> {
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cfssl bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);
        let tls_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let tls_params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        let tls_cert = tls_params.signed_by(&tls_key, &issuer)?;

        let d = dir.path();
        write(d, "ca.pem", &ca_cert.pem())?;
        write(d, "ca-key.pem", &ca_key.serialize_pem())?;
        write(d, "tls.pem", &tls_cert.pem())?;
        write(d, "tls-key.pem", &tls_key.serialize_pem())?;
        write(d, "config.json", CONFIG)?;
        let (db_config, database) = create_cert_db(d, db).await?;
        let mut command = Command::new(binary);
        command.current_dir(d).arg("serve");
        if let Some(config) = db_config {
            write(d, "db.json", &config)?;
            command.args(["-db-config", "db.json"]);
        }

        let addr = crate::setup::free_port()?;
        let child = command
            .args(["-address", "127.0.0.1", "-port"])
            .arg(addr.port().to_string())
            .args([
                "-ca",
                "ca.pem",
                "-ca-key",
                "ca-key.pem",
                "-config",
                "config.json",
                "-tls-cert",
                "tls.pem",
                "-tls-key",
                "tls-key.pem",
                "-loglevel",
                "5",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_cert.der().to_vec()))?;
        let tls = Arc::new(
            ClientConfig::builder_with_provider(crate::setup::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let mut cfssl = Cfssl {
            child,
            _dir: dir,
            database,
            addr,
            tls,
        };
        cfssl.wait()?;
        Ok(cfssl)
    }

    /// Stops cfssl and drops its PostgreSQL database, if it had one.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(database) = self.database.take() {
            database.drop_database().await?;
        }
        Ok(())
    }

    /// The process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("cfssl serve exited at start-up ({status})");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("cfssl serve did not answer on {} within 30 s", self.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cfssl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))
}

/// `POST /api/v1/cfssl/sign` with `{"certificate_request": "<CSR PEM>"}` for each CSR.
pub struct Sign {
    host: HeaderValue,
    tls: Arc<ClientConfig>,
    bodies: Vec<Bytes>,
}

impl Sign {
    /// One request per CSR.
    pub fn new(cfssl: &Cfssl, csrs: &[KeyAndCsr]) -> anyhow::Result<Sign> {
        Ok(Sign {
            host: HeaderValue::from_str(&cfssl.addr.to_string())?,
            tls: cfssl.tls.clone(),
            bodies: csrs.iter().map(|c| sign_body(&c.csr)).collect(),
        })
    }
}

/// The JSON body: PEM holds only base64, dashes, spaces and newlines, so escaping the newlines
/// suffices.
fn sign_body(csr: &[u8]) -> Bytes {
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr.to_vec()));
    let escaped = pem.replace("\r\n", "\\n").replace('\n', "\\n");
    Bytes::from(format!("{{\"certificate_request\":\"{escaped}\"}}"))
}

impl Workload for Sign {
    fn capacity(&self) -> Option<usize> {
        Some(self.bodies.len())
    }

    fn request(&self, index: usize) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.bodies[index].clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = hyper::Uri::from_static(SIGN_PATH);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request
    }

    fn check(&self, _: usize, body: &Bytes) -> Result<(), String> {
        let found = body
            .windows(SUCCESS.len())
            .any(|window| window == SUCCESS.as_bytes());
        if found {
            Ok(())
        } else {
            Err(format!(
                "cfssl answer without \"success\":true: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ))
        }
    }

    fn transport(&self, _: usize) -> Transport {
        Transport::Tls(self.tls.clone())
    }
}

const SUCCESS: &str = "\"success\":true";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_body_is_one_json_line() {
        let body = sign_body(&[1, 2, 3]);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.starts_with("{\"certificate_request\":\"-----BEGIN CERTIFICATE REQUEST-----\\n")
        );
        assert!(!text.contains('\n'));
    }
}
