//! The HTTPS listener's certificate after `init`: its renewal by the online root (the server
//! does it by itself before expiry and after a root rollover; see `crate::https_cert`).
//!
//! The renewed certificate keeps the subject and names of the one it replaces, gets a new key
//! (sealed under the CA passphrase like the first one) and the configured lifetime, capped at
//! the root's notAfter. The key file is written before the certificate, each atomically, so a
//! crash leaves a pair that a restart detects (the key no longer matches) rather than a torn
//! file.

use std::path::Path;

use iomt_core::extensions::key_identifier;
use iomt_core::files::{PUBLIC, write_atomic};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TLS_CERT;
use super::error::PkiError;
use super::keystore::KeyStore;
use super::material::IssuingCa;
use super::serial::random_serial;

/// A new HTTPS certificate, written to the data directory.
pub struct RenewedTls {
    /// The certificate (the chain it is served with: `CaMaterial::tls_chain_for`).
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// Hex serial of the new certificate.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for RenewedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is elided on purpose.
        f.debug_struct("RenewedTls")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Issues the next HTTPS certificate from `root` (the active root generation) for the subject and names of `current`,
/// valid for `lifetime` from `now` (at most until the root's notAfter), and writes its sealed
/// key and certificate to `dir/ca/`.
pub fn renew_tls_certificate(
    dir: &Path,
    keys: &KeyStore,
    root: &IssuingCa,
    current: &CertificateDer<'_>,
    lifetime: Duration,
    now: OffsetDateTime,
) -> Result<RenewedTls, PkiError> {
    let ca_dir = dir.join("ca");
    let cert_path = ca_dir.join(format!("{TLS_CERT}.crt.pem"));
    let (_, old) = X509Certificate::from_der(current).map_err(|e| PkiError::Invalid {
        path: cert_path.clone(),
        reason: e.to_string(),
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_of(&old);
    params.subject_alt_names = names_of(&old)?;
    let serial = random_serial()?;
    params.serial_number = Some(serial.clone());
    params.not_before = now - Duration::minutes(5);
    params.not_after = (now + lifetime).min(root.not_after);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;

    let (key, sealed) = keys.generate_sealed(TLS_CERT, &rcgen::PKCS_ECDSA_P256_SHA256)?;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(key.der_bytes()));
    let cert = params.signed_by(&key, &root.issuer)?;
    let key_path = super::keystore::key_path(&ca_dir, TLS_CERT);
    write_atomic(&key_path, sealed.as_bytes(), iomt_core::files::PRIVATE)
        .map_err(|e| PkiError::io(&key_path, e))?;
    write_atomic(&cert_path, cert.pem().as_bytes(), PUBLIC)
        .map_err(|e| PkiError::io(&cert_path, e))?;
    Ok(RenewedTls {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        serial: hex::encode(serial.as_ref()),
        not_after: params.not_after,
    })
}

/// The organization and common name of the certificate being replaced.
fn subject_of(old: &X509Certificate<'_>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let subject = old.subject();
    if let Some(o) = subject
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok())
    {
        dn.push(DnType::OrganizationName, o);
    }
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("IoMT CA EST server");
    dn.push(DnType::CommonName, cn);
    dn
}

/// The DNS names and IP addresses of the certificate being replaced.
fn names_of(old: &X509Certificate<'_>) -> Result<Vec<SanType>, PkiError> {
    let Ok(Some(san)) = old.subject_alternative_name() else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                names.push(SanType::DnsName((*dns).to_owned().try_into()?));
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(*bytes)
                        .map(std::net::IpAddr::from)
                        .ok(),
                    _ => None,
                };
                names.extend(ip.map(SanType::IpAddress));
            }
            _ => {}
        }
    }
    Ok(names)
}
