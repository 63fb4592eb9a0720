//! CA keys and certificates loaded from the data directory for signing.

use std::collections::BTreeMap;
use std::path::Path;

use iomt_core::policy::Level;
use rcgen::{Issuer, PublicKeyData};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::audit_signer::{self, AuditSigner};
use super::custody::KeyAccess;
use super::error::PkiError;
use super::keystore::KeyStore;
use super::signer::CaKey;
use super::{ROOT_CA, STATION_CA, TLS_CERT, issuing_ca_name};

/// `DIR/ca/root.crl`: the CRL over the CA certificates produced by an offline root.
pub const ROOT_CRL_FILE: &str = "root.crl";
/// `DIR/ca/root-ocsp/<name>.ocsp.der`: the offline root's pre-signed OCSP responses over the CA
/// certificates (checked when installed; see `pki::root_ocsp`).
pub const ROOT_OCSP_DIR: &str = "root-ocsp";

/// A CA that signs: its certificate, the rcgen issuer (DN, key id, key) and its validity end.
pub struct IssuingCa {
    /// Short name (`basic`, `station`, ...).
    pub name: String,
    pub cert_der: CertificateDer<'static>,
    pub issuer: Issuer<'static, CaKey>,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is elided on purpose.
        f.debug_struct("IssuingCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every CA certificate and signing key the server uses.
pub struct CaMaterial {
    pub root_der: CertificateDer<'static>,
    /// The root as a signer (CRLs over the CA certificates); `None` when the root is offline.
    pub root: Option<IssuingCa>,
    /// The CRL over the CA certificates that an offline root produced (`DIR/ca/root.crl`, DER).
    pub root_crl: Option<Vec<u8>>,
    /// The offline root's pre-signed OCSP responses, `(certificate name, DER)`; empty when the
    /// root is online (the server then signs through a root-delegated responder).
    pub root_ocsp: Vec<(String, Vec<u8>)>,
    pub issuing: BTreeMap<Level, IssuingCa>,
    pub station: IssuingCa,
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// The HTTPS listener's certificate (issued by the root).
    pub tls_cert: CertificateDer<'static>,
    pub tls_key: PrivateKeyDer<'static>,
    /// The key that signs audit checkpoints; `None` in a data directory created before them.
    pub audit: Option<AuditSigner>,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("issuing", &self.issuing)
            .finish_non_exhaustive()
    }
}

impl CaMaterial {
    /// Loads `dir/ca/*`, unlocking the keys with the default sources (IOMT_CA_PASSPHRASE,
    /// `DIR/passphrase`, IOMT_PKCS11_PIN, the PIN file recorded at `init`).
    pub fn load(dir: &Path) -> Result<CaMaterial, PkiError> {
        CaMaterial::load_with(dir, &KeyAccess::default())
    }

    /// Loads `dir/ca/*`, unlocking the keys as `access` says.
    pub fn load_with(dir: &Path, access: &KeyAccess) -> Result<CaMaterial, PkiError> {
        let ca_dir = dir.join("ca");
        let root_path = ca_dir.join(format!("{ROOT_CA}.crt.pem"));
        if !root_path.exists() && dir.join("csr").exists() {
            return Err(PkiError::NotImported(dir.display().to_string()));
        }
        let keys = KeyStore::open(dir, access)?;
        let root_der = read_cert(&root_path)?;
        let mut issuing = BTreeMap::new();
        for level in Level::ALL {
            issuing.insert(level, load_ca(&keys, &ca_dir, issuing_ca_name(level))?);
        }
        let station = load_ca(&keys, &ca_dir, STATION_CA)?;
        let tls_cert = read_cert(&ca_dir.join(format!("{TLS_CERT}.crt.pem")))?;
        let tls_key = keys.load_tls(&ca_dir, TLS_CERT)?;
        let root = match keys.load(&ca_dir, ROOT_CA)? {
            Some(key) => Some(issuing_ca(&ca_dir, ROOT_CA, key)?),
            None => None,
        };
        let crl_path = ca_dir.join(ROOT_CRL_FILE);
        let root_crl = if root.is_none() && crl_path.exists() {
            Some(std::fs::read(&crl_path).map_err(|e| PkiError::io(&crl_path, e))?)
        } else {
            None
        };
        let audit = audit_signer::load(&keys, &ca_dir)?;
        let root_ocsp = if root.is_none() {
            read_root_ocsp(&ca_dir.join(ROOT_OCSP_DIR))?
        } else {
            Vec::new()
        };
        Ok(CaMaterial {
            audit,
            tls_chain: vec![tls_cert.clone(), root_der.clone()],
            tls_cert,
            root,
            root_crl,
            root_ocsp,
            root_der,
            issuing,
            station,
            tls_key,
        })
    }

