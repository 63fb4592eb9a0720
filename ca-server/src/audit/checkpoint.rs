//! Signed checkpoints of the audit trail: the newest event's sequence number and hash at a
//! moment, signed by the CA's audit key (`pki::AuditSigner`, certified by the root).
//!
//! What is signed is the checkpoint *statement*, four lines of text:
//!
//! ```text
//! iomt-audit-checkpoint/1
//! seq 1042
//! head 9f3c…(SHA-256, hex)
//! at 2026-12-02T12:00:00Z
//! ```
//!
//! A checkpoint file (`GET /audit/checkpoint`, `ca-server audit checkpoint`) is a JSON object
//! holding those fields, the ECDSA signature (base64 DER) and the signer's certificate (PEM), so
//! anyone can keep copies and check one with `openssl dgst -verify` (README "Audit trail").

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::{AuditSigner, PkiError, ProfileViolation, check_audit_signer_profile};
use crate::storage::{AuditHead, Store, StoreError, StoredCheckpoint};

/// First line of every statement, and the `format` of every checkpoint file.
pub const FORMAT: &str = "iomt-audit-checkpoint/1";

/// Largest checkpoint file `audit verify --checkpoint` reads.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why a checkpoint could not be made, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint file: {0}")]
    Malformed(String),
    #[error("{0}")]
    NotAuthentic(String),
    #[error("its signer certificate is not an audit-key certificate: {0}")]
    SignerProfile(#[from] ProfileViolation),
    #[error("signing the checkpoint: {0}")]
    Signing(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A checkpoint to compare the trail with, and where it came from.
#[derive(Debug, Clone)]
pub struct Witness {
    /// `stored`, or the path of the file it was read from.
    pub source: String,
    pub checkpoint: StoredCheckpoint,
}

impl Witness {
    /// A checkpoint from the database.
    pub fn stored(checkpoint: StoredCheckpoint) -> Witness {
        Witness {
            source: "stored".to_owned(),
            checkpoint,
        }
    }
}

/// The text a checkpoint's signature covers.
pub fn statement(seq: i64, head_hash: &[u8], at: i64) -> String {
    format!(
        "{FORMAT}\nseq {seq}\nhead {}\nat {}\n",
        hex::encode(head_hash),
        rfc3339(at)
    )
}

/// Unix seconds as RFC 3339 (UTC, whole seconds), as statements and reports write them.
pub fn rfc3339(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

/// Signs `head` as of `at`.
pub fn sign(
    signer: &AuditSigner,
    head: &AuditHead,
    at: i64,
) -> Result<StoredCheckpoint, CheckpointError> {
    let signature = signer.sign(statement(head.seq, &head.hash, at).as_bytes())?;
    Ok(StoredCheckpoint {
        seq: head.seq,
        head_hash: head.hash.clone(),
        at,
        signature,
        signer_der: signer.cert_der.to_vec(),
    })
}

/// Signs and stores a checkpoint of the trail's current head, unless the newest stored one
/// already covers it. Returns the newest checkpoint (`None` while the trail is empty).
pub async fn take(
    store: &dyn Store,
    signer: &AuditSigner,
    now: OffsetDateTime,
) -> Result<Option<StoredCheckpoint>, CheckpointError> {
    let Some(head) = store.audit_head().await? else {
        return Ok(None);
    };
    if let Some(latest) = store.latest_checkpoint().await?
        && latest.seq >= head.seq
    {
        return Ok(Some(latest));
    }
    let checkpoint = sign(signer, &head, now.unix_timestamp())?;
    if !store.add_checkpoint(&checkpoint).await? {
        // Another replica signed the same head first; its checkpoint is as good.
        return Ok(store.latest_checkpoint().await?);
    }
    Ok(Some(checkpoint))
}

/// Checks that `checkpoint` was signed by an audit key the root at `root_der` certified, while
/// that certificate was valid.
pub fn authenticate(checkpoint: &StoredCheckpoint, root_der: &[u8]) -> Result<(), CheckpointError> {
    let refuse = |reason: &str| CheckpointError::NotAuthentic(reason.to_owned());
    let (_, signer) = X509Certificate::from_der(&checkpoint.signer_der)
        .map_err(|_| refuse("its signer certificate does not parse"))?;
    let (_, root) = X509Certificate::from_der(root_der)
        .map_err(|_| refuse("this CA's root certificate does not parse"))?;
    if signer.issuer() != root.subject()
        || signer.verify_signature(Some(root.public_key())).is_err()
    {
        return Err(refuse(
            "its signer certificate was not issued by this CA's root",
        ));
    }
    check_audit_signer_profile(&signer)?;
    let validity = signer.validity();
    if checkpoint.at < validity.not_before.timestamp()
        || checkpoint.at > validity.not_after.timestamp()
    {
        return Err(refuse(
            "it was signed outside its signer certificate's validity",
        ));
    }
    let spki = signer.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let algorithm = match curve.as_deref() {
        Some("1.2.840.10045.3.1.7") => &ECDSA_P256_SHA256_ASN1,
        Some("1.3.132.0.34") => &ECDSA_P384_SHA384_ASN1,
        _ => return Err(refuse("its signer key is not ECDSA P-256 or P-384")),
    };
    let message = statement(checkpoint.seq, &checkpoint.head_hash, checkpoint.at);
    UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
        .verify(message.as_bytes(), &checkpoint.signature)
        .map_err(|_| refuse("its signature does not verify"))
}

/// A checkpoint as a file: what the endpoint serves and `audit verify --checkpoint` reads.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    format: String,
    seq: i64,
    head_hash: String,
    at: String,
    /// ECDSA signature over the statement, DER, base64.
    signature: String,
    /// The audit key's certificate, PEM.
    certificate: String,
}

/// The checkpoint file's JSON text (pretty, ending in a newline).
pub fn to_json(checkpoint: &StoredCheckpoint) -> String {
    let file = CheckpointFile {
        format: FORMAT.to_owned(),
        seq: checkpoint.seq,
        head_hash: hex::encode(&checkpoint.head_hash),
        at: rfc3339(checkpoint.at),
        signature: STANDARD.encode(&checkpoint.signature),
        certificate: pem::encode(&pem::Pem::new("CERTIFICATE", checkpoint.signer_der.clone())),
    };
    // Plain strings and numbers always serialize.
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads a checkpoint file (not yet authenticated: see [`authenticate`]).
pub fn from_json(text: &str) -> Result<StoredCheckpoint, CheckpointError> {
    let malformed = |what: &str| CheckpointError::Malformed(what.to_owned());
    let file: CheckpointFile =
        serde_json::from_str(text).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    if file.format != FORMAT {
        return Err(CheckpointError::Malformed(format!(
            "format is `{}`, expected `{FORMAT}`",
            file.format
        )));
    }
    let at = OffsetDateTime::parse(&file.at, &Rfc3339)
        .map_err(|_| malformed("`at` is not an RFC 3339 time"))?
        .unix_timestamp();
    let head_hash = hex::decode(&file.head_hash)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| malformed("`head_hash` is not 64 hex digits"))?;
    let signature = STANDARD
        .decode(&file.signature)
        .map_err(|_| malformed("`signature` is not base64"))?;
    let certificate =
        pem::parse(&file.certificate).map_err(|_| malformed("`certificate` is not PEM"))?;
    if certificate.tag() != "CERTIFICATE" {
        return Err(malformed("`certificate` is not a PEM CERTIFICATE"));
    }
    Ok(StoredCheckpoint {
        seq: file.seq,
        head_hash,
        at,
        signature,
        signer_der: certificate.into_contents(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredCheckpoint {
        StoredCheckpoint {
            seq: 42,
            head_hash: vec![7; 32],
            at: 1_796_169_600,
            signature: vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            signer_der: vec![0x30, 0x00],
        }
    }

    #[test]
    fn statement_is_four_lines_with_rfc3339_time() {
        assert_eq!(
            statement(42, &[0xab; 32], 1_796_169_600),
            format!(
                "iomt-audit-checkpoint/1\nseq 42\nhead {}\nat 2026-12-02T00:00:00Z\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn file_round_trips() {
        let checkpoint = sample();
        assert_eq!(from_json(&to_json(&checkpoint)).unwrap(), checkpoint);
    }

    #[test]
    fn malformed_files_are_refused_with_what_is_wrong() {
        let good = to_json(&sample());
        for (edit, expected) in [
            (good.replace(&"07".repeat(32), "zz"), "head_hash"),
            (good.replace("iomt-audit-checkpoint/1", "other/9"), "format"),
            (
                good.replace("2026-12-02T00:00:00Z", "yesterday"),
                "RFC 3339",
            ),
            (good.replace("\"seq\"", "\"sequence\""), "unknown field"),
            ("{".to_owned(), "EOF"),
        ] {
            let error = from_json(&edit).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn garbage_signer_is_not_authentic() {
        let error = authenticate(&sample(), &[0x30, 0x00]).unwrap_err();
        assert!(matches!(error, CheckpointError::NotAuthentic(_)), "{error}");
    }
}
