//! Delegated OCSP responders (RFC 6960 §4.2.2.2): one short-lived certificate per issuing CA,
//! EKU OCSPSigning and id-pkix-ocsp-nocheck, renewed automatically.

use iomt_core::extensions::key_identifier;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SigningKey,
};
use time::{Duration, OffsetDateTime};

use crate::pki::{IssuingCa, PkiError, random_serial};

/// Responder certificate lifetime; renewed when less than half remains.
pub const RESPONDER_LIFETIME: Duration = Duration::days(7);

/// A responder's key and certificate.
pub struct Responder {
    pub cert_der: Vec<u8>,
    key: KeyPair,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Issues a fresh responder certificate from `issuer`.
    pub fn issue(
        issuer: &IssuingCa,
        title: &str,
        now: OffsetDateTime,
    ) -> Result<Responder, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, title);
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - Duration::minutes(5);
        // Never past the issuer's own end (a short-lived or retiring generation).
        params.not_after = (now + RESPONDER_LIFETIME).min(issuer.not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(key_identifier(key.public_key_raw()));
        // id-pkix-ocsp-nocheck: clients need not check the responder's own revocation.
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5],
            vec![0x05, 0x00],
        )];
        let cert = params.signed_by(&key, &issuer.issuer)?;
        Ok(Responder {
            cert_der: cert.der().to_vec(),
            not_after: params.not_after,
            key,
        })
    }

    /// The responder's public key (the BIT STRING contents, for the ResponderID hash).
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key_raw()
    }

    /// ECDSA P-256 / SHA-256 signature, DER.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.key.sign(message).map_err(|e| e.to_string())
    }

    /// True when less than half of the lifetime remains.
    pub fn due_for_renewal(&self, now: OffsetDateTime) -> bool {
        self.not_after - now < RESPONDER_LIFETIME / 2
    }
}
