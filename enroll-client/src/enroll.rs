//! First enrollment and renewal: key generated here, CSR, EST, chain verified against the given
//! root before anything is written, then the credential set replaced atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::PublicKeyData;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::chain::{certificate_serial, hex_serial, read_root, verify_chain};
use crate::client_identity::{client_identity, subject_serial};
use crate::clock;
use crate::csr::{build_csr, generate_key};
use crate::error::ClientError;
use crate::est::EstClient;
use crate::keystore::{self, Credential};
use crate::staging::{self, Purpose, Staged, StagedTpmKey};
use crate::tpm::{Tpm, TpmKey};

/// Where the CA is and how to trust it.
#[derive(Debug, Clone)]
pub struct Server {
    /// `https://host:port`.
    pub url: String,
    /// Root certificate to trust (PEM).
    pub ca_cert: PathBuf,
    /// Optional EST label (product or level).
    pub label: Option<String>,
    /// The TCTI of the TPM that holds the device key (`--tpm`); `None`: a key file.
    pub tpm: Option<String>,
}

/// What authorizes a first enrollment.
pub enum EnrollAuthorization {
    /// The device's one-time token; never logged.
    Token(String),
    /// The credential directory of a manufacturing station enrolling the device.
    Station(PathBuf),
}

impl std::fmt::Debug for EnrollAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrollAuthorization::Token(_) => f.write_str("Token(<redacted>)"),
            EnrollAuthorization::Station(dir) => f.debug_tuple("Station").field(dir).finish(),
        }
    }
}

/// What `enroll-client enroll` is asked to do.
#[derive(Debug)]
pub struct EnrollRequest {
    /// `https://host:port`.
    pub server: String,
    /// Root certificate to trust (PEM).
    pub ca_cert: PathBuf,
    pub serial: String,
    pub authorization: EnrollAuthorization,
    pub out: PathBuf,
    /// Optional EST label (product or level).
    pub label: Option<String>,
    /// The TCTI of the TPM to create the device key in (`--tpm`).
    pub tpm: Option<String>,
}

/// The result of a successful enrollment or renewal.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// Hex serial of the new certificate.
    pub certificate_serial: String,
    pub not_after: String,
    pub files: Vec<PathBuf>,
    /// Set when the certificate was valid only by the CA's clock: what is wrong and what to do.
    pub clock_warning: Option<String>,
}

/// First enrollment, with a one-time token or by a station. A software key and its CSR are
/// staged in `out` first, so a rerun for the same serial (after a crash or a lost answer) sends
/// the same CSR again; a TPM key is attested afresh on each attempt (its challenge is single-use).
pub async fn enroll(request: &EnrollRequest) -> Result<Enrolled, ClientError> {
    let server = Server {
        url: request.server.clone(),
        ca_cert: request.ca_cert.clone(),
        label: request.label.clone(),
        tpm: request.tpm.clone(),
    };
    let root = read_root(&server.ca_cert)?;
    let station = match &request.authorization {
        EnrollAuthorization::Station(dir) => Some(client_identity(&keystore::load(dir)?, None)?),
        EnrollAuthorization::Token(_) => None,
    };
    let trusted = crate::trust::Trust::load(&root, &request.out)?;
    let client = EstClient::trusting(&server.url, trusted.roots(), &ca_name(&server), station)?;
    if let Some(tcti) = &request.tpm {
        let tpm = Tpm::open(tcti)?;
        let purpose = Purpose::Enroll(request.serial.clone());
        let key = staged_tpm_key(&tpm, &request.out, purpose)?;
        let issued = crate::attested::enroll(&client, &key, request)
            .await
            .inspect_err(|error| forget_if_refused(&request.out, error))?;
        let enrolled = install(
            &client,
            &server,
            &root,
            &key,
            key.to_pem()?,
            issued,
            &request.out,
        )
        .await?;
        staging::clear(&request.out);
        return Ok(enrolled);
    }
    let label = server.label.as_deref();
    let purpose = Purpose::Enroll(request.serial.clone());
    let staged = match staging::load(&request.out)? {
        Some(staged) if staged.purpose == purpose => {
            tracing::info!(serial = %request.serial, "sending the staged enrollment request again");
            staged
        }
        _ => {
            let key = generate_key(&client.csrattrs(label).await?)?;
            let csr_der = build_csr(&key, &request.serial)?;
            let staged = Staged {
                purpose,
                key,
                csr_der,
            };
            staging::stage(&request.out, &staged)?;
            staged
        }
    };
    let issued = match &request.authorization {
        EnrollAuthorization::Token(token) => {
            client
                .simpleenroll(label, &request.serial, token, &staged.csr_der)
                .await
        }
        EnrollAuthorization::Station(_) => {
            client.simpleenroll_as_station(label, &staged.csr_der).await
        }
    }
    .inspect_err(|error| forget_if_refused(&request.out, error))?;
    let key_pem = staged.key.serialize_pem();
    let enrolled = install(
        &client,
        &server,
        &root,
        &staged.key,
        key_pem,
        issued,
        &request.out,
    )
    .await?;
    staging::clear(&request.out);
    Ok(enrolled)
}

