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
use super::generation::{CaRole, GenerationId};
use super::keystore::KeyStore;
use super::later_roots::LaterRoot;
use super::signer::CaKey;
use super::{ROOT_CA, TLS_CERT};
use crate::storage::{GenerationRecord, GenerationStatus, KeyCustody};

/// `DIR/ca/root.crl`: the CRL over the CA certificates produced by an offline root.
pub const ROOT_CRL_FILE: &str = "root.crl";
/// `DIR/ca/root-ocsp/<name>.ocsp.der`: the offline root's pre-signed OCSP responses over the CA
/// certificates (checked when installed; see `pki::root_ocsp`).
pub const ROOT_OCSP_DIR: &str = "root-ocsp";

/// A CA that signs: its certificate, the rcgen issuer (DN, key id, key) and its validity end.
pub struct IssuingCa {
    /// The generation's name (`basic`, `basic-g2`, `station`, ...): its certificates' issuer,
    /// its CRL and OCSP names.
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
    /// Root generations after G1 (`ca rollover --ca root`), oldest first, each with its link
    /// certificates; the last active one signs new issuing and station CA generations.
    pub later_roots: Vec<LaterRoot>,
    /// The active generation of each level's issuing CA.
    pub issuing: BTreeMap<Level, IssuingCa>,
    /// The active generation of the station CA.
    pub station: IssuingCa,
    /// Earlier generations of the issuing and station CAs (retiring or retired): they issue
    /// nothing, and sign only their CRLs and OCSP responder certificates.
    pub earlier: Vec<EarlierCa>,
    /// `(name, status)` of every generation this material was loaded from (empty: the data
    /// directory alone); a reload compares it with the database.
    pub loaded_from: Vec<(String, GenerationStatus)>,
    /// The HTTPS listener's chain as served (see [`CaMaterial::tls_chain_for`]).
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// The HTTPS listener's certificate (issued by the root, or by the active root after a
    /// root rollover).
    pub tls_cert: CertificateDer<'static>,
    pub tls_key: PrivateKeyDer<'static>,
    /// The key that signs audit checkpoints; `None` in a data directory created before them.
    pub audit: Option<AuditSigner>,
}

/// A generation that is no longer active.
#[derive(Debug)]
pub struct EarlierCa {
    pub ca: IssuingCa,
    /// Retiring or retired.
    pub status: GenerationStatus,
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

    /// Loads `dir/ca/*`, unlocking the keys as `access` says (the generations `init` made).
    pub fn load_with(dir: &Path, access: &KeyAccess) -> Result<CaMaterial, PkiError> {
        CaMaterial::load_generations(dir, access, &[])
    }

    /// Checks that `access` unlocks this CA's keys (the passphrase opens a sealed key, the PIN
    /// logs in to the token) without loading the rest: commands call it before they touch the
    /// database, so a wrong secret changes nothing.
    pub fn check_unlock(dir: &Path, access: &KeyAccess) -> Result<(), PkiError> {
        let ca_dir = dir.join("ca");
        if !ca_dir.join(format!("{ROOT_CA}.crt.pem")).exists() && dir.join("csr").exists() {
            return Err(PkiError::NotImported(dir.display().to_string()));
        }
        let keys = KeyStore::open(dir, access)?;
        keys.load(&ca_dir, CaRole::Station.as_str())?;
        Ok(())
    }

