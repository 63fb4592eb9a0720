//! The audit key: it signs checkpoints of the audit trail (`audit::checkpoint`) and nothing
//! else. It is held like the CA keys (sealed in `DIR/ca/audit.key.pem`, or in the PKCS#11
//! token) and certified by the root for that one use (extended key usage
//! [`KP_AUDIT_CHECKPOINT`]), so anyone holding `root.pem` can check a checkpoint.

use std::path::Path;

use iomt_core::extensions::key_identifier;
use iomt_core::oids::KP_AUDIT_CHECKPOINT;
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod,
    KeyUsagePurpose, PublicKeyData, SigningKey,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::X509Certificate;

use super::error::PkiError;
use super::keystore::KeyStore;
use super::material::read_cert;
use super::profile_check::ProfileViolation;
use super::serial::random_serial;
use super::signer::CaKey;

/// The audit key's name (`ca/audit.crt.pem`, `ca/audit.key.pem`, or its PKCS#11 label).
pub const AUDIT_SIGNER: &str = "audit";
/// Lifetime of the audit key's certificate. Checkpoints stay verifiable after it ends (their
/// signing time is checked against it, not the time of checking).
pub const AUDIT_SIGNER_DAYS: i64 = 10 * 365;

/// The audit key and its certificate.
pub struct AuditSigner {
    pub cert_der: CertificateDer<'static>,
    key: CaKey,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("custody", &self.key.custody())
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// ECDSA signature (DER) over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        Ok(self.key.sign(message)?)
    }
}

/// The certificate request of the audit key: an end-entity certificate whose only use is
/// signing checkpoints.
pub(super) fn certificate_params(
    subject: DistinguishedName,
    key: &CaKey,
    now: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(AUDIT_SIGNER_DAYS);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(arcs(KP_AUDIT_CHECKPOINT))];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(key.der_bytes()));
    Ok(params)
}

/// The audit key of the CA in `ca_dir`, or `None` when the data directory has none (created
/// before checkpoints existed).
pub(super) fn load(keys: &KeyStore, ca_dir: &Path) -> Result<Option<AuditSigner>, PkiError> {
    let cert_path = ca_dir.join(format!("{AUDIT_SIGNER}.crt.pem"));
    if !cert_path.exists() {
        return Ok(None);
    }
    let cert_der = read_cert(&cert_path)?;
    let key = keys
        .load(ca_dir, AUDIT_SIGNER)?
        .ok_or_else(|| PkiError::Invalid {
            path: cert_path.clone(),
            reason: "the audit key is missing".into(),
        })?;
    let matches = x509_parser::parse_x509_certificate(&cert_der)
        .map(|(_, cert)| cert.public_key().raw == key.subject_public_key_info().as_slice())
        .unwrap_or(false);
    if !matches {
        return Err(PkiError::Invalid {
            path: cert_path,
            reason: format!("does not match the {} audit key", key.custody()),
        });
    }
    Ok(Some(AuditSigner { cert_der, key }))
}

/// Checks an audit-key certificate's profile: not a CA, digitalSignature, and the checkpoint
/// extended key usage.
pub fn check_profile(cert: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    const HOLDER: &str = "the audit key's certificate";
    super::profile_check::check_not_ca(cert, HOLDER)?;
    let signs = cert
        .key_usage()
        .map_err(ProfileViolation::Unreadable)?
        .is_some_and(|ku| ku.value.digital_signature());
    if !signs {
        return Err(ProfileViolation::NeedsDigitalSignature { holder: HOLDER });
    }
    let checkpoint = cert
        .extended_key_usage()
        .map_err(ProfileViolation::Unreadable)?
        .is_some_and(|eku| {
            eku.value
                .other
                .iter()
                .any(|oid| oid.to_id_string() == KP_AUDIT_CHECKPOINT)
        });
    if !checkpoint {
        return Err(ProfileViolation::NeedsExtendedKeyUsage {
            holder: HOLDER,
            usage: KP_AUDIT_CHECKPOINT,
        });
    }
    Ok(())
}

/// The arcs of a dotted OID constant.
fn arcs(oid: &str) -> Vec<u64> {
    oid.split('.').filter_map(|arc| arc.parse().ok()).collect()
}
