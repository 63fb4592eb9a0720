//! The TPM manufacturer roots EK certificates must chain to (`ca-server tpm-roots`): read from
//! PEM or DER files, checked to be usable trust anchors, stored and audited.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::storage::{AuditAction, AuditEvent, Store, StoreError, TpmRoot};

/// Why roots could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum TpmRootError {
    #[error("{file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("no TPM root has SHA-256 {0} (see `ca-server tpm-roots list`)")]
    Unknown(String),
    #[error("`{0}` is not a hex SHA-256 (64 hex digits, as `tpm-roots list` prints)")]
    BadDigest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `add` did with one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub sha256: String,
    pub subject: String,
    /// False when the root was already trusted.
    pub new: bool,
}

/// The certificates of one file: every `CERTIFICATE` block of a PEM file, or one DER
/// certificate. Each must parse and be usable as a webpki trust anchor.
pub fn read_certificates(file: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TpmRootError> {
    let unreadable = |reason: String| TpmRootError::Unreadable {
        file: file.to_owned(),
        reason,
    };
    let ders = if bytes.starts_with(b"-----") || bytes.iter().take(64).all(u8::is_ascii) {
        let blocks = pem::parse_many(bytes).map_err(|e| unreadable(format!("not PEM: {e}")))?;
        blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect()
    } else {
        vec![bytes.to_vec()]
    };
    if ders.is_empty() {
        return Err(unreadable("no CERTIFICATE in it".into()));
    }
    for der in &ders {
        X509Certificate::from_der(der)
            .map_err(|e| unreadable(format!("not a certificate: {e}")))?;
        webpki::anchor_from_trusted_cert(&rustls_pki_types::CertificateDer::from(der.as_slice()))
            .map_err(|e| unreadable(format!("not usable as a trust anchor: {e:?}")))?;
    }
    Ok(ders)
}

fn subject_of(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

/// Adds roots (all in one transaction, each audited once); already trusted ones are reported.
pub async fn add(
    store: &dyn Store,
    ders: &[Vec<u8>],
    actor: &str,
) -> Result<Vec<Added>, TpmRootError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let roots: Vec<TpmRoot> = ders
        .iter()
        .map(|der| TpmRoot {
            sha256: ring::digest::digest(&ring::digest::SHA256, der)
                .as_ref()
                .to_vec(),
            subject: subject_of(der),
            der: der.clone(),
            added_at: now,
        })
        .collect();
    let events: Vec<AuditEvent> = roots
        .iter()
        .map(|root| AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: AuditAction::TpmRootAdded.into(),
            object: format!("tpm_root:{}", hex::encode(&root.sha256)),
            details: serde_json::json!({ "subject": root.subject }).to_string(),
        })
        .collect();
    let added = store.add_tpm_roots(&roots, &events).await?;
    Ok(roots
        .into_iter()
        .map(|root| Added {
            new: added.contains(&root.sha256),
            sha256: hex::encode(&root.sha256),
            subject: root.subject,
        })
        .collect())
}

/// Removes the root with this hex SHA-256, audited.
pub async fn remove(
    store: &dyn Store,
    sha256_hex: &str,
    actor: &str,
) -> Result<TpmRoot, TpmRootError> {
    let digest = hex::decode(sha256_hex.trim())
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| TpmRootError::BadDigest(sha256_hex.to_owned()))?;
    let root = store
        .tpm_roots()
        .await?
        .into_iter()
        .find(|r| r.sha256 == digest)
        .ok_or_else(|| TpmRootError::Unknown(sha256_hex.to_owned()))?;
    let event = AuditEvent {
        at: OffsetDateTime::now_utc().unix_timestamp(),
        actor: actor.to_owned(),
        action: AuditAction::TpmRootRemoved.into(),
        object: format!("tpm_root:{}", hex::encode(&digest)),
        details: serde_json::json!({ "subject": root.subject }).to_string(),
    };
    if store.remove_tpm_root(&digest, &event).await? {
        Ok(root)
    } else {
        Err(TpmRootError::Unknown(sha256_hex.to_owned()))
    }
}