    /// Loads `dir/ca/*` and the generations recorded in the database: the active one of each
    /// issuing and station CA signs, the earlier ones keep their CRL and OCSP duties. A CA with
    /// no recorded generation is its G1 from the data directory.
    pub fn load_generations(
        dir: &Path,
        access: &KeyAccess,
        records: &[GenerationRecord],
    ) -> Result<CaMaterial, PkiError> {
        let ca_dir = dir.join("ca");
        let root_path = ca_dir.join(format!("{ROOT_CA}.crt.pem"));
        if !root_path.exists() && dir.join("csr").exists() {
            return Err(PkiError::NotImported(dir.display().to_string()));
        }
        let keys = KeyStore::open(dir, access)?;
        let root_der = read_cert(&root_path)?;
        let mut issuing = BTreeMap::new();
        let mut earlier = Vec::new();
        let mut station = None;
        for role in CaRole::ALL.into_iter().filter(|r| r.is_subordinate_ca()) {
            let (active, older) = load_role(&keys, &ca_dir, role, records)?;
            earlier.extend(older);
            match role {
                CaRole::Issuing(level) => {
                    issuing.insert(level, active);
                }
                _ => station = Some(active),
            }
        }
        let station = station.ok_or_else(|| invalid(&ca_dir, "no station CA"))?;
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
        let later_roots = super::later_roots::load(&keys, &ca_dir, records)?;
        let audit = audit_signer::load(&keys, &ca_dir)?;
        let root_ocsp = if root.is_none() {
            read_root_ocsp(&ca_dir.join(ROOT_OCSP_DIR))?
        } else {
            Vec::new()
        };
        let mut material = CaMaterial {
            audit,
            tls_chain: Vec::new(),
            tls_cert,
            root,
            root_crl,
            root_ocsp,
            root_der,
            issuing,
            station,
            earlier,
            later_roots,
            loaded_from: records.iter().map(|r| (r.name.clone(), r.status)).collect(),
            tls_key,
        };
        material.tls_chain = material.tls_chain_for(&material.tls_cert);
        Ok(material)
    }

    /// A CA that publishes a CRL, by generation name (`root`, `basic`, `basic-g2`, `station`,
    /// ...): the active generations and the earlier ones.
    pub fn signer(&self, name: &str) -> Option<&IssuingCa> {
        if name == ROOT_CA {
            return self.root.as_ref();
        }
        if let Some(root) = self.later_roots.iter().find(|r| r.ca.name == name) {
            return Some(&root.ca);
        }
        self.subordinates().find(|ca| ca.name == name)
    }

    /// Every issuing and station CA generation loaded: the active ones, then the earlier ones.
    pub fn subordinates(&self) -> impl Iterator<Item = &IssuingCa> {
        self.issuing
            .values()
            .chain(std::iter::once(&self.station))
            .chain(self.earlier.iter().map(|e| &e.ca))
    }

    /// Names of every CA generation that publishes a CRL (the root first).
    pub fn crl_issuers(&self) -> Vec<String> {
        std::iter::once(ROOT_CA.to_owned())
            .chain(self.later_roots.iter().map(|r| r.ca.name.clone()))
            .chain(self.subordinates().map(|ca| ca.name.clone()))
            .collect()
    }

    /// True when the generation `name` is retired: its final CRL is published once and kept.
    pub fn is_retired(&self, name: &str) -> bool {
        self.earlier
            .iter()
            .any(|e| e.ca.name == name && e.status == GenerationStatus::Retired)
    }

    /// Every generation of the issuing CA of `level` that is loaded (active first).
    pub fn level_generations(&self, level: Level) -> impl Iterator<Item = &IssuingCa> {
        self.subordinates()
            .filter(move |ca| generation_role(&ca.name) == Some(CaRole::Issuing(level)))
    }

    /// Every generation of the station CA that is loaded (active first).
    pub fn station_generations(&self) -> impl Iterator<Item = &IssuingCa> {
        self.subordinates()
            .filter(|ca| generation_role(&ca.name) == Some(CaRole::Station))
    }

    /// Every certificate the root issued to this CA: the issuing CAs and station CA of every
    /// loaded generation, and the HTTPS certificate (what the root's OCSP answers cover).
    pub fn root_issued(&self) -> Vec<&[u8]> {
        let mut certs: Vec<&[u8]> = self.subordinates().map(|ca| ca.cert_der.as_ref()).collect();
        certs.push(self.tls_cert.as_ref());
        certs
    }

    /// The hospital trust bundle (`GET /ca/bundle.pem`): every root generation, then every
    /// issuing and station CA generation a valid certificate can still chain to (active and
    /// retiring; retired ones issued nothing that is still valid).
    pub fn trust_bundle(&self) -> Vec<&[u8]> {
        let mut certs: Vec<&[u8]> = self.roots().into_iter().map(|c| c.as_ref()).collect();
        certs.extend(
            self.subordinates()
                .filter(|ca| !self.is_retired(&ca.name))
                .map(|ca| ca.cert_der.as_ref()),
        );
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

pub(super) fn invalid(path: &Path, reason: impl std::fmt::Display) -> PkiError {
    PkiError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))
}