/// Re-enrollment with the credential in `dir`: a new key (staged in `dir` first, or the one a
/// previous attempt staged for this same certificate), `simplereenroll` over mutual TLS with the
/// current certificate, then the set replaced atomically and the staged request cleared.
pub async fn reenroll(server: &Server, dir: &Path) -> Result<Enrolled, ClientError> {
    let root = read_root(&server.ca_cert)?;
    let current = keystore::load(dir)?;
    let tpm = server.tpm.as_deref().map(Tpm::open).transpose()?;
    let identity = client_identity(&current, tpm.as_ref())?;
    let serial = subject_serial(&identity.chain[0])?;
    let from = certificate_serial(&identity.chain[0])?;
    let trusted = crate::trust::Trust::load(&root, dir)?;
    let client = EstClient::trusting(
        &server.url,
        trusted.roots(),
        &ca_name(server),
        Some(identity),
    )?;
    if let Some(tpm) = &tpm {
        let key = staged_tpm_key(tpm, dir, Purpose::Renew(from))?;
        let issued = crate::attested::reenroll(&client, &key, &serial, server.label.as_deref())
            .await
            .inspect_err(|error| forget_if_refused(dir, error))?;
        let enrolled = install(&client, server, &root, &key, key.to_pem()?, issued, dir).await?;
        staging::clear(dir);
        return Ok(enrolled);
    }
    let label = server.label.as_deref();
    let staged = match pending_renewal(dir)? {
        Some(staged) => {
            tracing::info!(from = %from, "sending the staged renewal request again");
            staged
        }
        None => {
            let key = generate_key(&client.csrattrs(label).await?)?;
            let csr_der = build_csr(&key, &serial)?;
            let staged = Staged {
                purpose: Purpose::Renew(from),
                key,
                csr_der,
            };
            staging::stage(dir, &staged)?;
            staged
        }
    };
    let issued = client
        .simplereenroll(label, &staged.csr_der)
        .await
        .inspect_err(|error| forget_if_refused(dir, error))?;
    let key_pem = staged.key.serialize_pem();
    let enrolled = install(&client, server, &root, &staged.key, key_pem, issued, dir).await?;
    staging::clear(dir);
    Ok(enrolled)
}

/// The TPM key staged in `dir` for `purpose` by an attempt whose answer never arrived, loaded
/// back into `tpm`; else a new key made in `tpm` and staged before anything is sent. The CA
/// answers a repeat for that key with the certificate it already issued, so a lost answer does
/// not become a second identity (or, for a token, a refusal).
fn staged_tpm_key(tpm: &Arc<Tpm>, dir: &Path, purpose: Purpose) -> Result<TpmKey, ClientError> {
    if let Some(staged) = staging::load_tpm_key(dir)?
        && staged.purpose == purpose
    {
        match TpmKey::load_in(tpm, staged.tss2_pem.as_bytes()) {
            Ok(key) => {
                tracing::info!(purpose = ?purpose, "attesting the staged TPM key again");
                return Ok(key);
            }
            Err(error) => {
                tracing::warn!(%error, "the staged TPM key does not load in this TPM; making a new one");
            }
        }
    }
    let key = TpmKey::create_in(tpm)?;
    staging::stage_tpm_key(
        dir,
        &StagedTpmKey {
            purpose,
            tss2_pem: key.to_pem()?,
        },
    )?;
    Ok(key)
}

