//! `ca-server ca import`: installs the certificates an offline root signed for the keys that
//! `init --external-root` created, after checking each one against its key, the root and the
//! PROFILES.md §3 profile. All or nothing: one bad certificate and nothing is written. The root's
//! pre-signed OCSP responses over these certificates (`<name>.ocsp.der` beside them, made by the
//! ceremony script) are checked and installed with them.

use std::path::{Path, PathBuf};

use iomt_core::extensions::key_identifier;
use iomt_core::files::{PUBLIC, write_new};
use iomt_core::policy::{Level, PolicySet};
use rcgen::PublicKeyData;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use super::STATION_POLICY_OID;
use super::custody::KeyAccess;
use super::error::PkiError;
use super::keystore::KeyStore;
use super::material::{ROOT_CRL_FILE, read_cert};
use super::root_ocsp::{self, CheckedResponse, RootOcspError, root_issued_names};
use super::{AUDIT_SIGNER, ROOT_CA, TLS_CERT};

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
    let (_, root) =
        X509Certificate::from_der(&root_der).map_err(|e| refuse(&request.root, e.to_string()))?;
    check_root(&root).map_err(|reason| refuse(&request.root, reason))?;

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
        check_issued(&cert, &root).map_err(|reason| refuse(&path, reason))?;
        let profile = if name == TLS_CERT {
            check_tls(&cert)
        } else {
            let expected = match Level::parse(name) {
                Some(level) => policies.issuer_policy_oids(level),
                None => vec![STATION_POLICY_OID.to_owned()],
            };
            check_ca(&cert, &expected)
        };
        profile.map_err(|reason| refuse(&path, reason))?;
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
        check_issued(&cert, &root).map_err(|reason| refuse(&path, reason))?;
        super::audit_signer::check_profile(&cert).map_err(|reason| refuse(&path, reason))?;
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

fn check_root(root: &X509Certificate<'_>) -> Result<(), String> {
    if root.subject() != root.issuer() {
        return Err("the root certificate is not self-issued".into());
    }
    root.verify_signature(None)
        .map_err(|e| format!("the root's self-signature does not verify: {e}"))?;
    let ca = root
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .is_some_and(|bc| bc.value.ca);
    if !ca {
        return Err("the root certificate is not a CA (basicConstraints cA)".into());
    }
    let signs = root
        .key_usage()
        .map_err(|e| e.to_string())?
        .is_some_and(|ku| ku.value.key_cert_sign() && ku.value.crl_sign());
    if !signs {
        return Err("the root's keyUsage lacks keyCertSign or cRLSign".into());
    }
    Ok(())
}

/// Issued by the root: names chain, signature verifies, AKI = root SKI, serial and validity.
fn check_issued(cert: &X509Certificate<'_>, root: &X509Certificate<'_>) -> Result<(), String> {
    if cert.issuer() != root.subject() {
        return Err(format!(
            "issued by `{}`, not by the given root `{}`",
            cert.issuer(),
            root.subject()
        ));
    }
    cert.verify_signature(Some(root.public_key()))
        .map_err(|e| format!("the signature does not verify with the root's key: {e}"))?;
    if cert.raw_serial().len() < 8 {
        return Err("the serial number has fewer than 64 bits".into());
    }
    if !cert.validity().is_valid() {
        return Err("the certificate is not valid now".into());
    }
    let root_ski = subject_key_id(root);
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    if root_ski.is_some() && aki != root_ski {
        return Err("authorityKeyIdentifier is not the root's subjectKeyIdentifier".into());
    }
    let ski = subject_key_id(cert);
    if ski != Some(key_identifier(&cert.public_key().subject_public_key.data).as_slice()) {
        return Err(
            "subjectKeyIdentifier is not the RFC 7093 method 1 value from the CSR profile".into(),
        );
    }
    Ok(())
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
}

/// PROFILES.md §3.3/§3.4: critical CA pathLen 0, critical keyCertSign+cRLSign only, the
/// expected policies, clientAuth and never anyEKU or OCSPSigning.
fn check_ca(cert: &X509Certificate<'_>, expected_policies: &[String]) -> Result<(), String> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .ok_or("basicConstraints is missing")?;
    if !bc.critical || !bc.value.ca || bc.value.path_len_constraint != Some(0) {
        return Err("basicConstraints must be critical, cA TRUE, pathLenConstraint 0".into());
    }
    let ku = cert
        .key_usage()
        .map_err(|e| e.to_string())?
        .ok_or("keyUsage is missing")?;
    if !ku.critical
        || !ku.value.key_cert_sign()
        || !ku.value.crl_sign()
        || ku.value.digital_signature()
    {
        return Err("keyUsage must be critical keyCertSign + cRLSign (no digitalSignature)".into());
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| e.to_string())?
        .ok_or("extendedKeyUsage is missing")?;
    if !eku.value.client_auth || eku.value.any || eku.value.ocsp_signing {
        return Err(
            "extendedKeyUsage must include clientAuth and never anyEKU or OCSPSigning".into(),
        );
    }
    let present: Vec<String> = cert
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(policies) => Some(
                policies
                    .iter()
                    .map(|p| p.policy_id.to_id_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    if let Some(missing) = expected_policies.iter().find(|oid| !present.contains(oid)) {
        return Err(format!("certificatePolicies lacks {missing}"));
    }
    Ok(())
}

/// The HTTPS certificate: not a CA, serverAuth.
fn check_tls(cert: &X509Certificate<'_>) -> Result<(), String> {
    if cert
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err("the TLS certificate must not be a CA".into());
    }
    let server = cert
        .extended_key_usage()
        .map_err(|e| e.to_string())?
        .is_some_and(|eku| eku.value.server_auth);
    if !server {
        return Err("the TLS certificate needs extendedKeyUsage serverAuth".into());
    }
    Ok(())
}
