//! First enrollment and renewal: key generated here, CSR, EST, chain verified against the given
//! root before anything is written, then the credential set replaced atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iomt_core::oids;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, PublicKeyData};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::clock;
use crate::error::ClientError;
use crate::est::EstClient;
use crate::keystore::{self, Credential};
use crate::staging::{self, Purpose, Staged, StagedTpmKey};
use crate::tls::{ClientIdentity, ClientKey};
use crate::tpm::tss2_pem::is_tss2_pem;
use crate::tpm::{Tpm, TpmKey, TpmKeyFile};

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

/// Reads the first certificate of a PEM file.
pub fn read_root(path: &Path) -> Result<CertificateDer<'static>, ClientError> {
    let text = std::fs::read(path).map_err(ClientError::io(path))?;
    let block = pem::parse(text).map_err(|e| {
        ClientError::Local(format!("{}: not a PEM certificate: {e}", path.display()))
    })?;
    Ok(CertificateDer::from(block.into_contents()))
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

/// The hex serial of a certificate.
pub(crate) fn certificate_serial(cert: &[u8]) -> Result<String, ClientError> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    Ok(hex_serial(&parsed))
}

fn hex_serial(cert: &X509Certificate<'_>) -> String {
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The current certificate chain (leaf, issuing CA) and key, for the TLS client certificate.
/// A `TSS2 PRIVATE KEY` is loaded into `tpm` (the device's `--tpm`), which signs the handshakes.
pub(crate) fn client_identity(
    current: &Credential,
    tpm: Option<&Arc<Tpm>>,
) -> Result<ClientIdentity, ClientError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ClientError::Local(format!("the current {what} cannot be read: {e}"))
    };
    let mut chain: Vec<CertificateDer<'static>> = pem::parse_many(&current.cert_pem)
        .map_err(|e| bad("certificate", &e))?
        .into_iter()
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    // chain.pem holds the issuing CA then the root; the server needs only the issuing CA.
    if let Some(issuing) = pem::parse_many(&current.chain_pem)
        .map_err(|e| bad("chain", &e))?
        .into_iter()
        .next()
    {
        chain.push(CertificateDer::from(issuing.into_contents()));
    }
    if chain.is_empty() {
        return Err(ClientError::Local(
            "the current certificate file is empty".into(),
        ));
    }
    if is_tss2_pem(current.key_pem.as_bytes()) {
        let tpm = tpm.ok_or_else(|| {
            ClientError::Local(
                "key.pem is a TPM key (TSS2 PRIVATE KEY): pass --tpm TCTI to use it".into(),
            )
        })?;
        // Loaded once here so that a key file this TPM cannot load fails now, not mid-handshake.
        drop(TpmKey::load_in(tpm, current.key_pem.as_bytes())?);
        return Ok(ClientIdentity {
            chain,
            key: ClientKey::Tpm(TpmKeyFile {
                tpm: tpm.clone(),
                pem: current.key_pem.as_bytes().to_vec(),
            }),
        });
    }
    let key = pem::parse(&current.key_pem).map_err(|e| bad("key", &e))?;
    let key = PrivateKeyDer::try_from(key.into_contents()).map_err(|e| bad("key", &e))?;
    Ok(ClientIdentity {
        chain,
        key: ClientKey::Software(key),
    })
}

fn subject_serial(cert: &CertificateDer<'_>) -> Result<String, ClientError> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    parsed
        .subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == "2.5.4.5")
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ClientError::Local("the current certificate has no subject serialNumber".into())
        })
}

/// P-256 unless the CA's csrattrs allow only P-384.
pub(crate) fn generate_key(
    requirements: &iomt_core::wire::CsrRequirements,
) -> Result<KeyPair, ClientError> {
    let curves = requirements
        .attributes
        .iter()
        .find(|(attr, _)| *attr == oids::EC_PUBLIC_KEY)
        .map(|(_, curves)| curves.clone());
    let alg = match curves {
        Some(curves) if !curves.contains(&oids::SECP256R1) && curves.contains(&oids::SECP384R1) => {
            &rcgen::PKCS_ECDSA_P384_SHA384
        }
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    KeyPair::generate_for(alg)
        .map_err(|e| ClientError::Local(format!("key generation failed: {e}")))
}

/// A CSR carrying only the device serial (the CA fills everything else from its registry).
pub fn build_csr(key: &KeyPair, serial: &str) -> Result<Vec<u8>, ClientError> {
    build_csr_with(key, serial)
}

/// The subject a device asks for: its serialNumber alone, as a PrintableString (the CA fills
/// everything else from its registry).
pub(crate) fn device_subject(serial: &str) -> Result<DistinguishedName, ClientError> {
    let mut dn = DistinguishedName::new();
    let printable = serial
        .try_into()
        .map_err(|_| ClientError::Local(format!("serial `{serial}` is not a PrintableString")))?;
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(printable),
    );
    Ok(dn)
}