    /// A CA that publishes a CRL, by name (`root`, `basic`, `substantial`, `high`, `station`).
    pub fn signer(&self, name: &str) -> Option<&IssuingCa> {
        match name {
            ROOT_CA => self.root.as_ref(),
            STATION_CA => Some(&self.station),
            other => Level::parse(other).map(|level| self.issuing(level)),
        }
    }

    /// Names of every CA that publishes a CRL.
    pub fn crl_issuers() -> [&'static str; 5] {
        [ROOT_CA, "basic", "substantial", "high", STATION_CA]
    }

    /// Every certificate the root issued to this CA: the issuing CAs, the station CA and the
    /// HTTPS certificate (what the root's OCSP answers cover).
    pub fn root_issued(&self) -> Vec<&[u8]> {
        let mut certs: Vec<&[u8]> = Level::ALL
            .iter()
            .map(|level| self.issuing(*level).cert_der.as_ref())
            .collect();
        certs.push(self.station.cert_der.as_ref());
        certs.push(self.tls_cert.as_ref());
        certs
    }

    /// The issuing CA of a level.
    pub fn issuing(&self, level: Level) -> &IssuingCa {
        // `load` fills every level.
        &self.issuing[&level]
    }
}

/// `(name, DER)` of every `<name>.ocsp.der` in `dir` (none when the directory does not exist).
fn read_root_ocsp(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, PkiError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PkiError::io(dir, e)),
    };
    let mut responses = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| PkiError::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ocsp.der"));
        if let Some(name) = name {
            let der = std::fs::read(&path).map_err(|e| PkiError::io(&path, e))?;
            responses.push((name.to_owned(), der));
        }
    }
    responses.sort();
    Ok(responses)
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> PkiError {
    PkiError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))
}

pub(crate) fn read_cert(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let block = pem::parse(read(path)?).map_err(|e| invalid(path, e))?;
    if block.tag() != "CERTIFICATE" {
        return Err(invalid(path, "not a PEM CERTIFICATE"));
    }
    Ok(CertificateDer::from(block.into_contents()))
}

fn load_ca(keys: &KeyStore, ca_dir: &Path, name: &str) -> Result<IssuingCa, PkiError> {
    let key = keys.load(ca_dir, name)?.ok_or_else(|| PkiError::Invalid {
        path: super::keystore::key_path(ca_dir, name),
        reason: "the CA key is missing".into(),
    })?;
    issuing_ca(ca_dir, name, key)
}

/// Pairs a CA key with `ca_dir/<name>.crt.pem`, refusing a certificate for another key.
fn issuing_ca(ca_dir: &Path, name: &str, key: CaKey) -> Result<IssuingCa, PkiError> {
    let cert_path = ca_dir.join(format!("{name}.crt.pem"));
    let cert_der = read_cert(&cert_path)?;
    let (_, parsed) = X509Certificate::from_der(&cert_der).map_err(|e| invalid(&cert_path, e))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(invalid(
            &cert_path,
            format!(
                "does not match the {} key of the CA `{name}`",
                key.custody()
            ),
        ));
    }
    let not_after = parsed.validity().not_after.to_datetime();
    let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| invalid(&cert_path, e))?;
    Ok(IssuingCa {
        name: name.to_owned(),
        cert_der,
        issuer,
        not_after,
    })
}
