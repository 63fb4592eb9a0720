//! The offline root's pre-signed OCSP responses over the CA certificates it issued: each one is
//! checked before it is installed in `DIR/ca/root-ocsp/<name>.ocsp.der` (by `ca import`, and by
//! `ca install-root-ocsp` at every renewal), so the server can serve them as they are.

use std::path::{Path, PathBuf};

use iomt_core::files::{PUBLIC, write_atomic};
use iomt_core::ocsp::{OcspCheckError, Status, check_response, read_answers};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::PkiError;
use super::external::CSR_DIR;
use super::material::{ROOT_OCSP_DIR, read_cert};
use super::{ROOT_CA, STATION_CA, TLS_CERT, issuing_ca_name};

/// Why pre-signed responses were not installed.
#[derive(Debug, thiserror::Error)]
pub enum RootOcspError {
    #[error("{path}: {problem}; nothing was installed")]
    Refused {
        path: PathBuf,
        problem: ResponseProblem,
    },
    #[error("{0} has no <name>.ocsp.der for any CA certificate; nothing was installed")]
    NoneFound(PathBuf),
    #[error(
        "{0} was not created with --external-root: an online root's OCSP answers are signed by the server"
    )]
    NotExternal(PathBuf),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Why one pre-signed response cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ResponseProblem {
    #[error("a certificate it is checked against does not parse: {0}")]
    Certificate(#[source] x509_parser::nom::Err<X509Error>),
    #[error(transparent)]
    Check(#[from] OcspCheckError),
    #[error("the response answers {0} certificates; exactly one is expected")]
    AnswerCount(usize),
    #[error("the response's CertID is not this certificate under this root")]
    WrongCertId,
    #[error("the response has no nextUpdate (it would never expire)")]
    NoNextUpdate,
}

/// A response that passed the checks, ready to install.
#[derive(Debug, Clone)]
pub struct CheckedResponse {
    /// The certificate it answers for (`basic`, `station`, ...).
    pub name: String,
    pub status: Status,
    /// Its nextUpdate (Unix time).
    pub next_update: i64,
    der: Vec<u8>,
}

/// The certificates the root issued to this CA, by name, in the order they are imported.
pub fn root_issued_names() -> [&'static str; 5] {
    [
        issuing_ca_name(iomt_core::policy::Level::Basic),
        issuing_ca_name(iomt_core::policy::Level::Substantial),
        issuing_ca_name(iomt_core::policy::Level::High),
        STATION_CA,
        TLS_CERT,
    ]
}

/// Checks `from/<name>.ocsp.der` for each `(name, certificate DER)`; a missing file is skipped.
pub fn check_dir(
    from: &Path,
    root_der: &[u8],
    certs: &[(&str, &[u8])],
    now: i64,
) -> Result<Vec<CheckedResponse>, RootOcspError> {
    let mut checked = Vec::new();
    for (name, cert_der) in certs {
        let path = from.join(format!("{name}.ocsp.der"));
        if !path.exists() {
            continue;
        }
        let der = std::fs::read(&path).map_err(|e| PkiError::io(&path, e))?;
        let (status, next_update) = check_one(&der, root_der, cert_der, now)
            .map_err(|problem| RootOcspError::Refused { path, problem })?;
        checked.push(CheckedResponse {
            name: (*name).to_owned(),
            status,
            next_update,
            der,
        });
    }
    Ok(checked)
}

/// Signed by the root (or a responder it delegated), answering for exactly this certificate
/// under this root, current, and with a nextUpdate (a response without one never expires).
fn check_one(
    der: &[u8],
    root_der: &[u8],
    cert_der: &[u8],
    now: i64,
) -> Result<(Status, i64), ResponseProblem> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(ResponseProblem::Certificate)?;
    let (_, root) = X509Certificate::from_der(root_der).map_err(ResponseProblem::Certificate)?;
    let serial = cert.raw_serial();
    let status = check_response(der, root_der, serial, None, now)?;
    let answers = read_answers(der)?;
    let [answer] = answers.as_slice() else {
        return Err(ResponseProblem::AnswerCount(answers.len()));
    };
    let id = &answer.cert_id;
    if id.serial != serial
        || id.issuer_name_hash != id.hash.digest(root.subject().as_raw())
        || id.issuer_key_hash != id.hash.digest(&root.public_key().subject_public_key.data)
    {
        return Err(ResponseProblem::WrongCertId);
    }
    let next_update = answer.next_update.ok_or(ResponseProblem::NoNextUpdate)?;
    Ok((status, next_update))
}

/// Writes each checked response to `dir/ca/root-ocsp/<name>.ocsp.der`, replacing atomically.
pub fn install(dir: &Path, responses: &[CheckedResponse]) -> Result<(), PkiError> {
    let target = dir.join("ca").join(ROOT_OCSP_DIR);
    std::fs::create_dir_all(&target).map_err(|e| PkiError::io(&target, e))?;
    for response in responses {
        let path = target.join(format!("{}.ocsp.der", response.name));
        write_atomic(&path, &response.der, PUBLIC).map_err(|e| PkiError::io(&path, e))?;
    }
    Ok(())
}

/// `ca install-root-ocsp --from DIR`: checks renewed responses against the installed root and CA
/// certificates, then installs them (all or nothing). The server reads them when it starts.
pub fn install_renewed(dir: &Path, from: &Path) -> Result<Vec<CheckedResponse>, RootOcspError> {
    if !dir.join(CSR_DIR).exists() {
        return Err(RootOcspError::NotExternal(dir.to_path_buf()));
    }
    let ca_dir = dir.join("ca");
    let root_der = read_cert(&ca_dir.join(format!("{ROOT_CA}.crt.pem")))?;
    let mut certs = Vec::new();
    for name in root_issued_names() {
        certs.push((name, read_cert(&ca_dir.join(format!("{name}.crt.pem")))?));
    }
    let certs: Vec<(&str, &[u8])> = certs.iter().map(|(n, d)| (*n, d.as_ref())).collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let checked = check_dir(from, &root_der, &certs, now)?;
    if checked.is_empty() {
        return Err(RootOcspError::NoneFound(from.to_path_buf()));
    }
    install(dir, &checked)?;
    Ok(checked)
}