/// The CSR for `serial` signed by any key: a software key pair or one held by the TPM.
pub fn build_csr_with(key: &impl rcgen::SigningKey, serial: &str) -> Result<Vec<u8>, ClientError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = device_subject(serial)?;
    let csr = params
        .serialize_request(key)
        .map_err(|e| ClientError::Local(format!("CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// Verifies the leaf against `root` through one of the CA certificates, for TLS client use,
/// and that it certifies our key. Returns the chain to write: issuing CA, then root.
pub fn verify_chain(
    leaf: &[u8],
    ca_certs: &[Vec<u8>],
    root: &CertificateDer<'static>,
    key: &impl PublicKeyData,
    ca_name: &str,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let untrusted = |reason: String| ClientError::Untrusted {
        ca_cert: ca_name.to_owned(),
        reason,
    };
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| ClientError::BadResponse(format!("certificate: {e}")))?;
    let issuer = ca_certs
        .iter()
        .find(|ca| {
            X509Certificate::from_der(ca)
                .map(|(_, c)| c.subject().as_raw() == parsed.issuer().as_raw())
                .unwrap_or(false)
        })
        .ok_or_else(|| untrusted("the CA did not provide the issuing CA certificate".into()))?;
    let issuer = CertificateDer::from(issuer.clone());
    verify_leaf(leaf, key, root, std::slice::from_ref(&issuer), ca_name)?;
    Ok(vec![issuer, root.clone()])
}

/// Verifies that `leaf` certifies `key` and chains to `anchor` (through `intermediates`) for TLS
/// client use. A batch that has verified one leaf through an issuing CA up to the root may pass
/// that issuing CA as the anchor for the next leaves (one P-256 verification instead of a P-384
/// one more). Time is the device clock; a certificate valid only by the CA's clock (measured
/// from its answers) is accepted with a warning: the CA committed it, and the device's clock,
/// not the certificate, is wrong.
pub fn verify_leaf(
    leaf: &[u8],
    key: &impl PublicKeyData,
    anchor: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    ca_name: &str,
) -> Result<(), ClientError> {
    let untrusted = |reason: String| ClientError::Untrusted {
        ca_cert: ca_name.to_owned(),
        reason,
    };
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| ClientError::BadResponse(format!("certificate: {e}")))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(ClientError::BadResponse(
            "the issued certificate is for a different key".into(),
        ));
    }
    let leaf_der = CertificateDer::from(leaf);
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| untrusted(format!("{e:?}")))?;
    let anchor =
        webpki::anchor_from_trusted_cert(anchor).map_err(|e| untrusted(format!("{e:?}")))?;
    let verify_at = |at: UnixTime| {
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                intermediates,
                at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
    };
    match verify_at(clock::device_unix_time()) {
        Ok(()) => Ok(()),
        Err(error) if is_time_error(&error) => {
            let Some(skew) = clock::skew().filter(|s| s.abs() > clock::SKEW_TOLERANCE_SECS) else {
                return Err(untrusted(format!(
                    "{error:?} by the device clock ({}); check the device's time",
                    time::OffsetDateTime::from_unix_timestamp(clock::device_now())
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                )));
            };
            let ca_time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                clock::ca_now().max(0) as u64,
            ));
            verify_at(ca_time).map_err(|e| {
                untrusted(format!("{e:?} (also by the CA's clock, {skew:+} s away)"))
            })?;
            tracing::warn!(
                skew_secs = skew,
                "{}",
                clock::skew_advice(
                    skew,
                    "the issued certificate is valid by the CA's clock only"
                )
            );
            Ok(())
        }
        Err(error) => Err(untrusted(format!("{error:?}"))),
    }
}

fn is_time_error(error: &webpki::Error) -> bool {
    matches!(
        error,
        webpki::Error::CertNotValidYet { .. } | webpki::Error::CertExpired { .. }
    )
}
