//! `ca-server ca import`: installs the certificates an offline root signed for the keys that
//! `init --external-root` created, after checking each one against its key, the root and the
//! docs/PROFILE.md §3 profile. All or nothing: one bad certificate and nothing is written. The root's
//! pre-signed OCSP responses over these certificates (`<name>.ocsp.der` beside them, made by the
//! ceremony script) are checked and installed with them.

use std::path::{Path, PathBuf};

use iomt_core::files::{PUBLIC, write_new};
use iomt_core::policy::{Level, PolicySet};
use rcgen::PublicKeyData;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use super::STATION_POLICY_OID;
use super::custody::KeyAccess;
use super::error::PkiError;
use super::keystore::KeyStore;
use super::material::{ROOT_CRL_FILE, read_cert};
use super::profile_check::{ProfileViolation, check_ca, check_issued, check_root, check_tls};
use super::root_ocsp::{self, CheckedResponse, RootOcspError, root_issued_names};
use super::{AUDIT_SIGNER, ROOT_CA, TLS_CERT};
use crate::storage::{GenerationRecord, GenerationStatus};

/// What `ca import` was given.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The offline root's certificate (PEM).
    pub root: PathBuf,
    /// Directory with `<name>.crt.pem` for basic, substantial, high, station and tls, and the
    /// root's pre-signed OCSP responses `<name>.ocsp.der` over them (optional).
    pub certs: PathBuf,
    /// The root's CRL over the CA certificates (PEM or DER), served at /crl/root.crl.
    pub root_crl: Option<PathBuf>,
}

