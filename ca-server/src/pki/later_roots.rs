//! Root generations after G1 (`ca rollover --ca root`, RFC 4210 §4.4) as the CA material holds
//! them: each with its link certificates, loaded from the database, and what the rest of the
//! server asks of them (the active root, every root, the links still in their transition).

use std::path::Path;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ROOT_CA;
use super::error::PkiError;
use super::generation::{CaRole, GenerationId};
use super::keystore::KeyStore;
use super::material::{CaMaterial, IssuingCa, invalid, stored_ca};
use crate::storage::{GenerationRecord, GenerationStatus};

/// A root generation made by `ca rollover --ca root`, with the link certificates that
/// authenticate it to holders of the previous root (RFC 4210 §4.4).
#[derive(Debug)]
pub struct LaterRoot {
    pub ca: IssuingCa,
    /// Active, or retiring once a newer root was made.
    pub status: GenerationStatus,
    /// NewWithOld: this root's subject and key, signed by the previous root.
    pub new_with_old: CertificateDer<'static>,
    /// OldWithNew: the previous root's subject and key, signed by this root.
    pub old_with_new: CertificateDer<'static>,
}

impl CaMaterial {
    /// The name of the root generation that signs new issuing and station CA generations (`root`
    /// until the first `ca rollover --ca root`, then `root-g2`, ...).
    pub fn active_root_name(&self) -> &str {
        self.active_later_root()
            .map_or(ROOT_CA, |root| root.ca.name.as_str())
    }

    /// The active root's certificate.
    pub fn active_root_der(&self) -> &CertificateDer<'static> {
        self.active_later_root()
            .map_or(&self.root_der, |root| &root.ca.cert_der)
    }

    /// The active root as a signer; `None` when the root is offline.
    pub fn active_root(&self) -> Option<&IssuingCa> {
        match self.active_later_root() {
            Some(root) => Some(&root.ca),
            None => self.root.as_ref(),
        }
    }

    fn active_later_root(&self) -> Option<&LaterRoot> {
        self.later_roots
            .iter()
            .rev()
            .find(|r| r.status == GenerationStatus::Active)
    }

    /// Every root generation's certificate, G1 first.
    pub fn roots(&self) -> Vec<&CertificateDer<'static>> {
        std::iter::once(&self.root_der)
            .chain(self.later_roots.iter().map(|r| &r.ca.cert_der))
            .collect()
    }

    /// The link certificates of every root rollover (NewWithOld then OldWithNew, oldest first)
    /// whose previous root has not expired: the root key update transition of RFC 4210 §4.4.
    pub fn root_links(&self) -> Vec<&CertificateDer<'static>> {
        let now = OffsetDateTime::now_utc();
        self.later_roots
            .iter()
            .filter(|r| not_after(&r.old_with_new).is_none_or(|end| end > now))
            .flat_map(|r| [&r.new_with_old, &r.old_with_new])
            .collect()
    }

    /// The chain the HTTPS listener serves with `leaf` (leaf first). Under root G1: `leaf` and
    /// G1. Under a later root: `leaf` and the NewWithOld links from its root back towards G1
    /// (each while its previous root lives), so a client that trusts only an older root builds
    /// old root → link → leaf, and one that trusts the new root stops at it (rustls and OpenSSL
    /// look among their trust anchors first). The new root itself is not sent: a client that
    /// trusts only G1 would find it first and end at an untrusted self-signed certificate.
    pub fn tls_chain_for(&self, leaf: &CertificateDer<'static>) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![leaf.clone()];
        let Some(issuer) = self
            .later_roots
            .iter()
            .rposition(|root| signed_by(leaf, &root.ca.cert_der))
        else {
            chain.push(self.root_der.clone());
            return chain;
        };
        let now = OffsetDateTime::now_utc();
        chain.extend(
            self.later_roots[..=issuer]
                .iter()
                .rev()
                .take_while(|root| not_after(&root.new_with_old).is_none_or(|end| end > now))
                .map(|root| root.new_with_old.clone()),
        );
        chain
    }

    /// True when `name` is a root generation's name (`root`, `root-g2`, ...).
    pub fn is_root(&self, name: &str) -> bool {
        name == ROOT_CA || self.later_roots.iter().any(|r| r.ca.name == name)
    }
}

/// The root generations after G1 recorded in the database, oldest first, with their links.
pub(super) fn load(
    keys: &KeyStore,
    ca_dir: &Path,
    records: &[GenerationRecord],
) -> Result<Vec<LaterRoot>, PkiError> {
    let mut roots = Vec::new();
    for record in records.iter().filter(|r| {
        r.ca == CaRole::Root.as_str() && r.generation > 1 && r.status != GenerationStatus::Pending
    }) {
        let links = record.links.as_ref().ok_or_else(|| {
            invalid(
                &ca_dir.join(format!("<database>/{}", record.name)),
                "the root generation has no link certificates",
            )
        })?;
        roots.push(LaterRoot {
            ca: stored_ca(keys, ca_dir, record)?,
            status: record.status,
            new_with_old: CertificateDer::from(links.new_with_old.clone()),
            old_with_new: CertificateDer::from(links.old_with_new.clone()),
        });
    }
    roots.sort_by_key(|r| GenerationId::parse(&r.ca.name).map(|g| g.number));
    Ok(roots)
}

/// True when `cert` verifies under the key of `issuer` (both DER).
fn signed_by(cert: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, issuer))) = (
        X509Certificate::from_der(cert),
        X509Certificate::from_der(issuer),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn not_after(der: &[u8]) -> Option<OffsetDateTime> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}
