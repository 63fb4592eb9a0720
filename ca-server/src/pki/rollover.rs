//! `ca rollover` for an issuing or station CA (docs/PROFILE.md §3.7): the next generation's key,
//! in the same custody as the others (sealed under the CA passphrase, or in the PKCS#11 token),
//! and its certificate signed by the root — or, under an offline root, a CSR and the openssl
//! recipe for the ceremony, the generation then pending until `ca import`.

use std::path::{Path, PathBuf};

use iomt_core::policy::{Level, PolicySet};
use rcgen::{ExtendedKeyUsagePurpose, SignatureAlgorithm};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::PkiError;
use super::external::CsrSet;
use super::generation::{CaRole, GenerationId};
use super::hierarchy::{HierarchyParams, capitalized, level_ekus, sub_ca_params};
use super::keystore::KeyStore;
use super::material::CaMaterial;
use super::{PublicUrls, STATION_POLICY_OID};
use crate::storage::{GenerationRecord, GenerationStatus};

/// `DIR/rollover/<name>/`: the CSR and ceremony recipe of a generation made under an offline
/// root.
pub const ROLLOVER_DIR: &str = "rollover";

/// Why a rollover cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RolloverError {
    #[error(
        "`ca rollover --ca {0}` is not available: the root, the issuing CAs (basic, \
         substantial, high) and the station CA roll over; the HTTPS certificate renews itself"
    )]
    Unsupported(&'static str),
    #[error(
        "the root is offline (signed at a ceremony, `init --external-root`): `ca rollover --ca \
         root` needs the root key in this CA's custody (sealed or PKCS#11). Roll an offline root \
         over at its ceremony: make the new root and both link certificates (RFC 4210 §4.4) \
         there; this version does not import them"
    )]
    RootOffline,
    #[error("{0} already has a pending generation waiting for the offline root; import it first")]
    AlreadyPending(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// What the next generation is made from.
#[derive(Debug)]
pub struct RolloverParams<'a> {
    /// Subject organization and country, evaluation marking, public URL.
    pub hierarchy: &'a HierarchyParams,
    pub policies: &'a PolicySet,
    /// The new certificate's lifetime (config `[ca.<name>] lifetime`).
    pub lifetime: Duration,
    pub now: OffsetDateTime,
}

/// The next generation: signed now (online root), or waiting for the ceremony.
#[derive(Debug)]
pub enum NextGeneration {
    /// Signed by the online root; `record` is active and ready to store.
    Signed(GenerationRecord),
    /// A key and a CSR in `csr_dir`; `record` is pending.
    Pending {
        record: GenerationRecord,
        csr_dir: PathBuf,
    },
}

/// The key algorithm of a CA (docs/PROFILE.md §3.3): P-384 for High, P-256 otherwise.
pub fn key_algorithm(role: CaRole) -> &'static SignatureAlgorithm {
    match role {
        CaRole::Issuing(Level::High) | CaRole::Root => &rcgen::PKCS_ECDSA_P384_SHA384,
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    }
}

/// The certificate policies and EKUs of an issuing or station CA.
fn profile(role: CaRole, policies: &PolicySet) -> (Vec<String>, Vec<ExtendedKeyUsagePurpose>) {
    match role {
        CaRole::Issuing(level) => (
            policies.issuer_policy_oids(level),
            level_ekus(policies, level),
        ),
        _ => (
            vec![STATION_POLICY_OID.to_owned()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
    }
}

/// The CA certificate's title (common name without the evaluation marker).
fn title(id: GenerationId) -> String {
    match id.role {
        CaRole::Issuing(level) => format!(
            "IoMT {} Issuing CA {}",
            capitalized(level.as_str()),
            id.label()
        ),
        _ => format!("IoMT Manufacturing Station CA {}", id.label()),
    }
}

/// Makes generation `id` of an issuing or station CA: the key (generated in the CA's custody,
/// nothing written to the data directory) and its certificate from the root, or its CSR under
/// `dir/rollover/<name>/` when the root is offline.
pub fn make_next(
    dir: &Path,
    keys: &KeyStore,
    material: &CaMaterial,
    id: GenerationId,
    params: &RolloverParams<'_>,
) -> Result<NextGeneration, RolloverError> {
    if !id.role.is_subordinate_ca() {
        return Err(RolloverError::Unsupported(id.role.as_str()));
    }
    let name = id.name();
    let urls = PublicUrls::new(&params.hierarchy.public_url);
    let (key, custody, key_ref) = keys.generate_detached(&name, key_algorithm(id.role))?;
    let (policy_oids, eku) = profile(id.role, params.policies);
    let mut certificate = sub_ca_params(
        params.hierarchy,
        &title(id),
        &key,
        params.now,
        params.lifetime,
        eku,
        &policy_oids,
        &urls,
        material.active_root_name(),
    )?;
    // A CA certificate never outlives the root that signs it (the active root generation).
    if let Ok((_, root)) = X509Certificate::from_der(material.active_root_der()) {
        let root_end = root.validity().not_after.to_datetime();
        certificate.not_after = certificate.not_after.min(root_end);
    }
    let mut record = GenerationRecord {
        name: name.clone(),
        ca: id.role.as_str().to_owned(),
        generation: i64::from(id.number),
        status: GenerationStatus::Pending,
        not_before: None,
        not_after: None,
        der: None,
        custody,
        key: Some(key_ref),
        created_at: params.now.unix_timestamp(),
        changed_at: params.now.unix_timestamp(),
        links: None,
    };
    match material.active_root() {
        Some(root) => {
            let cert = certificate
                .signed_by(&key, &root.issuer)
                .map_err(PkiError::from)?;
            record.status = GenerationStatus::Active;
            record.not_before = Some(certificate.not_before.unix_timestamp());
            record.not_after = Some(certificate.not_after.unix_timestamp());
            record.der = Some(cert.der().to_vec());
            Ok(NextGeneration::Signed(record))
        }
        None => {
            let csr_dir = dir.join(ROLLOVER_DIR).join(&name);
            let days = params.lifetime.whole_days().max(1);
            let mut csrs = CsrSet::default();
            csrs.add(&name, &certificate, &key, days, &policy_oids, &urls)?;
            csrs.write_into(&csr_dir)?;
            Ok(NextGeneration::Pending { record, csr_dir })
        }
    }
}
