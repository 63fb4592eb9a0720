//! `ca rollover --ca root` (docs/PROFILE.md §3.7, RFC 4210 §4.4): the next root generation's
//! key in the same custody as the other generations (sealed under the CA passphrase, or in the
//! PKCS#11 token), its self-signed certificate, and the two link certificates that carry trust
//! across: NewWithOld (the new root's subject and key, signed by the previous root: what lets a
//! device that trusts only the previous root accept the new one) and OldWithNew (the previous
//! root's subject and key, signed by the new root).
//!
//! The new root has its own subject (`IoMT Root CA G2`), so relying parties holding both roots
//! never confuse them. Only an online root rolls over here; an offline root is refused
//! ([`RolloverError::RootOffline`]).

use std::path::{Path, PathBuf};

use iomt_core::extensions::key_identifier;
use iomt_core::files::{PUBLIC, write_atomic};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, PublicKeyData,
};
use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::PkiError;
use super::generation::GenerationId;
use super::hierarchy::ca_params;
use super::keystore::KeyStore;
use super::material::CaMaterial;
use super::rollover::{RolloverError, RolloverParams};
use super::serial::random_serial;
use crate::storage::{GenerationRecord, GenerationStatus, RootLinks};

/// `DIR/ca/<root>.link-new-with-old.crt.pem`: the NewWithOld link of root generation `<root>`.
pub const NEW_WITH_OLD_SUFFIX: &str = "link-new-with-old";
/// `DIR/ca/<root>.link-old-with-new.crt.pem`: the OldWithNew link of root generation `<root>`.
pub const OLD_WITH_NEW_SUFFIX: &str = "link-old-with-new";

/// Makes root generation `id` signed by itself and linked to the active root; the record is
/// active and ready to store (nothing is written to the data directory).
pub fn make_next_root(
    keys: &KeyStore,
    material: &CaMaterial,
    id: GenerationId,
    params: &RolloverParams<'_>,
) -> Result<GenerationRecord, RolloverError> {
    let old = material.active_root().ok_or(RolloverError::RootOffline)?;
    let (_, old_cert) = X509Certificate::from_der(&old.cert_der).map_err(|e| invalid(&e))?;
    let name = id.name();
    let (key, custody, key_ref) = keys.generate_detached(&name, &rcgen::PKCS_ECDSA_P384_SHA384)?;
    let title = format!("IoMT Root CA {}", id.label());
    let mut root = ca_params(params.hierarchy, &title, &key, params.now, 0)?;
    root.not_after = params.now + params.lifetime;
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    let root_cert = root.self_signed(&key).map_err(PkiError::from)?;

    // NewWithOld: the new root's name and key under the old root, for as long as the old root
    // lives (RFC 4210 §4.4.1: until every holder of the old key has the new one).
    let mut new_with_old = root.clone();
    new_with_old.serial_number = Some(random_serial()?);
    new_with_old.not_after = root.not_after.min(old.not_after);
    new_with_old.use_authority_key_identifier_extension = true;
    let new_with_old = new_with_old
        .signed_by(&key, &old.issuer)
        .map_err(PkiError::from)?;

    // OldWithNew: the old root's name and key under the new root, until the old root expires.
    let mut old_with_new = CertificateParams::default();
    old_with_new.distinguished_name = subject_of(&old_cert)?;
    old_with_new.serial_number = Some(random_serial()?);
    old_with_new.not_before = params.now - Duration::minutes(5);
    old_with_new.not_after = old.not_after.min(root.not_after);
    old_with_new.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    old_with_new.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    old_with_new.key_identifier_method =
        KeyIdMethod::PreSpecified(key_identifier(old.issuer.key().der_bytes()));
    old_with_new.use_authority_key_identifier_extension = true;
    let new_issuer = Issuer::new(root.clone(), &key);
    let old_with_new = old_with_new
        .signed_by(old.issuer.key(), &new_issuer)
        .map_err(PkiError::from)?;
    let (_, parsed) = X509Certificate::from_der(old_with_new.der()).map_err(|e| invalid(&e))?;
    if parsed.subject().as_raw() != old_cert.subject().as_raw() {
        return Err(invalid(&"the OldWithNew link would not carry its exact subject").into());
    }
    Ok(GenerationRecord {
        name,
        ca: id.role.as_str().to_owned(),
        generation: i64::from(id.number),
        status: GenerationStatus::Active,
        not_before: Some(root.not_before.unix_timestamp()),
        not_after: Some(root.not_after.unix_timestamp()),
        der: Some(root_cert.der().to_vec()),
        custody,
        key: Some(key_ref),
        created_at: params.now.unix_timestamp(),
        changed_at: params.now.unix_timestamp(),
        links: Some(RootLinks {
            new_with_old: new_with_old.der().to_vec(),
            old_with_new: old_with_new.der().to_vec(),
        }),
    })
}

/// Writes a root generation's certificate and its two links to `dir/ca/` (PEM, replaced
/// atomically): `<name>.crt.pem`, `<name>.link-new-with-old.crt.pem`,
/// `<name>.link-old-with-new.crt.pem`. Returns the paths.
pub fn write_root_files(dir: &Path, record: &GenerationRecord) -> Result<Vec<PathBuf>, PkiError> {
    let ca_dir = dir.join("ca");
    let mut files = Vec::new();
    let links = record.links.as_ref();
    for (suffix, der) in [
        (None, record.der.as_deref()),
        (
            Some(NEW_WITH_OLD_SUFFIX),
            links.map(|l| l.new_with_old.as_slice()),
        ),
        (
            Some(OLD_WITH_NEW_SUFFIX),
            links.map(|l| l.old_with_new.as_slice()),
        ),
    ] {
        let Some(der) = der else { continue };
        let file = match suffix {
            None => format!("{}.crt.pem", record.name),
            Some(suffix) => format!("{}.{suffix}.crt.pem", record.name),
        };
        let path = ca_dir.join(file);
        let text = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
        write_atomic(&path, text.as_bytes(), PUBLIC).map_err(|e| PkiError::io(&path, e))?;
        files.push(path);
    }
    Ok(files)
}

/// The subject of `cert` as rcgen builds it, attribute by attribute with the same string types,
/// so the link's subject is byte for byte the certificate's.
fn subject_of(cert: &X509Certificate<'_>) -> Result<DistinguishedName, PkiError> {
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| invalid(&"an attribute OID does not fit"))?
                .collect();
            let value = attr.attr_value();
            let text = std::str::from_utf8(value.data)
                .map_err(|_| invalid(&"a subject attribute is not text"))?;
            let value = match value.tag() {
                x509_parser::der_parser::asn1_rs::Tag::PrintableString => {
                    DnValue::PrintableString(text.try_into().map_err(PkiError::from)?)
                }
                _ => DnValue::Utf8String(text.to_owned()),
            };
            dn.push(DnType::from_oid(&oid), value);
        }
    }
    Ok(dn)
}

/// A problem with the active root's certificate.
fn invalid(reason: &dyn std::fmt::Display) -> PkiError {
    PkiError::Invalid {
        path: PathBuf::from("ca/<active root>"),
        reason: reason.to_string(),
    }
}