/// The renewal request staged for the current certificate in `dir` and not yet installed, if
/// any. A staged request that is stale (for another certificate, or already installed) is removed.
pub fn pending_renewal(dir: &Path) -> Result<Option<Staged>, ClientError> {
    let Some(staged) = staging::load(dir)? else {
        return Ok(None);
    };
    let current = keystore::load(dir)?;
    let block = pem::parse(&current.cert_pem)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    let leaf = CertificateDer::from(block.into_contents());
    if staged.purpose == Purpose::Renew(certificate_serial(&leaf)?) {
        return Ok(Some(staged));
    }
    // Installed already (a crash after the switch) or left from another identity.
    tracing::debug!(purpose = ?staged.purpose, "removing a stale staged request");
    staging::clear(dir);
    Ok(None)
}

/// A CA refusal of the CSR itself (its key, subject or encoding) will refuse it again: the
/// staged request is dropped so the next attempt starts from a new key.
fn forget_if_refused(dir: &Path, error: &ClientError) {
    if refuses_csr(error) {
        tracing::info!(%error, "the CA refused the staged request itself; dropping it");
        staging::clear(dir);
    }
}

/// True when the CA refused a request for its CSR (key, subject, encoding): sending the same CSR
/// again can never succeed.
pub(crate) fn refuses_csr(error: &ClientError) -> bool {
    match error {
        ClientError::Forbidden { code, .. } | ClientError::Server { code, .. } => {
            code.starts_with("csr.") || code == "reenroll.key_reuse"
        }
        _ => false,
    }
}

fn ca_name(server: &Server) -> String {
    server.ca_cert.display().to_string()
}

/// Verifies the issued certificate for `key` and replaces the credential set in `out` with it
/// and `key_pem` (a PKCS#8 key, or a TPM key's TSS2 PRIVATE KEY blobs).
async fn install(
    client: &EstClient,
    server: &Server,
    root: &CertificateDer<'static>,
    key: &impl PublicKeyData,
    key_pem: String,
    issued: Vec<Vec<u8>>,
    out: &Path,
) -> Result<Enrolled, ClientError> {
    let leaf = issued
        .first()
        .ok_or_else(|| ClientError::BadResponse("the CA returned no certificate".into()))?;
    let ca_certs = client.cacerts(server.label.as_deref()).await?;
    // A new root in cacerts is taken up only through its link certificate (DIR/trust.pem).
    let mut trust = crate::trust::Trust::load(root, out)?;
    trust.update(&ca_certs)?;
    let root = trust.root_for(leaf, &ca_certs);
    let chain = verify_chain(leaf, &ca_certs, root, key, &ca_name(server))?;
    let clock_warning = clock_warning(leaf);
    let (_, parsed) =
        X509Certificate::from_der(leaf).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    let serial = hex_serial(&parsed);
    let credential = Credential {
        key_pem,
        cert_pem: keystore::certificates_pem([leaf.as_slice()]),
        chain_pem: keystore::certificates_pem(chain.iter().map(|c| c.as_ref())),
    };
    let files = keystore::store(out, &serial, &credential)?;
    Ok(Enrolled {
        certificate_serial: serial,
        not_after: parsed.validity().not_after.to_string(),
        files,
        clock_warning,
    })
}

/// When `leaf` is not valid by the device clock (it was accepted by the CA's), what to say.
fn clock_warning(leaf: &[u8]) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(leaf).ok()?;
    let now = clock::device_now();
    let validity = parsed.validity();
    let (from, to) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if (from..=to).contains(&now) {
        return None;
    }
    let skew = clock::skew()?;
    Some(clock::skew_advice(
        skew,
        "the new certificate is valid by the CA's clock, not yet by the device's; installed",
    ))
}
