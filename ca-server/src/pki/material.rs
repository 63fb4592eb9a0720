//! CA keys and certificates loaded from the data directory for signing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use iomt_core::policy::Level;
use rcgen::{Issuer, KeyPair, PublicKeyData, SerialNumber};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ROOT_CA, STATION_CA, TLS_CERT, issuing_ca_name};

/// Why the CA material could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate extension encoding failed: {0}")]
    Extension(#[from] iomt_core::extensions::ExtensionError),
    #[error("no randomness available: {0}")]
    Random(String),
}

impl PkiError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> PkiError {
        PkiError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A CA that signs: its certificate, the rcgen issuer (DN, key id, key) and its validity end.
pub struct IssuingCa {
    /// Short name (`basic`, `station`, ...).
    pub name: String,
    pub cert_der: CertificateDer<'static>,
    pub issuer: Issuer<'static, KeyPair>,
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
    /// The root as a signer (CRLs over the CA certificates).
    pub root: IssuingCa,
    pub issuing: BTreeMap<Level, IssuingCa>,
    pub station: IssuingCa,
    pub tls_chain: Vec<CertificateDer<'static>>,
    pub tls_key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("issuing", &self.issuing)
            .finish_non_exhaustive()
    }
}

impl CaMaterial {
    /// Loads `dir/ca/*`.
    pub fn load(dir: &Path) -> Result<CaMaterial, PkiError> {
        let ca_dir = dir.join("ca");
        let root_der = read_cert(&ca_dir.join(format!("{ROOT_CA}.crt.pem")))?;
        let mut issuing = BTreeMap::new();
        for level in Level::ALL {
            issuing.insert(level, load_ca(&ca_dir, issuing_ca_name(level))?);
        }
        let station = load_ca(&ca_dir, STATION_CA)?;
        let tls_cert = read_cert(&ca_dir.join(format!("{TLS_CERT}.crt.pem")))?;
        let key_path = ca_dir.join(format!("{TLS_CERT}.key.pem"));
        let key_pem = read(&key_path)?;
        let key_block = pem::parse(&key_pem).map_err(|e| invalid(&key_path, e))?;
        let tls_key = PrivateKeyDer::try_from(key_block.contents().to_vec())
            .map_err(|e| invalid(&key_path, e))?;
        Ok(CaMaterial {
            tls_chain: vec![tls_cert, root_der.clone()],
            root: load_ca(&ca_dir, ROOT_CA)?,
            root_der,
            issuing,
            station,
            tls_key,
        })
    }

    /// A CA that publishes a CRL, by name (`root`, `basic`, `substantial`, `high`, `station`).
    pub fn signer(&self, name: &str) -> Option<&IssuingCa> {
        match name {
            ROOT_CA => Some(&self.root),
            STATION_CA => Some(&self.station),
            other => Level::parse(other).map(|level| self.issuing(level)),
        }
    }

    /// Names of every CA that publishes a CRL.
    pub fn crl_issuers() -> [&'static str; 5] {
        [ROOT_CA, "basic", "substantial", "high", STATION_CA]
    }

    /// The issuing CA of a level.
    pub fn issuing(&self, level: Level) -> &IssuingCa {
        // `load` fills every level.
        &self.issuing[&level]
    }
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

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let block = pem::parse(read(path)?).map_err(|e| invalid(path, e))?;
    if block.tag() != "CERTIFICATE" {
        return Err(invalid(path, "not a PEM CERTIFICATE"));
    }
    Ok(CertificateDer::from(block.into_contents()))
}

fn load_ca(ca_dir: &Path, name: &str) -> Result<IssuingCa, PkiError> {
    let cert_path = ca_dir.join(format!("{name}.crt.pem"));
    let key_path = ca_dir.join(format!("{name}.key.pem"));
    let cert_der = read_cert(&cert_path)?;
    let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| invalid(&key_path, e))?;
    let (_, parsed) = X509Certificate::from_der(&cert_der).map_err(|e| invalid(&cert_path, e))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(invalid(
            &key_path,
            format!("does not match the certificate {}", cert_path.display()),
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

/// A positive random certificate serial of 128 bits from the system CSPRNG (>= 64 required).
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random("the system random generator failed".into()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x40; // exactly 16 octets: no leading-zero trimming can shorten it
    Ok(SerialNumber::from_slice(&bytes))
}