/// Why an imported certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {reason}; nothing was installed")]
    Refused { path: PathBuf, reason: String },
    #[error("{path}: {violation}; nothing was installed")]
    Profile {
        path: PathBuf,
        violation: ProfileViolation,
    },
    #[error("this CA already has its certificates (found {0}); nothing was installed")]
    AlreadyImported(PathBuf),
    #[error("{0} was not created with --external-root (no csr/ directory)")]
    NotExternal(PathBuf),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    RootOcsp(#[from] RootOcspError),
    #[error(transparent)]
    Policy(#[from] iomt_core::policy::PolicyError),
}

/// What `ca import` installed.
#[derive(Debug, Clone)]
pub struct Imported {
    /// SHA-256 fingerprint of the root.
    pub root_sha256: String,
    /// The root's pre-signed OCSP responses installed with the certificates.
    pub root_ocsp: Vec<CheckedResponse>,
}

/// Checks every certificate (and the root CRL and OCSP responses), then installs them into `dir`.
pub fn import(
    dir: &Path,
    request: &ImportRequest,
    access: &KeyAccess,
) -> Result<Imported, ImportError> {
    let ca_dir = dir.join("ca");
    if !dir.join(super::external::CSR_DIR).exists() {
        return Err(ImportError::NotExternal(dir.to_path_buf()));
    }
    let root_target = ca_dir.join(format!("{ROOT_CA}.crt.pem"));
    if root_target.exists() {
        return Err(ImportError::AlreadyImported(root_target));
    }
    let policies = PolicySet::load_dir(&dir.join("policies"))?;
    let keys = KeyStore::open(dir, access)?;
    let root_der = read_cert(&request.root)?;
    let refuse = |path: &Path, reason: String| ImportError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let violates = |path: &Path, violation: ProfileViolation| ImportError::Profile {
        path: path.to_path_buf(),
        violation,
    };
    let (_, root) =
        X509Certificate::from_der(&root_der).map_err(|e| refuse(&request.root, e.to_string()))?;
    check_root(&root).map_err(|v| violates(&request.root, v))?;

    let mut installs = Vec::new();
    let mut issued = Vec::new();
    for name in root_issued_names() {
        let path = request.certs.join(format!("{name}.crt.pem"));
        let der = read_cert(&path)?;
        let (_, cert) =
            X509Certificate::from_der(&der).map_err(|e| refuse(&path, e.to_string()))?;
        let spki = if name == TLS_CERT {
            keys.load_file(&ca_dir, name)?.subject_public_key_info()
        } else {
            keys.load(&ca_dir, name)?
                .ok_or_else(|| refuse(&path, format!("no key for the CA `{name}`")))?
                .subject_public_key_info()
        };
        if cert.public_key().raw != spki.as_slice() {
            return Err(refuse(
                &path,
                format!("the certificate does not match the key of `{name}` created by init"),
            ));
        }
        check_issued(&cert, &root).map_err(|v| violates(&path, v))?;
        let profile = if name == TLS_CERT {
            check_tls(&cert)
        } else {
            let expected = match Level::parse(name) {
                Some(level) => policies.issuer_policy_oids(level),
                None => vec![STATION_POLICY_OID.to_owned()],
            };
            check_ca(&cert, &expected)
        };
        profile.map_err(|v| violates(&path, v))?;
        installs.push((ca_dir.join(format!("{name}.crt.pem")), pem_of(&der)));
        issued.push((name, der));
    }
    // The audit key (data directories initialized since checkpoints exist have its CSR).
    let audit_csr = dir
        .join(super::external::CSR_DIR)
        .join(format!("{AUDIT_SIGNER}.csr.pem"));
    if audit_csr.exists() {
        let path = request.certs.join(format!("{AUDIT_SIGNER}.crt.pem"));
        let der = read_cert(&path)?;
        let (_, cert) =
            X509Certificate::from_der(&der).map_err(|e| refuse(&path, e.to_string()))?;
        let spki = keys
            .load(&ca_dir, AUDIT_SIGNER)?
            .ok_or_else(|| refuse(&path, "no audit key".into()))?
            .subject_public_key_info();
        if cert.public_key().raw != spki.as_slice() {
            return Err(refuse(
                &path,
                "the certificate does not match the audit key created by init".into(),
            ));
        }
        check_issued(&cert, &root).map_err(|v| violates(&path, v))?;
        super::audit_signer::check_profile(&cert).map_err(|v| violates(&path, v))?;
        installs.push((ca_dir.join(format!("{AUDIT_SIGNER}.crt.pem")), pem_of(&der)));
    }
    let issued: Vec<(&str, &[u8])> = issued.iter().map(|(n, d)| (*n, d.as_ref())).collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let root_ocsp = root_ocsp::check_dir(&request.certs, &root_der, &issued, now)?;
    if let Some(crl_path) = &request.root_crl {
        let der = read_crl(crl_path)?;
        let (_, crl) = CertificateRevocationList::from_der(&der)
            .map_err(|e| refuse(crl_path, e.to_string()))?;
        crl.verify_signature(root.public_key())
            .map_err(|e| refuse(crl_path, format!("not signed by the root: {e}")))?;
        installs.push((ca_dir.join(ROOT_CRL_FILE), der));
    }
    installs.push((root_target, pem_of(&root_der)));
    installs.push((dir.join("root.pem"), pem_of(&root_der)));
    for (path, contents) in installs {
        write_new(&path, &contents, PUBLIC).map_err(|e| PkiError::io(&path, e))?;
    }
    root_ocsp::install(dir, &root_ocsp)?;
    Ok(Imported {
        root_sha256: super::fingerprint::sha256_colon_hex(&root_der),
        root_ocsp,
    })
}

fn pem_of(der: &[u8]) -> Vec<u8> {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())).into_bytes()
}

fn read_crl(path: &Path) -> Result<Vec<u8>, PkiError> {
    let bytes = std::fs::read(path).map_err(|e| PkiError::io(path, e))?;
    match pem::parse(&bytes) {
        Ok(block) if block.tag() == "X509 CRL" => Ok(block.into_contents()),
        Ok(_) => Err(PkiError::Invalid {
            path: path.to_path_buf(),
            reason: "not a PEM X509 CRL".into(),
        }),
        Err(_) => Ok(bytes),
    }
}