/// The certificate in a PEM file.
pub fn read_cert(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let block = pem::parse(read(path)?).map_err(|e| invalid(path, e))?;
    if block.tag() != "CERTIFICATE" {
        return Err(invalid(path, "not a PEM CERTIFICATE"));
    }
    Ok(CertificateDer::from(block.into_contents()))
}

fn generation_role(name: &str) -> Option<CaRole> {
    GenerationId::parse(name).map(|g| g.role)
}

/// The active generation of `role` and its earlier ones, from the records (or G1 from the data
/// directory when none is recorded).
fn load_role(
    keys: &KeyStore,
    ca_dir: &Path,
    role: CaRole,
    records: &[GenerationRecord],
) -> Result<(IssuingCa, Vec<EarlierCa>), PkiError> {
    let mut active = None;
    let mut earlier = Vec::new();
    for record in records
        .iter()
        .filter(|r| r.ca == role.as_str() && r.status != GenerationStatus::Pending)
    {
        let ca = match record.custody {
            KeyCustody::DataDir => load_ca(keys, ca_dir, &record.name)?,
            KeyCustody::Sealed | KeyCustody::Pkcs11 => stored_ca(keys, ca_dir, record)?,
        };
        match record.status {
            GenerationStatus::Active => active = Some(ca),
            status => earlier.push(EarlierCa { ca, status }),
        }
    }
    let active = match active {
        Some(active) => active,
        None if earlier.is_empty() => load_ca(keys, ca_dir, role.as_str())?,
        None => {
            return Err(invalid(
                ca_dir,
                format!("the database records no active generation of the CA `{role:?}`"),
            ));
        }
    };
    Ok((active, earlier))
}

/// A generation whose certificate and key reference are in the database.
pub(super) fn stored_ca(
    keys: &KeyStore,
    ca_dir: &Path,
    record: &GenerationRecord,
) -> Result<IssuingCa, PkiError> {
    let place = ca_dir.join(format!("<database>/{}", record.name));
    let der = record
        .der
        .clone()
        .ok_or_else(|| invalid(&place, "the generation has no certificate"))?;
    let key = keys.load_stored(&record.name, record.custody, record.key.as_deref())?;
    pair(&place, &record.name, CertificateDer::from(der), key)
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
    pair(&cert_path, name, cert_der, key)
}

/// Pairs a CA key with its certificate, refusing a certificate for another key.
pub(crate) fn pair(
    cert_path: &Path,
    name: &str,
    cert_der: CertificateDer<'static>,
    key: CaKey,
) -> Result<IssuingCa, PkiError> {
    let cert_path = cert_path.to_path_buf();
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

/// The CA material a running server signs with, replaced as a whole when a rollover is picked
/// up (`operations::generations`): every request reads the current one once and uses it
/// throughout, so no request mixes two generations.
#[derive(Clone)]
pub struct CaHandle(std::sync::Arc<std::sync::RwLock<std::sync::Arc<CaMaterial>>>);

impl std::fmt::Debug for CaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CaHandle").finish_non_exhaustive()
    }
}

impl From<std::sync::Arc<CaMaterial>> for CaHandle {
    fn from(material: std::sync::Arc<CaMaterial>) -> CaHandle {
        CaHandle::new(material)
    }
}

impl From<&CaHandle> for CaHandle {
    fn from(handle: &CaHandle) -> CaHandle {
        handle.clone()
    }
}

impl CaHandle {
    /// A handle on `material`.
    pub fn new(material: std::sync::Arc<CaMaterial>) -> CaHandle {
        CaHandle(std::sync::Arc::new(std::sync::RwLock::new(material)))
    }

    /// The material in use now.
    pub fn current(&self) -> std::sync::Arc<CaMaterial> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            // A writer never panics while holding the lock (it only swaps an Arc).
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `material` in use for every request that starts from now on.
    pub fn replace(&self, material: std::sync::Arc<CaMaterial>) {
        match self.0.write() {
            Ok(mut guard) => *guard = material,
            Err(poisoned) => *poisoned.into_inner() = material,
        }
    }
}