/// A pending generation (`ca rollover` under an offline root) signed at the ceremony, checked
/// and ready to activate.
#[derive(Debug)]
pub struct ImportedGeneration {
    /// The generation's record, now active, with its certificate.
    pub record: GenerationRecord,
    /// The root's pre-signed OCSP response over the new CA certificate, when given (installed).
    pub root_ocsp: Vec<CheckedResponse>,
}

/// `ca import` after `ca rollover` under an offline root: checks `certs/<name>.crt.pem` against
/// the pending generation's key, the installed root (the given one must be it) and the CA profile;
/// installs the root's pre-signed OCSP response over it (`<name>.ocsp.der`) and a renewed root
/// CRL when given. Returns the record to activate; nothing is activated here.
pub fn import_generation(
    dir: &Path,
    pending: &GenerationRecord,
    request: &ImportRequest,
    access: &KeyAccess,
) -> Result<ImportedGeneration, ImportError> {
    let refuse = |path: &Path, reason: String| ImportError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let violates = |path: &Path, violation: ProfileViolation| ImportError::Profile {
        path: path.to_path_buf(),
        violation,
    };
    let ca_dir = dir.join("ca");
    let installed_root = read_cert(&ca_dir.join(format!("{ROOT_CA}.crt.pem")))?;
    let root_der = read_cert(&request.root)?;
    if root_der != installed_root {
        return Err(refuse(
            &request.root,
            "this is not the root of this CA (a root rollover is a different ceremony)".into(),
        ));
    }
    let (_, root) =
        X509Certificate::from_der(&root_der).map_err(|e| refuse(&request.root, e.to_string()))?;
    let name = pending.name.as_str();
    let path = request.certs.join(format!("{name}.crt.pem"));
    let der = read_cert(&path)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| refuse(&path, e.to_string()))?;
    let keys = KeyStore::open(dir, access)?;
    let key = keys.load_stored(name, pending.custody, pending.key.as_deref())?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(refuse(
            &path,
            format!("the certificate does not match the key `ca rollover` made for {name}"),
        ));
    }
    check_issued(&cert, &root).map_err(|v| violates(&path, v))?;
    let policies = PolicySet::load_dir(&dir.join("policies"))?;
    let expected = match Level::parse(&pending.ca) {
        Some(level) => policies.issuer_policy_oids(level),
        None => vec![STATION_POLICY_OID.to_owned()],
    };
    check_ca(&cert, &expected).map_err(|v| violates(&path, v))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let root_ocsp = root_ocsp::check_dir(&request.certs, &root_der, &[(name, der.as_ref())], now)?;
    let crl = match &request.root_crl {
        Some(crl_path) => {
            let crl_der = read_crl(crl_path)?;
            let (_, crl) = CertificateRevocationList::from_der(&crl_der)
                .map_err(|e| refuse(crl_path, e.to_string()))?;
            crl.verify_signature(root.public_key())
                .map_err(|e| refuse(crl_path, format!("not signed by the root: {e}")))?;
            Some(crl_der)
        }
        None => None,
    };
    let validity = cert.validity();
    let record = GenerationRecord {
        status: GenerationStatus::Active,
        not_before: Some(validity.not_before.timestamp()),
        not_after: Some(validity.not_after.timestamp()),
        der: Some(der.to_vec()),
        changed_at: now,
        ..pending.clone()
    };
    // Everything checked: install the root's answers (and CRL) the server reads at reload.
    root_ocsp::install(dir, &root_ocsp)?;
    if let Some(crl_der) = crl {
        let target = ca_dir.join(ROOT_CRL_FILE);
        iomt_core::files::write_atomic(&target, &crl_der, PUBLIC)
            .map_err(|e| PkiError::io(&target, e))?;
    }
    Ok(ImportedGeneration { record, root_ocsp })
}
